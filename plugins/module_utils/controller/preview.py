# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a rollback would do on one host, read-only, in one process (the rollback_preview module).

The host's store is listed once, the target resolved once (the rules of ``controller.plan.resolve``), and each
host layer asked what it would change, by the same engine functions a layer runs, in check mode:
the config layer's restore plan (every object of the checkpoint re-hashed first), the release that
would become current, the migrations each database would revert. A layer that cannot go back is a
problem, returned with its layer; nothing is raised for it, so the plan reports every problem at once.
Nothing here writes: no lock is taken, no file, row or link changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from ..common.errors import RollbackError
from ..release.flag_names import component_name
from ..files.checkpoint_ops import CheckpointParams, list_checkpoints
from .plan import HostSettings, covers, database_method, database_name, plan_host, resolve, SAFETY_PREFIX
from ..store.store import Store

if TYPE_CHECKING:
    from ..db.migrate_plan import Params

#: Changed paths shown per managed root (the counts cover them all).
PATHS_SHOWN = 20


@dataclass
class PreviewRequest:
    """What to preview on this host: the target, the layers asked for and their settings."""

    target: str
    layers: List[str]
    store_path: str
    owner: str
    encryption_key: Optional[str] = None
    paths: List[str] = field(default_factory=list)
    release_root: str = ""
    databases: List[Dict[str, Any]] = field(default_factory=list)  # with their passwords (never returned)
    flags: List[Dict[str, Any]] = field(default_factory=list)  # flag sets, with their etcd passwords (never returned)


def _problem(layer: str, exc: Exception) -> Dict[str, str]:
    return {"layer": layer, "problem": str(exc)}


# Each layer's code is imported by its preview: a host previews the layers it has, and every file a module imports
# is compiled at its start (Ansible sends them as source).
# pylint: disable=import-outside-toplevel
def config_preview(request: PreviewRequest, checkpoint: str) -> Dict[str, Any]:
    """The restore of the managed paths in check mode, after re-hashing every object of the checkpoint."""
    from ..files.restore_ops import restore_host
    params = CheckpointParams(store_path=request.store_path, owner=request.owner, check_mode=True,
                              paths=list(request.paths), checkpoint=checkpoint, safety_checkpoint=False,
                              verify_checkpoint=True, encryption_key=request.encryption_key)
    outcome = restore_host(params)
    return {
        "changed": bool(outcome["changed"]),
        "verified": True,
        "summary": outcome["summary"],
        "paths": {root: ["%s %s" % (change["op"], change["path"]) for change in changes[:PATHS_SHOWN]]
                  for root, changes in outcome["changes"].items()},
    }


def release_preview(request: PreviewRequest, checkpoint: str) -> Dict[str, Any]:
    """The switch of ``current`` in check mode: the release that would become current, and from which."""
    from ..release.operations import ReleaseParams, rollback
    outcome = rollback(ReleaseParams(root=request.release_root, owner=request.owner, check_mode=True,
                                     checkpoint=checkpoint, store_path=request.store_path,
                                     encryption_key=request.encryption_key))
    shown = outcome.get("release") or {}
    before = outcome.get("previous_release") or {}
    return {"changed": bool(outcome["changed"]), "current": outcome.get("current"), "label": shown.get("label"),
            "from": before.get("id"), "from_label": before.get("label"), "marked_bad": outcome.get("marked_bad")}


def _migrate_params(entry: Dict[str, Any], request: PreviewRequest, checkpoint: str) -> Params:
    from ..db import migrate_plan
    params = {key: entry.get(key) for key in ("engine", "database", "login_host", "login_port", "login_user",
                                              "login_password", "login_unix_socket", "client_bin_dir",
                                              "client_charset", "migrations_dir", "layout")}
    params.update(operation="revert", checkpoint=checkpoint, store_path=request.store_path,
                  encryption_key=request.encryption_key)
    return migrate_plan.Params.from_module(params, check_mode=True)


def database_entry_preview(entry: Dict[str, Any], request: PreviewRequest, checkpoint: str) -> Dict[str, Any]:
    """One database: the migrations a revert would run (newest first), or the dump it would restore.

    ``auto`` falls back to the dump when the revert is refused, as the layer does; ``migrate``
    cannot, so its refusal is a problem (raised).
    """
    name = database_name(entry)
    method = database_method(entry, request.target.startswith(SAFETY_PREFIX))
    if method == "restore":
        return {"name": name, "method": "restore", "changed": True, "restore_from": checkpoint}

    from ..db.migrate import run_operation
    try:
        outcome = run_operation(_migrate_params(entry, request, checkpoint))
    except RollbackError as exc:
        if method == "migrate":
            raise
        return {"name": name, "method": "restore", "changed": True, "restore_from": checkpoint,
                "revert_refused": str(exc)}
    return {"name": name, "method": "migrate", "changed": bool(outcome["changed"]),
            "version_before": outcome["version_before"], "target_version": outcome["target_version"],
            "reverted": ["V%04d__%s" % (m["version"], m["name"]) for m in outcome["migrations"]]}


def database_preview(request: PreviewRequest, checkpoint: str) -> Dict[str, Any]:
    """Every database of the host (see :func:`database_entry_preview`)."""
    entries = [database_entry_preview(entry, request, checkpoint) for entry in request.databases]
    return {"changed": any(e["changed"] for e in entries), "databases": entries}


def flags_preview(request: PreviewRequest, checkpoint: str) -> Dict[str, Any]:
    """Each flag set's restore (or its ``off`` flags turned off) in check mode: the flags that would change."""
    from ..release.flags import FlagsRequest, backend_from, restore as restore_flags, turn_off
    sets = {}
    for entry in request.flags:
        flag_request = FlagsRequest(backend_from(entry), Store(request.store_path, request.encryption_key),
                                    request.owner, checkpoint=checkpoint, names=list(entry.get("off") or []),
                                    check_mode=True)
        outcome = turn_off(flag_request) if entry.get("off") else restore_flags(flag_request)
        sets[component_name(entry)] = outcome["changes"]
    return {"changed": any(sets.values()), "sets": sets}


# pylint: enable=import-outside-toplevel


#: The host layers a preview covers, with the setting that turns each on.
_PREVIEWS: Dict[str, Callable[[PreviewRequest, str], Dict[str, Any]]] = {
    "flags": flags_preview, "release": release_preview, "config": config_preview, "database": database_preview}


def _configured(request: PreviewRequest, layer: str) -> bool:
    return {"flags": bool(request.flags), "release": bool(request.release_root), "config": bool(request.paths),
            "database": bool(request.databases)}[layer]


def preview_host(request: PreviewRequest) -> Dict[str, Any]:
    """Return the store's listing, the checkpoint the target resolves to and each host layer's preview.

    Keys: ``checkpoints`` (as checkpoint_info lists them, oldest first), ``checkpoint`` (the resolved
    id, or None), ``previews`` (layer -> what it would do) and ``problems`` ([{layer, problem}]).
    """
    listing = list_checkpoints(CheckpointParams(store_path=request.store_path, owner=request.owner,
                                                encryption_key=request.encryption_key))["checkpoints"]
    found = resolve(listing, request.target)
    previews: Dict[str, Any] = {}
    problems: List[Dict[str, str]] = []
    if found is not None and request.target.startswith(SAFETY_PREFIX):  # the plan restores the paths it holds
        request = replace(request, paths=[path for path in request.paths if covers(found.get("roots") or [], path)])
    if found is not None:
        for layer, preview in _PREVIEWS.items():
            if layer in request.layers and _configured(request, layer):
                try:
                    previews[layer] = preview(request, found["id"])
                except (RollbackError, OSError) as exc:
                    problems.append(_problem(layer, exc))
    return {"changed": False, "checkpoints": listing, "checkpoint": found["id"] if found else None,
            "previews": previews, "problems": problems}


@dataclass
class SafetyAsk:
    """The safety checkpoint to take in the preview's own run (rollback_preview's ``safety``)."""

    label: str
    reason: str = "safety checkpoint before rollback"
    exclude: List[str] = field(default_factory=list)
    lock_timeout: float = 0.0
    changing: bool = False  # a layer outside the host's store (traffic, infrastructure) changes on this host


def safety_layers(plan: Dict[str, Any], changing: bool) -> List[str]:
    """Return the host layers to capture in the preview's run: the plan's ``safety_host`` when the host's own plan
    found no problem and something changes (a layer of the plan, or one outside the host's store); else none."""
    if plan["problems"] or not (plan["changes"] or changing):
        return []
    return list(plan["safety_host"])


def preview_with_safety(request: PreviewRequest, ask: Optional[SafetyAsk], check_mode: bool) -> Dict[str, Any]:
    """Preview the host (:func:`preview_host`), then, when asked, outside check mode and when this host's plan is
    clear, take its safety checkpoint in the same run, journaled (``safety_journal``) so that a run refused
    afterwards by another host can remove it. Adds ``safety``: ``layers`` taken (empty: none), the capture's
    result, its ``journal`` and a ``problem`` when the capture failed."""
    outcome = preview_host(request)
    if ask is None or check_mode or not ask.label:
        return outcome
    settings = HostSettings(paths=request.paths, release_root=request.release_root, store_path=request.store_path,
                            databases=request.databases, flags=request.flags)
    plan = plan_host("", request.target, request.layers, settings, outcome["checkpoints"], None, "",
                     outcome["previews"], outcome["problems"])
    layers = safety_layers(plan, ask.changing)
    if not layers:
        outcome["safety"] = {"layers": [], "journal": {"created": []}}
        return outcome
    from .safety import SafetyRequest  # pylint: disable=import-outside-toplevel  # only when a capture is asked
    from .safety_journal import take_journaled  # pylint: disable=import-outside-toplevel
    config = plan["steps"].get("config") or {}
    taken = take_journaled(SafetyRequest(
        label=ask.label, reason=ask.reason, layers=layers, store_path=request.store_path, owner=request.owner,
        encryption_key=request.encryption_key, lock_timeout=ask.lock_timeout, paths=list(config.get("paths") or []),
        roots=list(config.get("roots") or []), exclude=list(ask.exclude), release_root=request.release_root,
        databases=request.databases, flags=request.flags))
    taken["layers"] = [] if taken.get("problem") else layers
    outcome["safety"] = taken
    outcome["changed"] = bool(taken["journal"]["created"])
    return outcome
