# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database layer's decisions: how each database goes back, and the module arguments that do it.

Pure Python, no Ansible: the ``rollback_database`` action runs ``db_migrate`` and ``db_restore`` with
what these functions return, and falls back from a refused revert to the dump when the method allows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from ..db.connection import canonical_engine
from .selection import database_name  # how the plan, its methods and the outcome name a database

METHODS = ("auto", "migrate", "restore", "skip")
#: Methods that revert the migrations first (auto falls back to the dump when the revert is refused).
REVERTING = ("auto", "migrate")
#: Connection options of an entry, passed on as they are when set.
CONNECTION = ("login_host", "login_port", "login_user", "login_unix_socket", "client_bin_dir", "client_charset")
#: Restore options an entry may set for itself.
RESTORE_OWN = ("source_database", "terminate_sessions", "restore_extra_args")


@dataclass
class LayerSettings:
    """The role's settings for every database of the layer (an entry's own jobs or mode come first)."""

    checkpoint: str
    label: str = ""
    method: str = ""
    methods: Optional[Mapping[str, str]] = None
    mode: str = "replace"
    jobs: int = 1
    safety_backup: bool = True
    store: Optional[Mapping[str, Any]] = None  # store_path, lock_timeout, encryption_key (when set)


def choose_method(entry: Mapping[str, Any], settings: LayerSettings) -> str:
    """How ``entry`` goes back: the role's method for every database, else the plan's for this one, else the
    entry's own (``auto`` by default) when it has migrations, else ``restore``."""
    if settings.method:
        return settings.method
    planned = (settings.methods or {}).get(database_name(entry))
    if planned:
        return planned
    return (entry.get("method") or "auto") if entry.get("migrations_dir") else "restore"


def _common(entry: Mapping[str, Any], password: str, settings: LayerSettings) -> Dict[str, Any]:
    args: Dict[str, Any] = {"engine": canonical_engine(entry["engine"]), "database": entry["database"]}
    args.update({key: entry[key] for key in CONNECTION if entry.get(key) is not None})
    if password:
        args["login_password"] = password
    args.update({key: value for key, value in (settings.store or {}).items() if value is not None})
    return args


def revert_args(entry: Mapping[str, Any], password: str, settings: LayerSettings) -> Dict[str, Any]:
    """The arguments of ``db_migrate`` reverting ``entry`` to the label, else to the checkpoint's version."""
    args = _common(entry, password, settings)
    args.update(operation="revert", migrations_dir=entry["migrations_dir"])
    if settings.label:
        args["label"] = settings.label
    else:
        args["checkpoint"] = settings.checkpoint
    return args


def restore_args(entry: Mapping[str, Any], password: str, settings: LayerSettings) -> Dict[str, Any]:
    """The arguments of ``db_restore`` restoring ``entry`` from the checkpoint's dump."""
    args = _common(entry, password, settings)
    args.update({key: entry[key] for key in RESTORE_OWN if entry.get(key) is not None})
    args.update(checkpoint=settings.checkpoint, safety_backup=settings.safety_backup,
                jobs=entry.get("jobs") or settings.jobs, mode=entry.get("mode") or settings.mode)
    return args
