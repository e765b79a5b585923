# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring managed roots to a checkpoint: plan by merging the live walk with the stored
tree and verify every blob (``files.restore_plan``), stage new content beside its destination, then rename into place.

A process killed at any point leaves each file either old or new (renames are atomic);
leftover temporary files are extras that the next run removes while it completes the job.
"""

from __future__ import annotations

import itertools
import os
import secrets
from array import array
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .capture import CheckpointRequest, locate, roots_of, save_checkpoint
from ..common.errors import IntegrityError, RollbackError, UnsafePathError
from ..common.labels import show_label
from ..common.fsutil import TEMP_MARK, raise_if_full, sync_filesystem
from ..common.nofollow import CREATE_FLAGS, READ_FLAGS, DirCursor, lstat_at, open_listed, open_root, race_point, remove_at
from .plantable import Action
from .restore_plan import RootPlan, differences, owner_ids, plan_root, rewrites, verify_blobs
from ..store.store import Store, safety_label, checkpoint_summary
from ..store.tree import DIR, FIFO, FILE, LINK, kind_of, path_key
import stat as _stat


def _changed(full: str, expected: str, found: str) -> UnsafePathError:
    return UnsafePathError(
        "%s changed between the plan and the change: expected %s, found %s. It was left as it is and nothing "
        "outside the managed root was touched; find what replaces entries there and run the restore again."
        % (full, expected, found), path=full)


class _Applier:
    """Carries out a root plan: removals, staging, renames, then directory metadata.

    Every entry is reached from its parent directory's descriptor, each directory opened without
    following a link; new content is written to a file created (``O_EXCL|O_NOFOLLOW``) beside
    its destination and renamed over it; metadata is set through descriptors.
    """

    def __init__(self, store: Store, plan: RootPlan) -> None:
        self.store = store
        self.plan = plan
        self.root = plan.root
        self.pending = array("L")  # actions whose new content waits at _tmp(name), by number
        self.token = secrets.token_hex(4)
        self.cursor: Optional[DirCursor] = None

    def _tmp(self, name: str) -> str:
        """Return the name new content of ``name`` is staged under (same directory, one name per run)."""
        return ".%s%s%s" % (name[:100], TEMP_MARK, self.token)

    def _full(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def _at(self, rel: str) -> Tuple[int, str]:
        return self.cursor.parent_of(rel)

    def _stage_file(self, entry: dict, dir_fd: int, name: str, full: str) -> None:
        tmp = self._tmp(name)
        digest = self.store.hasher()
        with os.fdopen(os.open(tmp, CREATE_FLAGS, 0o600, dir_fd=dir_fd), "wb") as out:
            for chunk in self.store.iter_blob_chunks(entry["sha256"]):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != entry["sha256"]:
                out.close()
                os.unlink(tmp, dir_fd=dir_fd)
                raise IntegrityError("Object %s changed while restoring %s; nothing more was written."
                                     % (entry["sha256"], full))
            out.flush()
            self._set_meta(out.fileno(), entry)

    @staticmethod
    def _set_meta(fd: int, entry: dict) -> None:
        uid, gid = owner_ids(entry)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, entry["mode"])
        os.utime(fd, ns=(entry["mtime_ns"], entry["mtime_ns"]))

    def _stage_link(self, entry: dict, dir_fd: int, name: str) -> None:
        tmp = self._tmp(name)
        os.symlink(entry["target"], tmp, dir_fd=dir_fd)
        os.chown(tmp, *owner_ids(entry), dir_fd=dir_fd, follow_symlinks=False)
        os.utime(tmp, ns=(entry["mtime_ns"], entry["mtime_ns"]), dir_fd=dir_fd, follow_symlinks=False)

    def _stage_fifo(self, entry: dict, dir_fd: int, name: str, full: str) -> None:
        tmp = self._tmp(name)
        os.mkfifo(tmp, 0o600, dir_fd=dir_fd)
        self._fix_meta_at(entry, dir_fd, tmp, full, None)

    def _fix_meta_at(self, entry: dict, dir_fd: int, name: str, full: str, ino: Optional[int]) -> None:
        """Set the metadata of a file or FIFO through a descriptor, if it is the expected inode."""
        try:
            fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)  # never follows a link, never blocks on a FIFO
        except OSError as exc:
            raise _changed(full, "a %s" % entry["type"], os.strerror(exc.errno or 0)) from None
        try:
            st = os.fstat(fd)
            if kind_of(st) != entry["type"] or (ino is not None and st.st_ino != ino):
                raise _changed(full, "the %s the plan saw" % entry["type"],
                               "another %s" % (kind_of(st) or "special file"))
            self._set_meta(fd, entry)
        finally:
            os.close(fd)

    def _make_dir(self, dir_fd: int, name: str, full: str) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            st = lstat_at(dir_fd, name)
            if not _stat.S_ISDIR(st.st_mode):
                raise _changed(full, "a directory", kind_of(st) or "a special file") from None

    def _stage(self, action: Action) -> bool:
        """Carry out a non-delete action up to its rename; tell whether content was staged."""
        entry, full = action.entry, self._full(action.rel)
        dir_fd, name = self._at(action.rel)
        if entry["type"] == DIR:
            if action.op != "meta":
                self._make_dir(dir_fd, name, full)
                self.plan.dirs.add(path_key(action.rel), entry)
            return False  # directories are finished last, deepest first
        if not rewrites(action, entry):
            race_point("restore.meta", rel=action.rel)
            self._fix_meta_at(entry, dir_fd, name, full, action.live_ino)
            return False
        if entry["type"] == FILE:
            self._stage_file(entry, dir_fd, name, full)
        elif entry["type"] == FIFO:
            self._stage_fifo(entry, dir_fd, name, full)
        else:
            self._stage_link(entry, dir_fd, name)
        return True

    def _finish_dirs(self) -> None:
        self.cursor.reset()
        for key in sorted(self.plan.dirs, key=len, reverse=True):
            entry = self.plan.dirs[key]
            race_point("restore.meta", rel="/".join(key))
            fd = self.cursor.open(key)  # each component opened without following a link
            uid, gid = owner_ids(entry)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, entry["mode"])
            os.utime(fd, ns=(entry["mtime_ns"], entry["mtime_ns"]))

    def _rename_staged(self) -> None:
        self.cursor.reset()
        actions = self.plan.actions
        for number in self.pending:
            rel = actions.rel(number)
            dir_fd, name = self._at(rel)
            race_point("restore.rename", rel=rel)
            os.rename(self._tmp(name), name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        self.pending = array("L")

    def _drop_staged(self) -> None:
        actions = self.plan.actions
        for number in self.pending:
            try:
                dir_fd, name = self._at(actions.rel(number))
                os.unlink(self._tmp(name), dir_fd=dir_fd)
            except (OSError, RollbackError):
                pass

    def run(self) -> None:
        """Apply the plan."""
        self.cursor = DirCursor(open_root(self.root, create=True), self.root)
        try:
            actions = self.plan.actions
            for number in range(len(actions) - 1, -1, -1):
                if actions.op(number) in ("delete", "retype"):
                    rel = actions.rel(number)
                    dir_fd, name = self._at(rel)
                    remove_at(dir_fd, name, self._full(rel))
            self.cursor.reset()
            for number in range(len(actions)):
                if actions.op(number) != "delete" and self._stage(actions[number]):
                    self.pending.append(number)
            sync_filesystem(self.cursor.root_fd)
            self._rename_staged()
            self._finish_dirs()
            sync_filesystem(self.cursor.root_fd)
        except Exception as exc:
            self._drop_staged()
            if isinstance(exc, OSError):
                raise_if_full(exc, "files under %s" % self.root)
            raise
        finally:
            self.cursor.close()


REPORT_LIMIT = 1000


def _changes(plans: Sequence[RootPlan]) -> Dict[str, List[dict]]:
    """Return the changes per root, at most REPORT_LIMIT each (the summary counts them all)."""
    return {plan.root: [action.as_dict() for action in plan.actions.head(REPORT_LIMIT)] for plan in plans if plan.actions}


def _summary(plans: Sequence[RootPlan]) -> Dict[str, Dict[str, int]]:
    """Count the changes per root and operation."""
    return {plan.root: plan.actions.counts() for plan in plans if plan.actions}


def verify_changes(plan: RootPlan, store: Store) -> List[dict]:
    """Check that every change of an applied plan landed: re-read each written entry (content
    re-hashed, not trusted to the stat cache), each removed path is gone, each touched directory
    has its metadata. Entries the plan left alone were found equal when it was made."""
    try:
        cursor = DirCursor(open_root(plan.root), plan.root)
    except (OSError, RollbackError) as exc:
        return [{"path": ".", "problem": "cannot be opened: %s" % exc}]
    problems = []
    try:
        checks = itertools.chain(((action.rel, action.entry) for action in plan.actions),
                                 (("/".join(key), entry) for key, entry in plan.dirs.items()))
        for rel, entry in checks:  # one entry decoded at a time: a large plan keeps its entries packed
            try:
                dir_fd, name = cursor.parent_of(rel)
                problem = _entry_problem(dir_fd, name, entry, store)
            except (OSError, RollbackError) as exc:
                problem = "cannot be reached: %s" % exc
            if problem:
                problems.append({"path": rel, "problem": problem})
    finally:
        cursor.close()
    return problems


def _entry_problem(dir_fd: int, name: str, entry: Optional[dict], store: Store) -> Optional[str]:
    """Return how an entry differs from what the plan wrote (``entry`` None: it was removed)."""
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
            sha = store.hash_fd(fd)
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


@dataclass
class RestoreOptions:
    """How a restore runs."""

    only_paths: Sequence[str] = ()
    dry_run: bool = False
    want_diff: bool = False
    safety_checkpoint: bool = True
    creator: Optional[str] = None


def restore_checkpoint(store: Store, manifest: dict, options: RestoreOptions) -> dict:
    """Bring the manifest's roots back to their checkpointed state; the caller holds the store lock."""
    records = roots_of(manifest, options.only_paths)
    refuse_unheld(store, manifest, records, options.only_paths)
    capture = options.safety_checkpoint and not options.dry_run
    try:
        plans = [plan_root(store, record, options.want_diff, capture=capture) for record in records]
    except BaseException:
        store.packs.abort()
        raise
    result = {
        "changed": any(plan.actions for plan in plans),
        "changes": _changes(plans),
        "summary": _summary(plans),
        "diffs": [diff for plan in plans for diff in plan.diffs],
        "safety_checkpoint": None,
        "verified": False,
    }
    if options.dry_run or not result["changed"]:
        result["verified"] = not result["changed"]
        return result
    verify_blobs(store, plans)
    if options.safety_checkpoint:
        result["safety_checkpoint"] = checkpoint_summary(_safety(store, manifest, plans, options.creator))
    race_point("restore.planned")
    for plan in plans:
        _Applier(store, plan).run()
    problems = {plan.root: verify_changes(plan, store) for plan in plans}
    problems = {root: items for root, items in problems.items() if items}
    if problems:
        raise IntegrityError(
            "After restoring checkpoint %s the tree still differs: %s. The safety checkpoint %s "
            "holds the state from before the restore." % (
                manifest["id"], problems, (result["safety_checkpoint"] or {}).get("id")),
            differences=problems,
        )
    result["verified"] = True
    return result


def refuse_unheld(store: Store, manifest: dict, records: Sequence[dict], only_paths: Sequence[str]) -> None:
    """Refuse, before anything is read or written, a path named below a managed root that the checkpoint's
    tree does not hold (the stored tree is only read)."""
    managed = [root["path"] for root in manifest.get("roots", [])]
    named = set()
    for path in only_paths:
        root, rel = locate(managed, path)
        if rel is not None:
            named.add(os.path.join(root, rel))
    unheld = []
    for record in records:
        wanted = {rel for rel in record.get("scope") or [] if os.path.join(record["path"], rel) in named}
        if wanted and record.get("tree"):
            wanted -= {entry.get("path") for entry in store.iter_tree(record["tree"])}
        unheld += [os.path.join(record["path"], rel) for rel in sorted(wanted)]
    if unheld:
        raise RollbackError(
            "Checkpoint %s (%s) holds nothing at %s: there is nothing to restore it from. Nothing was changed. It "
            "manages %s; name a path it holds (gitops.rollback.checkpoint_info with details lists them), or a "
            "managed path." % (show_label(manifest["label"]) if manifest.get("label") else manifest["id"], manifest["id"], ", ".join(unheld),
                               ", ".join(managed)), paths=unheld, available=managed)


def _safety(store: Store, manifest: dict, plans: Sequence[RootPlan], creator: Optional[str]) -> dict:
    """Save the safety checkpoint of the live roots the plans captured."""
    request = CheckpointRequest(
        roots=[], kind="safety", creator=creator,
        reason="safety checkpoint before restore to %s" % (manifest.get("label") or manifest["id"]),
        label=safety_label(manifest), force=True,
    )
    return save_checkpoint(store, request, [plan.safety for plan in plans if plan.safety])
