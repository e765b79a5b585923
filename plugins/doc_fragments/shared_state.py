# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The shared controller state option: run locks, guard cooldown and audit log in PostgreSQL."""

    DOCUMENTATION = r"""
options:
  state_url:
    description:
      - Where the controller's state lives. Empty (the default) keeps local files under
        C(~/.local/state/gitops-rollback). A C(postgresql://user:password@host/db) URL keeps the run
        locks, the guard cooldown and the hash-chained audit log in the schema C(gitops_rollback) of that
        database (created when missing), so every controller sees them - AWX jobs whose container is
        discarded after each job, and controllers on different machines.
      - The collection's playbooks pass C(gitops_rollback_state) to every module of the action group
        C(gitops.rollback.state) with C(module_defaults). Keep the URL in an AWX credential or Ansible
        Vault; it is never logged.
      - Needs psycopg2 on the controller (C(pip install psycopg2-binary)). See docs/gitops.md.
    type: str
    default: ""
"""
