# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action audit: write the audit record in the controller's process when the task runs on the controller.

The audit log lives on the controller (the roles delegate the audit task to localhost): there the record is
written and sent with the functions the module uses (module_utils/controller/runstate.py), instead of one
module process per record. Anywhere else (another host, or with become) the module runs as before.
Documentation: plugins/modules/audit.py.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible.plugins.action import ActionBase
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.controller.runstate import audit_argument_spec, record_event

ARGUMENT_SPEC = audit_argument_spec()


class ActionModule(ActionBase):
    """Write one audit record (and send its webhook) in-process on the controller."""

    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    _supports_check_mode = True

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        if not self._on_the_controller():
            return self._execute_module(module_name="gitops.rollback.audit", task_vars=task_vars)
        result = super().run(tmp, task_vars)
        del tmp
        params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        warnings = result.setdefault("warnings", [])
        try:
            result.update(record_event(params, bool(self._play_context.check_mode), warnings.append))
        except RollbackError as exc:
            result.update(failed=True, msg=str(exc))
        return result

    def _on_the_controller(self) -> bool:
        """Whether the module would run here, as this user: a local connection without become."""
        return getattr(self._connection, "transport", "") == "local" and not self._play_context.become
