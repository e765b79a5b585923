# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The safety checkpoint of one host: every host layer the plan names, in one process (the rollback_safety module).

Before a rollback changes anything, the host's current state goes into one checkpoint labelled
``safety/<run id>``: the managed paths (as the checkpoint module captures them), the feature flags
(as feature_flags stores them), the current release (as the release module records it) and a dump
of each database (as db_backup takes it), in that order, each by the same engine function its own
module runs. The first layer creates the checkpoint, the others attach to it. A failure stops at once: the rollback must not start without its way back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from ..store.store import Store

if TYPE_CHECKING:
    from ..db.backup import BackupRequest

#: The host layers a safety checkpoint captures, in the order they are captured.
SAFETY_LAYERS = ("config", "flags", "release", "database")  # the paths' capture makes a checkpoint; the rest attach


@dataclass
class SafetyRequest:
    """What to capture on this host, under which label."""

    label: str
    reason: str
    layers: List[str]
    store_path: str
    owner: str
    encryption_key: Optional[str] = None
    lock_timeout: float = 0.0
    check_mode: bool = False
    paths: List[str] = field(default_factory=list)
    roots: List[str] = field(default_factory=list)  # the managed roots paths may lie below (the plan's config roots)
    exclude: List[str] = field(default_factory=list)
    release_root: str = ""
    databases: List[Dict[str, Any]] = field(default_factory=list)  # with their passwords (never returned)
    flags: List[Dict[str, Any]] = field(default_factory=list)  # flag sets, with their etcd passwords
    keep_caches: bool = False  # leave the stat caches as they are (a journaled capture, see safety_journal)

    def wants(self, layer: str) -> bool:
        """Whether the layer is asked for and configured on this host."""
        configured = {"flags": bool(self.flags), "config": bool(self.paths), "release": bool(self.release_root),
                      "database": bool(self.databases)}
        return layer in self.layers and configured[layer]


# Each layer's code is imported by its capture: a host captures the layers it has, and every file a module imports
# is compiled at its start (Ansible sends them as source).
# pylint: disable=import-outside-toplevel
def _config(request: SafetyRequest) -> Dict[str, Any]:
    from ..files.checkpoint_ops import CheckpointParams, make_checkpoint
    outcome = make_checkpoint(CheckpointParams(
        store_path=request.store_path, owner=request.owner, lock_timeout=request.lock_timeout,
        check_mode=request.check_mode, paths=list(request.paths), roots=list(request.roots),
        exclude=list(request.exclude),
        label=request.label, reason=request.reason, encryption_key=request.encryption_key,
        keep_caches=request.keep_caches))
    return {"changed": bool(outcome["changed"]), "checkpoint": outcome["checkpoint"].get("id"),
            "stats": outcome["stats"]}


def _release(request: SafetyRequest) -> Dict[str, Any]:
    from ..release.operations import ReleaseParams, record_in_checkpoint
    outcome = record_in_checkpoint(ReleaseParams(
        root=request.release_root, owner=request.owner, lock_timeout=request.lock_timeout,
        check_mode=request.check_mode, checkpoint=request.label, reason=request.reason,
        store_path=request.store_path, encryption_key=request.encryption_key))
    return {"changed": bool(outcome["changed"]), "checkpoint": (outcome.get("checkpoint") or {}).get("id"),
            "release": outcome.get("current")}


def _backup_request(entry: Dict[str, Any], request: SafetyRequest) -> BackupRequest:
    from ..db import backup as db_backup
    from ..db.connection import DbConnection
    conn = DbConnection.from_params({key: entry.get(key) for key in (
        "engine", "database", "login_host", "login_port", "login_user", "login_password", "login_unix_socket",
        "client_bin_dir", "client_charset")})
    return db_backup.BackupRequest(conn=conn, checkpoint=request.label, reason=request.reason,
                                   fmt=entry.get("format"), dump_extra_args=entry.get("dump_extra_args"))


def _databases(request: SafetyRequest) -> Dict[str, Any]:
    from ..db.backup import backup, plan_backup, summarize_backup
    store = Store(request.store_path, request.encryption_key)
    backups = []
    for entry in request.databases:
        wanted = _backup_request(entry, request)
        if request.check_mode:
            backups.append(plan_backup(store, wanted))
            continue
        manifest, component = backup(store, wanted, request.owner, request.lock_timeout)
        backups.append(summarize_backup(manifest, component))
    return {"changed": bool(backups), "backups": backups}


def _flags(request: SafetyRequest) -> Dict[str, Any]:
    from ..release.flags import FlagsRequest, backend_from, capture as capture_flags
    store = Store(request.store_path, request.encryption_key)
    stored = {}
    for entry in request.flags:
        backend = backend_from(entry)
        outcome = capture_flags(FlagsRequest(backend, store, request.owner, checkpoint=request.label,
                                             reason=request.reason, lock_timeout=request.lock_timeout,
                                             check_mode=request.check_mode))
        stored[backend.component_name] = outcome["flags"]
    return {"changed": bool(stored), "sets": stored}


# pylint: enable=import-outside-toplevel


_CAPTURES = {"flags": _flags, "config": _config, "release": _release, "database": _databases}


def take_safety_checkpoint(request: SafetyRequest) -> Dict[str, Any]:
    """Capture every layer asked for into the checkpoint ``request.label``; return what each layer took.

    Keys: ``changed``, ``label``, ``checkpoint`` (its id; None in check mode when new), ``layers``
    (the layers captured, in order) and one entry per layer (``config``, ``release``, ``database``).
    A RollbackError of any layer propagates: the layers before it stay in the checkpoint.
    """
    result: Dict[str, Any] = {"changed": False, "label": request.label, "checkpoint": None, "layers": []}
    for layer in SAFETY_LAYERS:
        if not request.wants(layer):
            continue
        taken = _CAPTURES[layer](request)
        result[layer] = taken
        result["layers"].append(layer)
        result["changed"] = result["changed"] or taken["changed"]
    store = Store(request.store_path, request.encryption_key)
    found = store.find_optional(request.label) if result["layers"] and store.exists() else None
    result["checkpoint"] = found["id"] if found else None
    return result
