# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action rollback_plan: read the host's store once, and the Terraform stores on the controller, then plan.

The decisions are made by module_utils/controller/plan.py; this file only gathers what they need: one
``rollback_preview`` call on the host (its store's listing and what each host layer would change,
read-only; with a repository it first fetches the target when the store lacks it), the Terraform stores
read here on the controller. Problems are returned, not raised, so the role reports every host's problems
at once.
Documentation: plugins/modules/rollback_plan.py.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ansible.plugins.action import ActionBase
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import (
    HOST_STORE_LAYERS, LAYERS, TF_COMPONENT, HostSettings, database_passwords, flags_passwords, layer_list, plan_host)
from ansible_collections.gitops.rollback.plugins.module_utils.controller.selection import (
    COMPONENT_FIELDS, select_components)
from ansible_collections.gitops.rollback.plugins.module_utils.module.options import store_argument_spec
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store, checkpoint_summary

ARGUMENT_SPEC = {
    "target": {"type": "str", "required": True},
    "layers": {"type": "raw", "default": list(LAYERS)},
    "run_id": {"type": "str", "default": ""},
    "paths": {"type": "list", "elements": "str", "default": []},
    "release_root": {"type": "str", "default": ""},
    "databases": {"type": "list", "elements": "dict", "default": []},
    "database_passwords": {"type": "dict", "default": {}, "no_log": True},
    "terraform": {"type": "list", "elements": "dict", "default": []},
    "services": {"type": "list", "elements": "dict", "default": []},
    "traffic": {"type": "bool", "default": False},
    "flags": {"type": "list", "elements": "dict", "default": []},
    "components": {"type": "raw", "default": []},
    "safety": {"type": "dict", "default": {}},
    "repository": {"type": "dict", "default": {}},
    "allowed_paths": {"type": "list", "elements": "str", "default": []},
    **store_argument_spec(),
}
#: The fields of a Terraform snapshot the plan shows.
_SNAPSHOT_FIELDS = ("serial", "lineage", "resources", "terraform_version")
#: Entry keys never passed on (the plan needs names and paths, never credentials).
_SECRETS = ("login_password", "backend_config_secrets", "password", "token", "encryption_key", "etcd_password")


def _public(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{key: value for key, value in entry.items() if key not in _SECRETS} for entry in entries]


def _listed(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """A manifest as checkpoint_info lists it, with the recorded fields of its Terraform snapshots."""
    listed = checkpoint_summary(manifest)
    listed["components"] = [
        dict(comp, **{key: full.get(key) for key in _SNAPSHOT_FIELDS})
        if comp.get("type") == TF_COMPONENT else comp
        for comp, full in zip(listed["components"], manifest.get("components", []))]
    return listed


def terraform_listings(entries: List[Dict[str, Any]], default_store: str, key: Optional[str]) -> Dict[str, Any]:
    """Return store path -> checkpoints (listed as checkpoint_info lists them) of each Terraform store."""
    listings: Dict[str, Any] = {}
    for entry in entries:
        path = entry.get("store_path") or default_store
        if path not in listings:
            store = Store(path, key or None)
            listings[path] = [_listed(manifest) for manifest in store.manifests()] if store.exists() else []
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
                                services=args["services"], traffic=args["traffic"], store_path=args["store_path"],
                                flags=_public(args["flags"]))
        requested = layer_list(args["layers"])
        selection = select_components(settings, args["components"])
        args = dict(args, release_root=selection.settings.release_root, **{
            name: [args[name][index] for index in selection.indexes[layer]] for layer, name in COMPONENT_FIELDS.items()})
        active = [layer for layer in selection.settings.configured() if layer in requested]
        problems: List[Dict[str, str]] = []
        preview: Dict[str, Any] = {}
        repository = repository_ask(args["repository"], host)
        if any(layer in HOST_STORE_LAYERS for layer in active):
            preview = self._preview(args, [layer for layer in active if layer in HOST_STORE_LAYERS], task_vars,
                                    safety_ask(args["safety"], active), repository)
            if preview.get("unreachable") or preview.get("fetch_failed"):
                return preview  # the host fails here, as a failed fetch from the repository did before the plan
            if preview.get("failed"):
                problems.append({"layer": "store", "problem": preview.get("msg", "rollback_preview failed")})
            if (preview.get("safety") or {}).get("problem"):
                problems.append({"layer": "safety", "problem": "The safety checkpoint %s could not be taken: %s" % (
                    preview["safety"].get("label"), preview["safety"]["problem"])})
        elif repository:  # no layer reads the host's store: the fetch alone, as checkpoint_sync state=fetched
            fetched = self._execute_module(
                module_name="gitops.rollback.checkpoint_sync", task_vars=task_vars,
                module_args={"state": "fetched", "checkpoints": [args["target"]], "repository": repository,
                             "allowed_paths": args["allowed_paths"], "store_path": args["store_path"],
                             "encryption_key": args["encryption_key"]})
            if fetched.get("unreachable") or fetched.get("failed"):
                return fetched
            fetched.pop("invocation", None)
            preview = {"fetched": fetched, "changed": bool(fetched.get("changed")) and not self._task.check_mode}
        terraform: Dict[str, Any] = {}
        if "infrastructure" in active:
            try:
                terraform = terraform_listings(selection.settings.terraform, args["store_path"], args["encryption_key"])
            except (RollbackError, OSError) as exc:
                problems.append({"layer": "infrastructure", "problem": str(exc)})
        plan = plan_host(host, args["target"], requested, settings, preview.get("checkpoints") or [], terraform,
                         args["run_id"], preview.get("previews") or {}, preview.get("problems") or [],
                         args["components"])
        plan["problems"] = problems + plan["problems"]
        if problems:
            plan["lines"].extend("PROBLEM [%s] %s" % (p["layer"], p["problem"]) for p in problems)
        safety = preview.get("safety") or {}
        result.update(changed=bool(safety.get("layers")), plan=plan, safety={
            "layers": list(safety.get("layers") or []), "checkpoint": safety.get("checkpoint"),
            "journal": safety.get("journal") or {"created": []}})
        if "fetched" in preview:
            result.update(fetched=preview["fetched"], changed=bool(preview.get("changed")))
        return result

    def _preview(self, args: Dict[str, Any], layers: List[str], task_vars: Optional[Dict[str, Any]],
                 safety: Optional[Dict[str, Any]], repository: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """Run rollback_preview on the host: its store's listing and what each host layer would change (and with
        ``safety`` its safety checkpoint, when its own plan is clear; with ``repository`` first the fetch of the
        target when the store lacks it)."""
        return self._execute_module(
            module_name="gitops.rollback.rollback_preview", task_vars=task_vars,
            module_args={"target": args["target"], "layers": layers, "paths": args["paths"],
                         "release_root": args["release_root"], "databases": _public(args["databases"]),
                         "database_passwords": database_passwords(args["databases"], args["database_passwords"]),
                         "flags": _public(args["flags"]), "flags_passwords": flags_passwords(args["flags"]),
                         "store_path": args["store_path"], "encryption_key": args["encryption_key"],
                         **({"safety": safety} if safety else {}),
                         **({"repository": repository, "allowed_paths": args["allowed_paths"]} if repository else {})})


def safety_ask(safety: Dict[str, Any], active: List[str]) -> Optional[Dict[str, Any]]:
    """Return the preview's ``safety`` option: the role's request with ``changing`` - whether a layer outside the
    host's store (traffic, infrastructure) changes on this host; None when no safety checkpoint is asked for."""
    if not safety or not safety.get("label"):
        return None
    known = ("label", "reason", "exclude", "lock_timeout")
    return dict({key: safety[key] for key in known if key in safety},
                changing=any(layer in ("traffic", "infrastructure") for layer in active))


def repository_ask(repository: Dict[str, Any], host: str) -> Optional[Dict[str, Any]]:
    """Return the preview's ``repository`` option: the role's repository settings, the host's namespace defaulting
    to its inventory name (a rebuilt host fetches what it sent under that name); None without a repository."""
    if not repository:
        return None
    return dict({"name": host}, **repository)
