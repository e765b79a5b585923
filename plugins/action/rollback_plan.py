# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action rollback_plan: read the host's store once, and the Terraform stores on the controller, then plan.

The decisions are made by module_utils/_plan.py; this file only gathers the listings: one
``checkpoint_info`` call on the host, the Terraform stores read here on the controller.
Problems are returned, not raised, so the role reports every host's problems at once.
Documentation: plugins/modules/rollback_plan.py.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ansible.plugins.action import ActionBase
from ansible_collections.gitops.rollback.plugins.module_utils._errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils._plan import (
    HOST_STORE_LAYERS, HostSettings, layer_list, plan_host)
from ansible_collections.gitops.rollback.plugins.module_utils._options import store_argument_spec
from ansible_collections.gitops.rollback.plugins.module_utils._store import Store, summarize

ARGUMENT_SPEC = {
    "target": {"type": "str", "required": True},
    "layers": {"type": "raw", "default": ["traffic", "release", "config", "database", "infrastructure", "services"]},
    "run_id": {"type": "str", "default": ""},
    "paths": {"type": "list", "elements": "str", "default": []},
    "release_root": {"type": "str", "default": ""},
    "databases": {"type": "list", "elements": "dict", "default": []},
    "terraform": {"type": "list", "elements": "dict", "default": []},
    "services": {"type": "list", "elements": "dict", "default": []},
    "traffic": {"type": "bool", "default": False},
    **store_argument_spec(),
}
#: Entry keys never passed on (the plan needs names and paths, never credentials).
_SECRETS = ("login_password", "backend_config_secrets", "password", "token", "encryption_key")


def _public(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{key: value for key, value in entry.items() if key not in _SECRETS} for entry in entries]


def terraform_listings(entries: List[Dict[str, Any]], default_store: str, key: Optional[str]) -> Dict[str, Any]:
    """Return store path -> checkpoints (listed as checkpoint_info lists them) of each Terraform store."""
    listings: Dict[str, Any] = {}
    for entry in entries:
        path = entry.get("store_path") or default_store
        if path not in listings:
            store = Store(path, key or None)
            listings[path] = [summarize(manifest) for manifest in store.manifests()] if store.exists() else []
    return listings


class ActionModule(ActionBase):
    """Plan the rollback of one host on the controller."""

    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    _supports_check_mode = True

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        host = (task_vars or {}).get("inventory_hostname", "")
        settings = HostSettings(paths=args["paths"], release_root=args["release_root"],
                                databases=_public(args["databases"]), terraform=_public(args["terraform"]),
                                services=args["services"], traffic=args["traffic"], store_path=args["store_path"])
        requested = layer_list(args["layers"])
        active = [layer for layer in settings.configured() if layer in requested]
        checkpoints: List[Dict[str, Any]] = []
        problems: List[Dict[str, str]] = []
        if any(layer in HOST_STORE_LAYERS for layer in active):
            listing = self._execute_module(
                module_name="gitops.rollback.checkpoint_info", task_vars=task_vars,
                module_args={"store_path": args["store_path"], "encryption_key": args["encryption_key"]})
            if listing.get("unreachable"):
                return listing
            if listing.get("failed"):
                problems.append({"layer": "store", "problem": listing.get("msg", "checkpoint_info failed")})
            checkpoints = listing.get("checkpoints") or []
        terraform: Dict[str, Any] = {}
        if "infrastructure" in active:
            try:
                terraform = terraform_listings(settings.terraform, args["store_path"], args["encryption_key"])
            except (RollbackError, OSError) as exc:
                problems.append({"layer": "infrastructure", "problem": str(exc)})
        plan = plan_host(host, args["target"], requested, settings, checkpoints, terraform, args["run_id"])
        plan["problems"] = problems + plan["problems"]
        result.update(changed=False, plan=plan)
        return result
