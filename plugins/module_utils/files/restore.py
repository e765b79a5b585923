# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring managed roots to a checkpoint: plan by merging the live walk with the stored
tree and verify every blob (``files.restore_plan``), stage new content beside its destination, then rename into place.

A process killed at any point leaves each file either old or new (renames are atomic);
leftover temporary files are extras that the next run removes while it completes the job.
"""

from __future__ import annotations

import collections
import os
import queue
import secrets
import threading
from array import array
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..store.allowed_roots import check_roots
from .capture import CheckpointRequest, locate, roots_of, save_checkpoint
from ..common.errors import IntegrityError, RollbackError, UnsafePathError
from ..common.labels import show_label
from ..common.fsutil import TEMP_MARK, raise_if_full, rename_new, sync_filesystem, write_all
from ..common.writeback import EarlyWriteback
from ..common.nofollow import (
    CREATE_FLAGS, READ_FLAGS, DirCursor, lstat_at, open_dir_at, open_root, race_point, remove_at,
)
from .plantable import Action
from .written import WrittenFiles
from .restore_plan import RootPlan, owner_ids, plan_root, rewrites, verify_blobs
from .restore_verify import verify_changes, verify_tree  # pylint: disable=unused-import  # verify_tree: part of this module's API
from ..store.store import Store, safety_label, checkpoint_summary
from ..store.tree import DIR, FIFO, LINK, kind_of, path_key
import stat as _stat


def _changed(full: str, expected: str, found: str) -> UnsafePathError:
    return UnsafePathError(
        "%s changed between the plan and the change: expected %s, found %s. It was left as it is and nothing "
        "outside the managed root was touched; find what replaces entries there and run the restore again."
        % (full, expected, found), path=full)


class ContentSource:
    """Where a restore reads the content it writes: the store (this class), or a repository
    (``replication.fetch.RemoteContent``). The restore hashes every byte it writes and compares
    the result with the object's name before the file is renamed into place."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def supplies(self, sha: str) -> bool:  # pylint: disable=unused-argument
        """Tell whether this source brings ``sha`` itself, checked as it is written (not read from the store)."""
        return False

    def chunks(self, sha: str) -> Iterator[bytes]:
        """Yield the content of object ``sha`` (the caller hashes it)."""
        return self.store.iter_blob_content(sha)

    def refused(self, sha: str, actual: str, full: str) -> IntegrityError:
        """The error for content that does not hash to its name."""
        return IntegrityError("Object %s changed while restoring %s; nothing more was written." % (sha, full),
                              expected=sha, actual=actual, path=full)


def _set_meta(fd: int, entry: dict) -> None:
    uid, gid = owner_ids(entry)
    os.fchown(fd, uid, gid)
    os.fchmod(fd, entry["mode"])
    os.utime(fd, ns=(entry["mtime_ns"], entry["mtime_ns"]))


def _fix_meta_at(entry: dict, dir_fd: int, name: str, full: str, ino: Optional[int]) -> None:
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
        _set_meta(fd, entry)
    finally:
        os.close(fd)


class _Applier:
    """Carries out a root plan: removals, staging, renames, then directory metadata.

    Every entry is reached from its parent directory's descriptor, each directory opened without
    following a link; new content is written to a file created (``O_EXCL|O_NOFOLLOW``) beside
    its destination, hashed as it is written and compared with its object name, and renamed over
    it; metadata is set through descriptors. When staging fails, nothing was renamed yet: the
    staged files and the directories this run made are removed again. A plan that only creates
    entries is staged whole in one stage directory instead (:meth:`_build_staged`).
    """

    def __init__(self, store: Store, plan: RootPlan, source: Optional[ContentSource] = None) -> None:
        self.store = store
        self.plan = plan
        self.root = plan.root
        self.source = source or ContentSource(store)
        self.pending = array("L")  # actions whose new content waits at _tmp(name), by number
        self.created = array("L")  # files whose temporary copy the creator thread made (written or not yet)
        self.written = WrittenFiles(len(plan.actions))
        self.made: List[str] = []  # directories this run made, in the order made
        self.token = secrets.token_hex(4)
        self.cursor: Optional[DirCursor] = None
        self.staged_whole = False  # every entry staged under its own name inside a stage directory (:meth:`_build_staged`)
        self.writeback: Optional[EarlyWriteback] = None

    def _tmp(self, name: str) -> str:
        """Return the name new content of ``name`` is staged under (same directory, one name per run; inside a
        stage directory, its own name)."""
        if self.staged_whole:
            return name
        return ".%s%s%s" % (name[:100], TEMP_MARK, self.token)

    def _full(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def _at(self, rel: str) -> Tuple[int, str]:
        return self.cursor.parent_of(rel)

    def _write_file(self, entry: dict, fd: int, full: str, number: int) -> None:
        """Write a staged file's content (created by the creator thread), hashed and checked as it is written, and its metadata."""
        sha = entry["sha256"]
        digest = self.store.hasher()
        try:
            for chunk in self.source.chunks(sha):
                digest.update(chunk)
                write_all(fd, chunk)
            if digest.hexdigest() != sha:
                raise self.source.refused(sha, digest.hexdigest(), full)
            if self.writeback is not None:
                self.writeback.wrote(entry["size"])
            _set_meta(fd, entry)
            self.written.note(number, fd)
        finally:
            os.close(fd)

    def _stage_link(self, entry: dict, dir_fd: int, name: str) -> None:
        tmp = self._tmp(name)
        os.symlink(entry["target"], tmp, dir_fd=dir_fd)
        os.chown(tmp, *owner_ids(entry), dir_fd=dir_fd, follow_symlinks=False)
        os.utime(tmp, ns=(entry["mtime_ns"], entry["mtime_ns"]), dir_fd=dir_fd, follow_symlinks=False)

    def _stage_fifo(self, entry: dict, dir_fd: int, name: str, full: str) -> None:
        tmp = self._tmp(name)
        os.mkfifo(tmp, 0o600, dir_fd=dir_fd)
        _fix_meta_at(entry, dir_fd, tmp, full, None)

    def _make_dir(self, dir_fd: int, name: str, rel: str) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            st = lstat_at(dir_fd, name)
            if not _stat.S_ISDIR(st.st_mode):
                raise _changed(self._full(rel), "a directory", kind_of(st) or "a special file") from None
            return
        self.made.append(rel)

    def _stage(self, action: Action) -> bool:
        """Carry out a non-delete action up to its rename, but a file's new content (:meth:`_write_file`);
        tell whether something was staged."""
        entry, full = action.entry, self._full(action.rel)
        dir_fd, name = self._at(action.rel)
        if entry["type"] == DIR:
            if action.op != "meta":
                self._make_dir(dir_fd, name, action.rel)
                self.plan.dirs.add(path_key(action.rel), entry)
            return False  # directories are finished last, deepest first
        if not rewrites(action, entry):
            race_point("restore.meta", rel=action.rel)
            _fix_meta_at(entry, dir_fd, name, full, action.live_ino)
            return False
        if entry["type"] == FIFO:
            self._stage_fifo(entry, dir_fd, name, full)
        elif entry["type"] == LINK:
            self._stage_link(entry, dir_fd, name)
        else:
            raise RollbackError("A file's new content is written by the restore's writer, not staged here: %s" % full)
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
            self._check_staged(number, dir_fd, self._tmp(name))
            os.rename(self._tmp(name), name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            if self.written.tracked(number):
                try:
                    self.written.renamed(number, lstat_at(dir_fd, name))
                except OSError:  # gone again already: the verification reports what is there
                    self.written.forget(number)
        self.pending = array("L")

    def _check_staged(self, number: int, dir_fd: int, tmp: str) -> None:
        """Forget a staged file changed since it was written (the verification then reads it back)."""
        if self.written.tracked(number):
            try:
                unchanged = self.written.unchanged(number, lstat_at(dir_fd, tmp))
            except OSError:
                unchanged = False
            if not unchanged:
                self.written.forget(number)

    def _build_staged(self) -> None:
        """Stage every entry under its own name inside a new directory of the root, flush the file system,
        then rename the root's new entries (only those, not each file below them) out of it into place.

        As with a temporary copy beside each file, nothing is in place before everything was staged and
        checked, and a process killed at any point leaves each entry absent or whole; the stage directory
        (a temporary name) is removed on failure, or as an extra by the next run.
        """
        root_fd = self.cursor.root_fd
        stage = ".rebuild%s%s" % (TEMP_MARK, self.token)
        os.mkdir(stage, 0o700, dir_fd=root_fd)
        outer, done = self.cursor, False
        try:
            self.cursor = DirCursor(open_dir_at(root_fd, stage, self._full(stage)), self._full(stage))
            self.staged_whole = True
            self._stage_all()
            sync_filesystem(root_fd)
            self._rename_tops(root_fd)
            done = True
        finally:
            self.pending, self.created = array("L"), array("L")  # in place, or removed with the stage directory
            if self.cursor is not outer:
                self.cursor.close()
            self.cursor, self.staged_whole = outer, False
            if not done:
                try:
                    remove_at(root_fd, stage, self._full(stage))
                except (OSError, RollbackError):
                    pass  # the failure is reported; what is left there is an extra of the next run
        os.rmdir(stage, dir_fd=root_fd)

    def _rename_tops(self, root_fd: int) -> None:
        """Rename the entries staged directly in the stage directory into the root; a file below a directory
        moves with it and keeps its change time (the verification's sign that it is as written)."""
        actions, stage_fd = self.plan.actions, self.cursor.root_fd
        self.cursor.reset()
        moved: List[str] = []
        for number in range(len(actions)):
            rel = actions.rel(number)
            if "/" in rel:
                continue
            race_point("restore.rename", rel=rel)
            self._check_staged(number, stage_fd, rel)
            try:
                rename_new(stage_fd, rel, root_fd)
            except FileExistsError:
                _move_back(moved, root_fd, stage_fd)
                raise _changed(self._full(rel), "nothing (the plan creates it)", _kind_at(root_fd, rel)) from None
            moved.append(rel)
            if self.written.tracked(number):
                try:
                    self.written.renamed(number, lstat_at(root_fd, rel))
                except OSError:  # gone again already: the verification reports what is there
                    self.written.forget(number)

    def _drop_staged(self) -> None:
        actions = self.plan.actions
        for number in sorted(set(self.pending) | set(self.created)):
            try:
                dir_fd, name = self._at(actions.rel(number))
                os.unlink(self._tmp(name), dir_fd=dir_fd)
            except (OSError, RollbackError):
                pass
        self.pending = array("L")
        self.created = array("L")

    def _remove_made(self) -> None:
        """Remove the directories this run made (deepest first; only empty ones go)."""
        self.cursor.reset()
        for rel in reversed(self.made):
            try:
                dir_fd, name = self._at(rel)
                os.rmdir(name, dir_fd=dir_fd)
            except (OSError, RollbackError):
                pass
        self.made = []

    def _stage_all(self) -> None:
        """Stage every new entry; on a failure remove what was staged and made (nothing was renamed yet).

        The directories are made first; then a creator thread creates the files' temporary copies
        (``O_CREAT|O_EXCL|O_NOFOLLOW``, each below a directory opened without following a link) in
        plan order, while this thread writes each one's content and metadata and stages the other
        entries: a file's creation and another's writes wait in the kernel side by side.
        """
        actions = self.plan.actions
        creator = None
        try:
            files = array("L")
            for number in range(len(actions)):
                if self.plan.writes_file(number):
                    files.append(number)
                elif actions.op(number) != "delete" and actions.blob(number)[0] == DIR:
                    self._stage(actions[number])
            if files:
                self.cursor.reset()
                creator = _Creator(self, files)
                self.writeback = EarlyWriteback(self.cursor.root_fd)
            upcoming = iter(files)
            due = next(upcoming, None)
            for number in range(len(actions)):
                if number == due:
                    action = actions[number]
                    self._write_file(action.entry, creator.take(number), self._full(action.rel), number)
                    self.pending.append(number)
                    due = next(upcoming, None)
                elif actions.op(number) != "delete" and actions.blob(number)[0] != DIR and self._stage(actions[number]):
                    self.pending.append(number)
        except BaseException:
            if creator is not None:
                creator.finish()
                creator = None
            self._drop_staged()
            self._remove_made()
            raise
        finally:
            if creator is not None:
                creator.finish()
            if self.writeback is not None:
                self.writeback.stop()
                self.writeback = None

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
            if self.plan.creates_whole_tops():
                self._build_staged()
            else:
                self._stage_all()
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


def _kind_at(dir_fd: int, name: str) -> str:
    try:
        return "a %s" % (kind_of(lstat_at(dir_fd, name)) or "special file")
    except OSError:
        return "an entry gone again"


def _move_back(moved: Sequence[str], root_fd: int, stage_fd: int) -> None:
    """Move the entries moved into the root back into the stage directory (removed with it): nothing restored."""
    for name in reversed(moved):
        try:
            rename_new(root_fd, name, stage_fd)
        except OSError:
            pass  # replaced meanwhile: the verification of the next run tells


class _Creator:
    """A thread that creates the temporary copies of the files a plan writes, in plan order, at most
    CREATE_AHEAD ahead of the writes, handed over CREATE_BATCH at a time; each is reached from its parent
    directory's descriptor, every directory opened without following a link (a cursor of its own, from
    the same root descriptor)."""

    def __init__(self, applier: _Applier, numbers: array) -> None:
        self.applier = applier
        self.numbers = numbers
        self.ready: "queue.Queue[object]" = queue.Queue(max(1, CREATE_AHEAD // CREATE_BATCH))  # lists of (number, fd)
        self.taken: "collections.deque[Tuple[int, int]]" = collections.deque()  # the batch being written
        self.stopping = threading.Event()
        self.cursor = DirCursor(os.dup(applier.cursor.root_fd), applier.root)
        self.thread = threading.Thread(target=self._run, name="gitops-rollback-restore-creator", daemon=True)
        try:
            self.thread.start()
        except BaseException:
            self.cursor.close()
            raise

    def _run(self) -> None:
        applier, actions = self.applier, self.applier.plan.actions
        batch: List[Tuple[int, int]] = []
        try:
            for number in self.numbers:
                dir_fd, name = self.cursor.parent_of(actions.rel(number))
                fd = os.open(applier._tmp(name), CREATE_FLAGS, 0o600, dir_fd=dir_fd)  # pylint: disable=protected-access
                applier.created.append(number)
                batch.append((number, fd))
                if len(batch) >= CREATE_BATCH:
                    self._hand_over(batch)
                    batch = []
            self._hand_over(batch)
        except _Stopped:
            return
        except BaseException as exc:  # pylint: disable=broad-exception-caught  # raised again by take()
            try:
                self._hand_over(batch)
                self._put(exc)
            except _Stopped:
                pass

    def _hand_over(self, batch: List[Tuple[int, int]]) -> None:
        """Queue a batch of created files; close them when the restore stopped taking them."""
        if batch:
            try:
                self._put(batch)
            except _Stopped:
                for _number, fd in batch:
                    os.close(fd)
                raise

    def _put(self, item: object) -> None:
        while not self.stopping.is_set():
            try:
                self.ready.put(item, timeout=0.2)
                return
            except queue.Full:
                pass
        raise _Stopped()

    def take(self, number: int) -> int:
        """The descriptor of action ``number``'s temporary copy, open for writing (the next in plan order)."""
        if not self.taken:
            item = self.ready.get()
            if isinstance(item, BaseException):
                raise item
            self.taken.extend(item)
        created, fd = self.taken.popleft()
        if created != number:
            os.close(fd)
            raise RollbackError("The restore of %s wrote its files out of the plan's order; nothing was renamed "
                                "into place." % self.applier.root)
        return fd

    def finish(self) -> None:
        """Stop the thread, close the descriptors it made that were not taken, and its cursor."""
        self.stopping.set()
        while self.taken:
            os.close(self.taken.popleft()[1])
        while self.thread.is_alive() or not self.ready.empty():
            try:
                item = self.ready.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(item, list):
                for _number, fd in item:
                    os.close(fd)
        self.thread.join()
        self.cursor.close()


class _Stopped(Exception):
    """The restore stopped taking the created files (the creator thread ends)."""


CREATE_AHEAD = 64  # files the creator thread creates ahead of the writes
CREATE_BATCH = 16  # files handed over to the writes at once (one wake-up, not one per file)

REPORT_LIMIT = 1000


def _changes(plans: Sequence[RootPlan]) -> Dict[str, List[dict]]:
    """Return the changes per root, at most REPORT_LIMIT each (the summary counts them all)."""
    return {plan.root: [action.as_dict() for action in plan.actions.head(REPORT_LIMIT)] for plan in plans if plan.actions}


def _summary(plans: Sequence[RootPlan]) -> Dict[str, Dict[str, int]]:
    """Count the changes per root and operation."""
    return {plan.root: plan.actions.counts() for plan in plans if plan.actions}


@dataclass
class RestoreOptions:
    """How a restore runs."""

    only_paths: Sequence[str] = ()
    dry_run: bool = False
    want_diff: bool = False
    safety_checkpoint: bool = True
    creator: Optional[str] = None
    allowed_roots: Optional[Sequence[str]] = None  # where the restore may write (None: where the manifest says)


SourceFor = Callable[[Sequence[RootPlan]], ContentSource]


def restore_checkpoint(store: Store, manifest: dict, options: RestoreOptions, source_for: Optional[SourceFor] = None) -> dict:
    """Bring the manifest's roots back to their checkpointed state; the caller holds the store lock.

    ``source_for`` (given the plans, before anything changes) says where the content comes from:
    by default the store; a rebuild streams the objects the store lacks from a repository.
    """
    records = roots_of(manifest, options.only_paths)
    check_roots(manifest, options.allowed_roots, records)
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
    source = source_for(plans) if source_for else ContentSource(store)
    verify_blobs(store, plans, source.supplies)
    if options.safety_checkpoint:
        result["safety_checkpoint"] = checkpoint_summary(_safety(store, manifest, plans, options.creator))
    race_point("restore.planned")
    applied = []
    for plan in plans:
        applier = _Applier(store, plan, source)
        applier.run()
        applied.append((plan, applier.written))
    problems = {plan.root: verify_changes(plan, store, written) for plan, written in applied}
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
