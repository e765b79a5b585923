#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_info
short_description: List checkpoints on a host, or show one
version_added: 0.1.0
description:
  - Reads the checkpoint store of the host. Read-only; never reports a change.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.store
  - gitops.rollback.attributes
options:
  checkpoint:
    description:
      - Id, id prefix or label of one checkpoint to show. Fails, listing the checkpoints there
        are, when it is unknown.
    type: str
  label:
    description:
      - Only list checkpoints with this label.
    type: str
  details:
    description:
      - Also return facts, components and every tree entry.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: gitops.rollback.checkpoint
"""

EXAMPLES = r"""
- name: List checkpoints
  gitops.rollback.checkpoint_info:
  register: found

- name: Show v1.4.0 with every entry
  gitops.rollback.checkpoint_info:
    checkpoint: v1.4.0
    details: true
"""

RETURN = r"""
checkpoints:
  description: Checkpoints found, oldest first (one element when O(checkpoint) is given).
  returned: always
  type: list
  elements: dict
  sample:
    - id: 20261121T220257.448Z-452f73
      label: v1.4.0
      commit: 3f2c1e0
      reason: pre-deploy
      creator: root@web1
      created: "2026-11-21T22:02:57Z"
      host: web1
      kind: checkpoint
      roots: [/srv/app]
      entries: 1203
      bytes: 52428800
      components: []
"""

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import CheckpointParams, list_checkpoints
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule


def main() -> None:
    argument_spec = dict(
        checkpoint=dict(type="str"),
        label=dict(type="str"),
        details=dict(type="bool", default=False),
    )
    module = RollbackModule(argument_spec, store=True, error_details=RollbackError.PUBLIC, supports_check_mode=True)
    result = module.run(lambda: list_checkpoints(CheckpointParams.from_module(module.params, module.check_mode)))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
