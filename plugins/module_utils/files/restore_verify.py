# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The check after a restore: every change of its plan landed (``verify_changes``), and a live root
compared with its checkpoint (``verify_tree``)."""

from __future__ import annotations

import itertools
import os
from typing import List, Optional, Tuple

from ..common.errors import RollbackError
from ..common.nofollow import DirCursor, lstat_at, open_listed, open_root
from .written import WrittenFiles, unchanged_since_written
from .restore_plan import RootPlan, differences, plan_root
from ..store.store import Store
from ..store.tree import FILE, LINK, kind_of


def verify_changes(plan: RootPlan, store: Store, written: Optional[WrittenFiles] = None) -> List[dict]:
    """Check that every change of an applied plan landed: re-read each written entry, each removed
    path is gone, each touched directory has its metadata. Entries the plan left alone were found
    equal when it was made.

    A file's content is re-hashed (not trusted to the stat cache) unless it is the file this run
    wrote, hashing every byte as it wrote it (``written``), untouched since its rename: the same inode
    and generation, size and change time (its mtime, mode and owner are compared as every entry's).
    """
    try:
        cursor = DirCursor(open_root(plan.root), plan.root)
    except (OSError, RollbackError) as exc:
        return [{"path": ".", "problem": "cannot be opened: %s" % exc}]
    problems = []
    try:
        checks = itertools.chain(((number, action.rel, action.entry) for number, action in enumerate(plan.actions)),
                                 ((None, "/".join(key), entry) for key, entry in plan.dirs.items()))
        for number, rel, entry in checks:  # one entry decoded at a time: a large plan keeps its entries packed
            try:
                dir_fd, name = cursor.parent_of(rel)
                as_written = written.get(number) if written is not None and number is not None else None
                problem = _entry_problem(dir_fd, name, entry, store, as_written)
            except (OSError, RollbackError) as exc:
                problem = "cannot be reached: %s" % exc
            if problem:
                problems.append({"path": rel, "problem": problem})
    finally:
        cursor.close()
    return problems


def _entry_problem(dir_fd: int, name: str, entry: Optional[dict], store: Store,
                   as_written: Optional[Tuple[int, int, int, int]] = None) -> Optional[str]:
    """Return how an entry differs from what the plan wrote (``entry`` None: it was removed); ``as_written``:
    the file this run wrote there (:class:`WrittenFiles`), its content hashed as it was written."""
    try:
        st = lstat_at(dir_fd, name)
    except FileNotFoundError:
        return "missing" if entry is not None else None
    if entry is None:
        return "still present"
    if kind_of(st) != entry["type"]:
        return "is a %s, not a %s" % (kind_of(st) or "special file", entry["type"])
    sha = target = None
    if entry["type"] == FILE:
        fd = open_listed(dir_fd, name, st.st_dev, st.st_ino)
        if fd is None:
            return "changed while it was checked"
        try:
            sha = entry["sha256"] if unchanged_since_written(fd, st, as_written) else store.hash_fd(fd)
        finally:
            os.close(fd)
    if entry["type"] == LINK:
        target = os.readlink(name, dir_fd=dir_fd)
    reasons = differences(entry, st, sha, target)
    return "differs in " + ", ".join(reasons) if reasons else None


def verify_tree(store: Store, record: dict) -> List[dict]:
    """Compare a live root with its checkpoint (hashing what the stat cache cannot vouch for) and
    refresh the stat cache; return the differences (empty when equal)."""
    writer = store.cache_writer(record["path"])
    try:
        plan = plan_root(store, record, cache_writer=writer)
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return [action.as_dict() for action in plan.actions]
