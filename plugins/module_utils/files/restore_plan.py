# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning a restore of one managed root: merge the live walk with the stored tree into the actions that
bring the root back (``RootPlan``), with a diff when asked, and verify every blob the plan needs before
anything changes. ``files.restore`` applies the plans.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence, Set, Tuple

from .capture import RootSpec, TreeRecorder
from ..common.errors import IntegrityError, UnsafePathError
from ..common.nofollow import DirCursor, open_listed, open_root, read_small
from .plantable import Action, ActionList, DirEntries
from ..store.statcache import CacheWriter
from ..store.store import Store
from ..store.tree import DIR, FILE, LINK, Key, TreeValidator, gid_for, kind_of, path_key, uid_for, walk_at
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

    def blobs(self) -> Iterator[Tuple[str, str, int]]:
        """Yield (sha256, path, size) of every blob the plan writes."""
        actions = self.actions
        for number in range(len(actions)):
            if self.writes_file(number):
                _kind, size, sha = actions.blob(number)
                yield sha, actions.rel(number), size

    def creates_whole_tops(self) -> bool:
        """Tell whether every action creates an entry whose parent is the root or a directory it creates
        (a rebuild into an empty root): the whole plan can be staged in one directory."""
        actions = self.actions
        if set(actions.counts()) != {"create"}:
            return False
        made = set()
        for number in range(len(actions)):
            rel = actions.rel(number)
            head = rel.rpartition("/")[0]
            if head and head not in made:
                return False
            made.add(rel)
        return True

    def writes_file(self, number: int) -> bool:
        """Tell whether action ``number`` writes a regular file's content (its entry decoded only for a metadata change)."""
        actions = self.actions
        op = actions.op(number)
        if op == "delete" or actions.blob(number)[0] != FILE:
            return False
        if op != "meta":
            return True
        action = actions[number]
        return rewrites(action, action.entry)


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


def owner_ids(entry: dict) -> Tuple[int, int]:
    """Return the uid and gid a tree entry asks for (its owner and group names first, else the recorded ids)."""
    return uid_for(entry.get("owner"), entry["uid"]), gid_for(entry.get("group"), entry["gid"])


def differences(entry: dict, st: os.stat_result, live_sha: Optional[str], live_target: Optional[str]) -> List[str]:
    """Return what differs between a live entry and the stored one (content, target, mode, owner)."""
    reasons = []
    if entry["type"] == FILE and live_sha != entry["sha256"]:
        reasons.append("content")
    if entry["type"] == LINK and live_target != entry["target"]:
        reasons.append("target")
    if entry["type"] != LINK and _stat.S_IMODE(st.st_mode) != entry["mode"]:
        reasons.append("mode")
    if (st.st_uid, st.st_gid) != owner_ids(entry):
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
        self.selection = RootSpec.from_record(record).selection()
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
        for rel, st, dir_fd, name in walk_at(self.cursor.root_fd, self.selection, keep_temp=True):
            if _stat.S_ISSOCK(st.st_mode):
                continue  # sockets belong to running services: never captured, never removed
            yield path_key(rel), rel, st, dir_fd, name

    def _target(self) -> Iterator[Tuple[Key, dict]]:
        """Yield the stored entries to restore: all, or those of the scope and the directories that lead to it."""
        for entry in self.store.iter_tree(self.plan.record["tree"]):
            key = self.validator.check(entry)
            if self.selection.in_scope(key):
                yield key, entry
            elif entry["type"] == DIR and self.selection.leads_to(key):
                yield key, entry

    def _keep_leading_dir(self, live: LiveEntry, key: Key) -> None:
        """A live directory on the way to the scope stays as it is: a change below it gives it back its
        own metadata (not the checkpoint's); anything else where the checkpoint has a directory is refused."""
        st = live[2]
        if not _stat.S_ISDIR(st.st_mode):
            full = os.path.join(self.plan.root, live[1])
            below = [os.path.join(self.plan.root, "/".join(part)) for part in self.selection.scope
                     if part[: len(key)] == key]
            raise UnsafePathError(
                "%s is a %s now, where the checkpoint has a directory: restoring %s below it would replace it. "
                "Nothing was changed. Name %s (or its managed root) to restore it too." % (
                    full, kind_of(st) or "special file", ", ".join(below), full), path=full)
        kept = {"type": DIR, "path": live[1], "mode": _stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                "mtime_ns": st.st_mtime_ns}
        self.ancestors[-1] = (key, kept)

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
        reasons = differences(entry, st, live_sha, live_target)
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
                if self.selection.leads_to(key):  # on the way to the scope, and not in the checkpoint: left alone
                    self._record(live)
                    live = next(live_iter, None)
                    continue
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
            if self.selection.leads_to(key):
                self._keep_leading_dir(live, key)
                self._record(live)
                live, target = next(live_iter, None), next(target_iter, None)
                continue
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


def verify_blobs(store: Store, plans: Sequence[RootPlan], supplied: Callable[[str], bool] = lambda _sha: False) -> None:
    """Re-hash every blob a restore will read from the store; refuse before any change when one is bad.

    Blobs for which ``supplied`` is true come from elsewhere (a repository) and are checked as they are written.
    """
    checked: Set[str] = set()  # names found sound (the latest VERIFIED_MEMORY): a repeat is not hashed again
    for plan in plans:
        for sha, rel, _size in plan.blobs():
            if sha not in checked and not store.known_sound(sha) and not supplied(sha):
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
