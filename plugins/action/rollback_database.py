# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action rollback_database: every database of a host back to a checkpoint, in one task.

Per database: the method (module_utils/controller/database_layer.py), then ``db_migrate`` (revert) on the
host, and ``db_restore`` when the method is ``restore`` or when ``auto``'s revert was refused. Stops at the
first failure. Documentation: plugins/modules/rollback_database.py.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ansible.plugins.action import ActionBase
from ansible_collections.gitops.rollback.plugins.module_utils.controller.database_layer import (
    METHODS, REVERTING, LayerSettings, choose_method, database_name, restore_args, revert_args)
from ansible_collections.gitops.rollback.plugins.module_utils.module.options import store_argument_spec

ARGUMENT_SPEC = {
    "databases": {"type": "list", "elements": "dict", "default": []},
    "database_passwords": {"type": "dict", "default": {}, "no_log": True},
    "checkpoint": {"type": "str", "required": True},
    "label": {"type": "str", "default": ""},
    "method": {"type": "str", "default": "", "choices": ["", *METHODS]},
    "methods": {"type": "dict", "default": {}},
    "mode": {"type": "str", "default": "replace", "choices": ["swap", "replace"]},
    "jobs": {"type": "int", "default": 1},
    "safety_backup": {"type": "bool", "default": True},
    **store_argument_spec(),
}


class ActionModule(ActionBase):
    """Roll each database of the host back: revert its migrations, else restore its dump."""

    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    _supports_check_mode = True

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        settings = LayerSettings(
            checkpoint=args["checkpoint"], label=args["label"], method=args["method"], methods=args["methods"],
            mode=args["mode"], jobs=args["jobs"], safety_backup=args["safety_backup"],
            store={"store_path": args["store_path"], "lock_timeout": args["lock_timeout"],
                   "owner": args["owner"], "encryption_key": args["encryption_key"]})
        changed: Dict[str, str] = {}
        done: List[Dict[str, Any]] = []
        for index, entry in enumerate(args["databases"]):
            password = str(args["database_passwords"].get(str(index)) or "")
            outcome = self._one(entry, password, settings, task_vars)
            done.append(outcome)
            if outcome["failed"]:
                step = outcome.get("restored") or outcome.get("migrated") or {}
                result.update(step, failed=True, databases=done, changed_databases=changed,
                              msg=step.get("msg") or "rollback of %s failed" % outcome["name"])
                return result
            if outcome["changed"]:
                changed[outcome["name"]] = outcome["method"]
        result.update(changed=bool(changed), changed_databases=changed, databases=done)
        return result

    def _one(self, entry: Dict[str, Any], password: str, settings: LayerSettings,
             task_vars: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """One database: revert, else (or at once) restore; what ran and how it went."""
        name, method = database_name(entry), choose_method(entry, settings)
        outcome: Dict[str, Any] = {"name": name, "method": method, "changed": False, "failed": False}
        if method in REVERTING:
            migrated = self._run("gitops.rollback.db_migrate", revert_args(entry, password, settings), task_vars)
            outcome["migrated"] = migrated
            if not migrated.get("failed") and not migrated.get("unreachable"):
                outcome["changed"] = bool(migrated.get("changed"))
                return outcome
            if method == "migrate" or migrated.get("unreachable"):
                outcome["failed"] = True
                return outcome
            outcome["method"] = method = "restore"  # auto: the revert was refused, the dump goes back instead
        if method == "restore":
            restored = self._run("gitops.rollback.db_restore", restore_args(entry, password, settings), task_vars)
            outcome.update(restored=restored, changed=bool(restored.get("changed")),
                           failed=bool(restored.get("failed") or restored.get("unreachable")))
        return outcome

    def _run(self, module: str, module_args: Dict[str, Any], task_vars: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        return self._execute_module(module_name=module, module_args=module_args, task_vars=task_vars)
