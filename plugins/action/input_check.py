# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action input_check: refuse outside values (labels, refs, webhook payloads) before anything templates them.

Reads the named variables raw from the extra vars (what came from outside: ``-e``, ansible-runner's
``env/extravars``, AWX survey answers and webhook variables; no templating happens here) and fails
when a label variable is outside the label grammar or when another outside variable holds template
text Ansible trusts. Variables a play or role sets itself (``include_role`` vars) are code, not
checked. Documentation: plugins/modules/input_check.py.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.gitops.rollback.plugins.module_utils.controller.inputs import input_problems

try:  # ansible-core 2.19+: data tagging; a string is rendered only when it is trusted as a template
    from ansible.template import is_trusted_as_template as _trusted
except ImportError:  # older ansible-core renders every string that is not AnsibleUnsafe
    from ansible.utils.unsafe_proxy import AnsibleUnsafe

    def _trusted(value: Any) -> bool:
        return not isinstance(value, AnsibleUnsafe)

LABELS = ["rollback_to", "checkpoint_label", "guard_rollback_to"]
DATA = ["checkpoint_commit", "checkpoint_reason", "rollback_layers", "rollback_reason", "gitops_rollback_trigger",
        "awx_webhook_payload", "awx_webhook_event_type", "awx_webhook_event_guid",
        "tower_webhook_payload", "tower_webhook_event_type", "tower_webhook_event_guid"]
ARGUMENT_SPEC = {
    "labels": {"type": "list", "elements": "str", "default": LABELS},
    "data": {"type": "list", "elements": "str", "default": DATA},
    "label_pattern": {"type": "str"},
}


class ActionModule(ActionBase):
    """Check outside variables raw, on the controller."""

    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    _requires_connection = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        manager = self._task.get_variable_manager()
        variables = manager.extra_vars if manager is not None else (task_vars or {})
        problems = input_problems(variables, args["labels"], args["data"], _trusted, args["label_pattern"])
        if problems:
            raise AnsibleActionFail("Refused before anything ran: " + " ".join(problems))
        result.update(changed=False, checked=sorted(n for n in args["labels"] + args["data"] if n in variables))
        return result
