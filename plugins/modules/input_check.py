#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: input_check
short_description: Refuse outside values (tags, labels, webhook payloads) before anything templates them
version_added: 0.1.0
description:
  - Git refs, webhook payloads, survey answers and extra vars come from outside. This action reads
    the extra vars it is told about B(raw), before Ansible templates them, and fails the host when
    one of them is not inert, so nothing else in the play runs. Variables set by plays and roles
    (for example C(include_role) vars) are not extra vars and are not checked.
  - A label variable (O(labels)) must be a checkpoint id or label in the label grammar (1 to 128
    ASCII letters, digits and C(. _ / -), starting with a letter or a digit, no C(..), C(//),
    trailing C(/) or C(.), nor a component ending in C(.lock)); unset and empty values pass.
  - Any other outside variable (O(data)) may hold any text, except template text (C({{), C({%),
    C({#)) that Ansible trusts and would render. Values passed with the C(!unsafe) YAML tag (as
    AWX passes survey answers and webhook payloads, and as C(gitops-rollback trigger) passes every
    value) are never rendered and pass.
  - The collection's playbooks run it first in every play, and the C(rollback) and C(checkpoint)
    roles run it first too.
  - This is an action plugin; it runs on the controller and never connects to the host.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
options:
  labels:
    description: Names of the variables that must hold a label (checkpoint id or Git tag).
    type: list
    elements: str
    default: [rollback_to, checkpoint_label, guard_rollback_to]
  data:
    description: Names of other outside variables, checked (recursively) for trusted template text.
    type: list
    elements: str
    default: [checkpoint_commit, checkpoint_reason, rollback_layers, rollback_reason, gitops_rollback_trigger,
              awx_webhook_payload, awx_webhook_event_type, awx_webhook_event_guid, tower_webhook_payload,
              tower_webhook_event_type, tower_webhook_event_guid]
  label_pattern:
    description:
      - Regular expression the label variables must also match in full. It narrows the label
        grammar, it cannot widen it.
    type: str
attributes:
  action:
    description: Runs on the controller as an action plugin.
    support: full
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Refuse outside values before anything templates them
  gitops.rollback.input_check:

- name: Only release tags such as v2.4.0 as labels
  gitops.rollback.input_check:
    labels: [rollback_to]
    label_pattern: 'v[0-9]+(\.[0-9]+)*'
"""

RETURN = r"""
checked:
  description: The variables that were set and checked.
  returned: success
  type: list
  elements: str
  sample: [awx_webhook_payload, rollback_to]
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    """Only reached when the action plugin is bypassed."""
    module = AnsibleModule(
        argument_spec=dict(
            labels=dict(type="list", elements="str", default=["rollback_to", "checkpoint_label", "guard_rollback_to"]),
            data=dict(type="list", elements="str", default=[
                "checkpoint_commit", "checkpoint_reason", "rollback_layers", "rollback_reason",
                "gitops_rollback_trigger", "awx_webhook_payload", "awx_webhook_event_type",
                "awx_webhook_event_guid", "tower_webhook_payload", "tower_webhook_event_type",
                "tower_webhook_event_guid"]),
            label_pattern=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    module.fail_json(msg="gitops.rollback.input_check runs on the controller as an action plugin, where it reads "
                         "variables before they are templated; call it as a task.")


if __name__ == "__main__":
    main()
