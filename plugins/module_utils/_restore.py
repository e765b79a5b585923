# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring managed roots to a checkpoint: plan by merging the live walk with the stored
tree, verify every blob, stage new content beside its destination, then rename into place.

A process killed at any point leaves each file either old or new (renames are atomic);
leftover temporary files are extras that the next run removes while it completes the job.
"""

from __future__ import annotations

import itertools
import os
import secrets
from array import array
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

from ._checkpoint import CheckpointRequest, RootSpec, TreeRecorder, roots_of, save_checkpoint
from ._errors import IntegrityError, RollbackError, UnsafePathError
from ._fsutil import TEMP_MARK, raise_if_full, sync_filesystem
from ._nofollow import (
    CREATE_FLAGS, READ_FLAGS, DirCursor, lstat_at, open_listed, open_root, race_point, read_small, remove_at,
)
from ._plantable import Action, ActionList, DirEntries
from ._statcache import CacheWriter
from ._store import Store, safety_label, summarize
from ._tree import (
    DIR, FIFO, FILE, LINK, Key, TreeValidator, gid_for, kind_of, path_key, uid_for, walk_at,
)
import stat as _stat

DIFF_LIMIT = 128 * 1024


VERIFIED_MEMORY = 4096  # object names verify_blobs remembers; one seen again after that is hashed again


@dataclass
class RootPlan:
    """Everything a restore of one root must do, found before anything changes."""

    root: str
    record: dict
    actions: ActionList = field(default_factory=ActionList)
    dirs: DirEntries = field(default_factory=DirEntries)
    diffs: List[dict] = field(default_factory=list)
    safety: Optional[dict] = None  # the live root's record, when the plan also captured it

    def blobs(self) -> Iterator[Tuple[str, str]]:
        """Yield (sha256, path) of every blob the plan writes."""
        actions = self.actions
        for number in range(len(actions)):
            if actions.op(number) != "delete":
                action = actions[number]
                entry = action.entry
                if entry["type"] == FILE and rewrites(action, entry):
                    yield entry["sha256"], action.rel


def rewrites(action: Action, entry: dict) -> bool:
    """Tell whether an action writes a new entry beside the live one and renames it into place.

    A metadata change writes a new copy when it would give an inode that someone else may hold
    open for writing a new owner or a set-id bit, and a symlink is always made anew (a link's
    metadata cannot be set through a descriptor).
    """
    if action.op != "meta":
        return True
    if entry["type"] == LINK:
        return True
    return entry["type"] == FILE and ("owner" in action.reasons or bool(entry["mode"] & (_stat.S_ISUID | _stat.S_ISGID)))


def _owner_ids(entry: dict) -> Tuple[int, int]:
    return uid_for(entry.get("owner"), entry["uid"]), gid_for(entry.get("group"), entry["gid"])


def _differences(entry: dict, st: os.stat_result, live_sha: Optional[str], live_target: Optional[str]) -> List[str]:
    reasons = []
    if entry["type"] == FILE and live_sha != entry["sha256"]:
        reasons.append("content")
    if entry["type"] == LINK and live_target != entry["target"]:
        reasons.append("target")
    if entry["type"] != LINK and _stat.S_IMODE(st.st_mode) != entry["mode"]:
        reasons.append("mode")
    if (st.st_uid, st.st_gid) != _owner_ids(entry):
        reasons.append("owner")
    if st.st_mtime_ns != entry["mtime_ns"]:
        reasons.append("mtime")
    return reasons


def _text(data: bytes) -> Optional[str]:
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


LiveEntry = Tuple[Key, str, os.stat_result, int, str]  # key, relative path, lstat, parent descriptor, name


class _Planner:
    """Merges the live walk of a root with its stored tree."""

    def __init__(self, store: Store, record: dict, want_diff: bool, cache_writer: Optional[CacheWriter],
                 capture: bool = False) -> None:
        self.store = store
        self.plan = RootPlan(record["path"], record)
        self.want_diff = want_diff
        self.cache = store.cache_reader(record["path"])
        self.cache_writer = cache_writer
        self.ancestors: List[Tuple[Key, dict]] = []
        self.validator = TreeValidator(record["path"])
        self.cursor: Optional[DirCursor] = None
        try:
            self.cursor = DirCursor(open_root(record["path"]), record["path"])
        except FileNotFoundError:
            pass  # no live root: everything is created
        except BaseException:
            self.cache.close()
            raise
        self.recorder = TreeRecorder(store, RootSpec.from_record(record), self.cache, self.cursor) \
            if capture and self.cursor else None
        self.live_sha: Optional[str] = None

    def _record(self, live: LiveEntry, sha: Optional[str] = None) -> None:
        """Add a live entry to the capture of the live root (the safety checkpoint), if any."""
        if self.recorder:
            self.recorder.add(live[0], live[1], live[2], sha, live[3], live[4])

    def _live(self) -> Iterator[LiveEntry]:
        if self.cursor is None:
            return
        spec = RootSpec.from_record(self.plan.record)
        for rel, st, dir_fd, name in walk_at(self.cursor.root_fd, spec.selection(), keep_temp=True):
            if _stat.S_ISSOCK(st.st_mode):
                continue  # sockets belong to running services: never captured, never removed
            yield path_key(rel), rel, st, dir_fd, name

    def _target(self) -> Iterator[Tuple[Key, dict]]:
        for entry in self.store.iter_tree(self.plan.record["tree"]):
            yield self.validator.check(entry), entry

    def _touch(self, key: Key) -> None:
        for dir_key, entry in self.ancestors:
            if key[: len(dir_key)] == dir_key and len(key) > len(dir_key):
                self.plan.dirs.add(dir_key, entry)

    def _add(self, action: Action, key: Key) -> None:
        self.plan.actions.append(action)
        self._touch(key)

    def _enter_target(self, key: Key, entry: dict) -> None:
        while self.ancestors and key[: len(self.ancestors[-1][0])] != self.ancestors[-1][0]:
            self.ancestors.pop()
        if entry["type"] == DIR:
            self.ancestors.append((key, entry))

    def _live_hash(self, live: LiveEntry) -> Optional[str]:
        """Return a live file's content hash (None when it is no longer the file that was listed)."""
        key, rel, st, dir_fd, name = live
        sha = self.cache.lookup(key, st)
        if sha is None:
            fd = open_listed(dir_fd, name, st.st_dev, st.st_ino)
            if fd is None:
                return None  # replaced since it was listed: the plan writes the checkpoint's copy
            try:
                sha = self.store.hash_fd(fd)
            finally:
                os.close(fd)
        if self.cache_writer:
            self.cache_writer.add(rel, sha, st)
        return sha

    def _diff(self, rel: str, before_at: Optional[Tuple[int, str]], after_sha: Optional[str]) -> None:
        if not self.want_diff or (before_at is None and after_sha is None):
            return
        before = b""
        if before_at:
            data = read_small(before_at[0], before_at[1], DIFF_LIMIT)
            if data is None:
                return
            before = data
        after = b""
        if after_sha:
            if self.store.object_size(after_sha) > DIFF_LIMIT:
                return
            after = self.store.read_blob(after_sha)
        before_text, after_text = _text(before), _text(after)
        if before_text is None or after_text is None:
            return
        root = self.plan.root
        self.plan.diffs.append({
            "before_header": os.path.join(root, rel) if before_at else "/dev/null",
            "after_header": "%s (checkpoint)" % os.path.join(root, rel) if after_sha else "/dev/null",
            "before": before_text, "after": after_text,
        })

    def _compare(self, live: LiveEntry, entry: dict) -> Optional[Action]:
        _key, rel, st, dir_fd, name = live
        live_kind = kind_of(st)
        if live_kind != entry["type"]:
            self._diff(rel, (dir_fd, name) if live_kind == FILE else None, entry.get("sha256"))
            return Action("retype", rel, entry, live_kind or "special", ["type"])
        live_sha = self.live_sha = self._live_hash(live) if live_kind == FILE else None
        live_target = None
        if live_kind == LINK:
            try:
                live_target = os.readlink(name, dir_fd=dir_fd)
            except OSError:
                pass  # no longer a link: the plan makes the checkpoint's link anew
        reasons = _differences(entry, st, live_sha, live_target)
        if not reasons:
            return None
        if "content" in reasons or "target" in reasons:
            if "content" in reasons:
                self._diff(rel, (dir_fd, name), entry["sha256"])
            return Action("update", rel, entry, live_kind, reasons)
        return Action("meta", rel, entry, live_kind, reasons, live_ino=st.st_ino)

    def run(self) -> RootPlan:
        """Build the plan (capturing the live root too when asked); raises on an unsafe or
        damaged manifest before anything changes."""
        try:
            self._merge()
            if self.recorder:
                self.plan.safety = self.recorder.finish()
        except BaseException:
            if self.recorder:
                self.recorder.abort()
            raise
        finally:
            self.cache.close()
            if self.cursor:
                self.cursor.close()
        return self.plan

    def _merge(self) -> None:
        """Walk the live root and the stored tree side by side."""
        live_iter, target_iter = self._live(), self._target()
        live, target = next(live_iter, None), next(target_iter, None)
        skip: Optional[Key] = None
        while live is not None or target is not None:
            if live is not None and skip is not None and live[0][: len(skip)] == skip:
                self._record(live)
                live = next(live_iter, None)
                continue
            skip = None
            if target is None or (live is not None and live[0] < target[0]):
                key, rel, st, dir_fd, name = live
                self._diff(rel, (dir_fd, name) if kind_of(st) == FILE else None, None)
                self._add(Action("delete", rel, None, kind_of(st) or "special", ["extra"]), key)
                skip = key if _stat.S_ISDIR(st.st_mode) else None
                self._record(live)
                live = next(live_iter, None)
                continue
            key, entry = target
            self._enter_target(key, entry)
            if live is None or target[0] < live[0]:
                self._diff(entry["path"], None, entry.get("sha256"))
                self._add(Action("create", entry["path"], entry), key)
                target = next(target_iter, None)
                continue
            self.live_sha = None
            action = self._compare(live, entry)
            if action:
                self._add(action, key)
                if entry["type"] == DIR and action.op == "meta":
                    self.plan.dirs.add(key, entry)
                if action.op == "retype" and _stat.S_ISDIR(live[2].st_mode):
                    skip = key
            self._record(live, self.live_sha)
            live, target = next(live_iter, None), next(target_iter, None)


def plan_root(store: Store, record: dict, want_diff: bool = False, cache_writer: Optional[CacheWriter] = None,
              capture: bool = False) -> RootPlan:
    """Compare a live root with its checkpointed tree; with ``capture``, also store the live
    root's tree (``plan.safety``) in the same walk, for a safety checkpoint."""
    return _Planner(store, record, want_diff, cache_writer, capture).run()


def verify_blobs(store: Store, plans: Sequence[RootPlan]) -> None:
    """Re-hash every blob a restore will write; refuse before any change when one is bad."""
    checked: Set[str] = set()  # names found sound (the latest VERIFIED_MEMORY): a repeat is not hashed again
    for plan in plans:
        for sha, rel in plan.blobs():
            if sha not in checked:
                actual = store.blob_hash(sha)
                if actual == sha:
                    if len(checked) >= VERIFIED_MEMORY:
                        checked.clear()
                    checked.add(sha)
                else:
                    raise IntegrityError(
                        "Stored content of %s is %s: expected sha256 %s, found %s. Nothing was "
                        "changed. Run gitops.rollback.checkpoint state=verified to list damaged "
                        "objects, and restore from another checkpoint."
                        % (os.path.join(plan.root, rel), "missing" if actual is None else "corrupted",
                           sha, actual or "no object"),
                        path=os.path.join(plan.root, rel), expected=sha, actual=actual,
                    )


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
        uid, gid = _owner_ids(entry)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, entry["mode"])
        os.utime(fd, ns=(entry["mtime_ns"], entry["mtime_ns"]))

    def _stage_link(self, entry: dict, dir_fd: int, name: str) -> None:
        tmp = self._tmp(name)
        os.symlink(entry["target"], tmp, dir_fd=dir_fd)
        os.chown(tmp, *_owner_ids(entry), dir_fd=dir_fd, follow_symlinks=False)
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
            uid, gid = _owner_ids(entry)
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
    reasons = _differences(entry, st, sha, target)
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
        result["safety_checkpoint"] = summarize(_safety(store, manifest, plans, options.creator))
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


def _safety(store: Store, manifest: dict, plans: Sequence[RootPlan], creator: Optional[str]) -> dict:
    """Save the safety checkpoint of the live roots the plans captured."""
    request = CheckpointRequest(
        roots=[], kind="safety", creator=creator,
        reason="safety checkpoint before restore to %s" % (manifest.get("label") or manifest["id"]),
        label=safety_label(manifest), force=True,
    )
    return save_checkpoint(store, request, [plan.safety for plan in plans if plan.safety])
