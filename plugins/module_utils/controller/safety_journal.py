# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A safety checkpoint taken in the plan's own host run, before every host's plan is known, and its removal.

The rollback role takes a host's safety checkpoint in the same module run as its plan (rollback_preview with
``safety``), when that host's plan found no problem. Another host's plan may still refuse the run, and a refused
run must leave every store as it was, byte for byte. So the capture is journaled: the store's entries are listed
before and after, the stat caches are left as they are (``Store.keep_caches``), and every file and directory the
capture created is returned (its journal). :func:`discard` removes exactly those, under the store lock: the store
is then what it was. A checkpoint another writer stored in between may share the new objects: then only the
safety manifests go, and the objects are left to the next garbage collection.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import replace
from typing import Any, Dict, List, Set, Tuple

from ..common.errors import RollbackError
from ..store.store import Store
from .safety import SafetyRequest, take_safety_checkpoint

#: A path a capture creates under the store root: one of its directories, or a name of the store's own grammar.
_CREATED = re.compile(r"(objects|packs|checkpoints|cache|locks|tmp)(/[A-Za-z0-9][A-Za-z0-9._-]{0,200}){0,2}\Z")
_MANIFESTS = "checkpoints"

Listing = Dict[str, Tuple[int, int, int]]


def store_listing(root: str) -> Listing:
    """Return every entry under the store root: relative path -> (mode, size, mtime in ns); no link is followed."""
    found: Listing = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            found[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
    return found


def _manifests(listing: Listing) -> List[str]:
    return sorted(path for path in listing if path.startswith(_MANIFESTS + "/"))


def take_journaled(request: SafetyRequest) -> Dict[str, Any]:
    """Take the safety checkpoint (see :func:`take_safety_checkpoint`) with the store's caches kept; return its
    result with ``journal``: ``created`` (every path it created, deepest last), ``checkpoints`` (the manifests
    before it) and ``touched`` (files that existed and changed: none, unless another writer wrote meanwhile).

    A failure is returned as ``problem`` (the layers captured before it are in the journal too), never raised.
    """
    root = request.store_path
    before = store_listing(root) if os.path.isdir(root) else {}
    result: Dict[str, Any] = {"changed": False, "label": request.label, "checkpoint": None, "layers": []}
    try:
        result = take_safety_checkpoint(replace(request, keep_caches=True))
    except (RollbackError, OSError) as exc:
        result["problem"] = str(exc)
    after = store_listing(root) if os.path.isdir(root) else {}
    result["journal"] = {
        "created": sorted(path for path in after if path not in before),
        "checkpoints": _manifests(before),
        "touched": sorted(path for path in after if path in before and stat.S_ISREG(after[path][0])
                          and after[path] != before[path]),
    }
    return result


def check_journal(journal: Dict[str, Any]) -> List[str]:
    """Return the journal's created paths, refusing any outside the grammar of a store's entries."""
    created = [str(path) for path in journal.get("created") or []]
    bad = [path for path in created if not _CREATED.match(path) or ".." in path.split("/")]
    if bad:
        raise RollbackError("The safety journal names paths outside the store's layout: %s" % ", ".join(bad[:5]))
    return created


def _inside(root: str, path: str) -> bool:
    """Whether every directory between the root and the path is a real directory (no link)."""
    parent = os.path.dirname(path)
    while parent and parent != ".":
        if not stat.S_ISDIR(os.lstat(os.path.join(root, parent)).st_mode):
            return False
        parent = os.path.dirname(parent)
    return True


def _remove(root: str, paths: List[str]) -> int:
    """Remove files first, then directories deepest first when empty; return how many entries went."""
    removed = 0
    for path in sorted(paths, key=lambda p: (-p.count("/"), p)):
        full = os.path.join(root, path)
        mode = 0
        try:
            mode = os.lstat(full).st_mode
            if not _inside(root, path):
                continue
            if stat.S_ISDIR(mode):
                os.rmdir(full)
            else:
                os.unlink(full)
            removed += 1
        except FileNotFoundError:
            continue
        except OSError:
            if not stat.S_ISDIR(mode):
                raise
    return removed


def discard(store: Store, journal: Dict[str, Any], owner: str, lock_timeout: float,
            check_mode: bool = False) -> Dict[str, Any]:
    """Remove what a journaled safety checkpoint created (see the module docstring); return ``removed`` (entries),
    ``identical`` (the store is as before the capture) and ``others`` (manifests another writer stored since)."""
    created = check_journal(journal)
    if not created or not os.path.isdir(store.root):
        return {"changed": False, "removed": 0, "identical": not journal.get("touched"), "others": []}
    ours = {path for path in created if path.startswith(_MANIFESTS + "/")}
    with store.lock(owner, "discard the safety checkpoint", lock_timeout):
        now = _manifests(store_listing(store.root))
        known: Set[str] = set(journal.get("checkpoints") or []) | ours
        others = [path for path in now if path not in known]
        wanted = sorted(ours) if others else created
        if check_mode:
            return {"changed": bool(wanted), "removed": 0, "identical": False, "others": others}
        removed = _remove(store.root, sorted(ours)) + (0 if others else _remove(store.root, [p for p in created if p not in ours]))
    return {"changed": removed > 0, "removed": removed, "identical": not others and not journal.get("touched"),
            "others": others}
