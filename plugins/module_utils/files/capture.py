# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Creating host checkpoints: capture managed roots into tree objects and a manifest."""

from __future__ import annotations

import os
import stat
from stat import S_ISREG
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterator, List, Optional, Sequence, Tuple

from ..store.contentpool import ContentPool
from ..common.errors import RollbackError, UnsafePathError
from ..common import nofollow
from ..common.nofollow import DirCursor, lstat_at, open_listed, open_root, race_point
from ..store.statcache import CacheReader, CacheWriter
from ..store.store import Store
from ..common.fsutil import is_temp_name
from ..common.labels import show_label
from ..store.tree import (
    DIR, FILE, LINK, Key, Selection, describe_entry, device_refusal, encode_entry, file_line, kind_of, path_key,
    walk_at,
)

# Walked entries that may wait for their file contents (hashed and stored by worker processes).
WINDOW = 2048
# Looks at an entry that keeps changing under a capture before the capture gives up on it.
LOOKS = 4

Listed = Tuple[str, int, int]  # a file as listed: relative path, device, inode
Content = Tuple[Optional[str], int, bool]  # object name, size, new object
CHANGED: Content = (None, 0, False)  # the entry was no longer the file that was listed


@dataclass
class RootSpec:
    """A managed root directory, the globs that select its entries, and the paths below it it is narrowed to
    (``scope``, relative; empty: the whole root)."""

    path: str
    include: List[str] = field(default_factory=list)
    exclude: List[str] = field(default_factory=list)
    scope: List[str] = field(default_factory=list)

    @classmethod
    def from_record(cls, record: dict) -> "RootSpec":
        """Build the spec a manifest root was captured with."""
        return cls(record["path"], list(record.get("include") or []), list(record.get("exclude") or []),
                   list(record.get("scope") or []))

    def selection(self) -> Selection:
        """Return the include/exclude selection, narrowed to the scope."""
        return Selection(self.include, self.exclude, self.scope)


def resolve_root(path: str) -> str:
    """Return the real absolute path of a managed root, or fail saying what is wrong."""
    if not os.path.isabs(path):
        raise RollbackError("Managed path %r is not absolute; give the full path." % path)
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        raise RollbackError("Managed path %s does not exist or is not a directory on this host." % path)
    return real


@dataclass
class CaptureStats:
    """What a capture did."""

    entries: int = 0
    bytes: int = 0
    hashed: int = 0
    new_blobs: int = 0
    skipped: List[str] = field(default_factory=list)


class _Capture:
    """Turns a walk of one root into tree lines, storing file contents as it goes."""

    def __init__(self, store: Store, spec: RootSpec, dry_run: bool) -> None:
        self.store = store
        self.spec = spec
        self.dry_run = dry_run
        self.stats = CaptureStats()
        self.cursor: Optional[DirCursor] = None  # the root's descriptor and a path of directories below it

    def _store_content(self, listed: Listed, cached: Optional[str], size: int,
                       at: Optional[Tuple[int, str]] = None) -> Content:
        """Hash (and unless dry-run, store) a listed file, opened below its parent directory's
        descriptor (``at``, else found through the cursor) without following a link; CHANGED when
        what is there is not the inode that was listed. Runs in a worker."""
        if self.dry_run and cached:
            return cached, size, not self.store.has_blob(cached)
        rel, dev, ino = listed
        try:
            dir_fd, name = at or self.cursor.parent_of(rel)
        except (OSError, UnsafePathError):
            return CHANGED  # a parent directory was removed or replaced since the listing
        if nofollow.race_hook is not None:
            race_point("capture.read", rel=rel)
        fd = open_listed(dir_fd, name, dev, ino)
        if fd is None:
            return CHANGED
        try:
            return self._content_of(fd, size)
        finally:
            os.close(fd)

    def _content_of(self, fd: int, size: int) -> Content:
        if self.dry_run:
            sha = self.store.hash_fd(fd)
            return sha, size, not self.store.has_blob(sha)
        return self.store.put_fd_counted(fd, size)

    def _describe(self, rel: str, st: os.stat_result, dir_fd: int,
                  name: str) -> Optional[Tuple[dict, os.stat_result, Optional[Content]]]:
        """Return a walked entry's record (a link's target included), its stat and, for a file
        that had to be looked at again, its content; None for a socket (listed as skipped) or an
        entry that is gone. A device is refused."""
        kind = kind_of(st)
        if kind is None:
            return self._skip(rel, st)
        entry = describe_entry(rel, st, kind)
        if kind == LINK:
            try:
                entry["target"] = os.readlink(name, dir_fd=dir_fd)
            except OSError:  # no longer a link
                return self._look_again(rel)
        self.stats.entries += 1
        return entry, st, None

    def _skip(self, rel: str, st: os.stat_result) -> None:
        """Leave out a socket (listed as skipped); refuse a device."""
        refusal = device_refusal(self.spec.path, rel, st)
        if refusal:
            raise refusal
        self.stats.skipped.append(rel)

    def _look_again(self, rel: str) -> Optional[Tuple[dict, os.stat_result, Optional[Content]]]:
        """Describe an entry that changed after it was listed as what it is now (a symlink stays a
        symlink, a file's record and content come from one descriptor); None when it is gone."""
        for _look in range(LOOKS):
            try:
                dir_fd, name = self.cursor.parent_of(rel)
                st = lstat_at(dir_fd, name)
            except (OSError, UnsafePathError):
                return None  # gone, or its parent was replaced: no longer below the root
            kind = kind_of(st)
            if kind is None:
                return self._skip(rel, st)
            if kind == DIR:
                continue  # a directory in place of a listed entry: its inside was not walked
            entry, content = describe_entry(rel, st, kind), None
            if kind == LINK:
                try:
                    entry["target"] = os.readlink(name, dir_fd=dir_fd)
                except OSError:
                    continue
            elif kind == FILE:
                fd = open_listed(dir_fd, name, st.st_dev, st.st_ino)
                if fd is None:
                    continue
                try:
                    st = os.fstat(fd)
                    entry = describe_entry(rel, st, kind)
                    content = self._content_of(fd, st.st_size)
                finally:
                    os.close(fd)
                self.stats.hashed += 1
                self.stats.new_blobs += 1 if content[2] else 0
            self.stats.entries += 1
            return entry, st, content
        raise RollbackError(
            "%s/%s changed at each of %d looks while it was captured; nothing was stored for it. Find what "
            "replaces it (or exclude it) and run the checkpoint again." % (self.spec.path, rel, LOOKS),
            path="%s/%s" % (self.spec.path, rel))

    def _content_now(self, listed: Listed, sha: Optional[str], st: os.stat_result,
                     at: Optional[Tuple[int, str]] = None) -> Content:
        """Return a file's (sha256, size[, new]): the known hash if its blob is stored, else hash and store it here."""
        if sha and self.store.has_blob(sha):
            return sha, st.st_size, False
        content = self._store_content(listed, sha, st.st_size, at)
        if content[0] is not None:
            self.stats.hashed += 1
            self.stats.new_blobs += 1 if content[2] else 0
        return content

    def _finish(self, entry: Optional[dict], st, content, writer: Optional[CacheWriter],
                contents: Optional[ContentPool] = None) -> bytes:
        """Fill in a file entry's content (a known tuple, or a job of ``contents``) and return its
        tree line; an entry that changed since it was listed is described again as it is now.
        ``entry`` None: ``st`` is the finished line of an unchanged file, ``content`` its stat cache row
        (which goes to the new cache as it is, in tree order like every row)."""
        if entry is None:
            if writer:
                writer.add_row(content)
            return st
        if content is not None:
            if contents is not None and isinstance(content, int):
                content = contents.result(content)
                if content[0] is not None:
                    self.stats.hashed += 1
                    self.stats.new_blobs += 1 if content[2] else 0
            if content[0] is None:
                self.stats.entries -= 1
                again = self._look_again(entry["path"])
                if again is None:
                    return b""
                entry, st, content = again
                if content is None:
                    return encode_entry(entry)
            sha, size = content[0], content[1]
            if writer:
                writer.add(entry["path"], sha, st)
            self.stats.bytes += size
            if size == st.st_size and entry["type"] == FILE:  # the record is its stat's: the line straight from it
                return file_line(entry["path"], st, sha)
            entry["sha256"], entry["size"] = sha, size
        return encode_entry(entry)

    def lines(self, cache: CacheReader, writer: Optional[CacheWriter]) -> Iterator[bytes]:
        """Yield the tree object's lines for the root, in tree order.

        Files the stat cache cannot vouch for are hashed and stored by worker processes while
        the walk goes on (see ``store.contentpool``); at most WINDOW entries wait for them, so memory
        stays bounded.
        """
        pending: Deque[Tuple[dict, os.stat_result, object]] = deque()
        contents = ContentPool(self._store_content, self.store)
        lookup_row, add_row = cache.lookup_row, (writer.add_row if writer else None)
        unchanged = unchanged_bytes = 0
        try:
            for rel, st, dir_fd, name in walk_at(self.cursor.root_fd, self.spec.selection()):
                row, cached = lookup_row(rel, st) if S_ISREG(st.st_mode) else (None, None)
                if row is not None:  # unchanged: its line from its stat (its object is stored: store.statcache)
                    unchanged += 1
                    unchanged_bytes += st.st_size
                    if not pending:  # nothing waits before it (the common case): out in tree order now
                        if add_row:
                            add_row(row)
                        yield file_line(rel, st, cached)
                        continue
                    pending.append((None, file_line(rel, st, cached), row))
                else:
                    described = self._describe(rel, st, dir_fd, name)
                    if described is None:
                        continue
                    entry, st, content = described
                    if entry["type"] == FILE and content is None:
                        if cached and self.store.has_blob(cached):
                            content = (cached, st.st_size)
                        else:
                            content = contents.submit((rel, st.st_dev, st.st_ino), cached, st.st_size)
                    pending.append((entry, st, content))
                while pending and (len(pending) > WINDOW or not isinstance(pending[0][2], int)
                                   or contents.ready(pending[0][2])):
                    entry, st, content = pending.popleft()
                    if entry is None:  # an unchanged file (``st`` is its line): most of what waits, as in _finish
                        if add_row:
                            add_row(content)
                        yield st
                    else:
                        yield self._finish(entry, st, content, writer, contents)
            while pending:
                yield self._finish(*pending.popleft(), writer, contents)
            contents.close()
        except BaseException:
            contents.abort()
            raise
        finally:
            self.stats.entries += unchanged
            self.stats.bytes += unchanged_bytes

    def run(self) -> str:
        """Capture the root; return the sha256 of its tree object."""
        self.cursor = DirCursor(open_root(self.spec.path), self.spec.path)
        cache = self.store.cache_reader(self.spec.path)
        writer = None if self.dry_run else self.store.cache_writer(self.spec.path)
        try:
            if self.dry_run:
                digest = self.store.hasher()
                for line in self.lines(cache, writer):
                    digest.update(line)
                return digest.hexdigest()
            sha = self.store.put_stream(self.lines(cache, writer))[0]
        except BaseException:
            if writer:
                writer.abort()
            raise
        finally:
            cache.close()
            self.cursor.close()
        self.store.packs.finish()  # every object the new cache names is in a finished pack first
        writer.commit()
        return sha


class TreeRecorder(_Capture):
    """Records the entries of a walk that another pass drives (the restore's plan), in tree
    order, as a root's tree object: a checkpoint of the root taken in that same pass.

    ``cache`` is the driver's stat cache reader: the driver and the recorder together look each
    key up at most once, in increasing order (the driver passes the hashes it already knows).
    """

    def __init__(self, store: Store, spec: RootSpec, cache: CacheReader, cursor: DirCursor) -> None:
        super().__init__(store, spec, dry_run=False)
        self.cursor = cursor  # the driver's: it closes it
        self.cache = cache
        self.cache_writer = store.cache_writer(spec.path)
        self.writer = store.object_writer()
        self.pending: List[bytes] = []
        self.buffered = 0
        self.temp_dir: Optional[str] = None

    def _ours(self, rel: str, st: os.stat_result) -> bool:
        """Tell whether an entry is one of our temporary files (or below one), not content."""
        if self.temp_dir and rel.startswith(self.temp_dir):
            return True
        if is_temp_name(rel.rsplit("/", 1)[-1]):
            self.temp_dir = rel + "/" if stat.S_ISDIR(st.st_mode) else self.temp_dir
            return True
        return False

    def add(self, key: Key, rel: str, st: os.stat_result, sha: Optional[str], dir_fd: int, name: str) -> None:
        """Record one live entry (``dir_fd``/``name`` reach it); ``sha`` is its content hash when the driver knows it."""
        if self._ours(rel, st):
            return
        described = self._describe(rel, st, dir_fd, name)
        if described is None:
            return
        entry, st, content = described
        if entry["type"] == FILE and content is None:
            content = self._content_now((rel, st.st_dev, st.st_ino), sha or self.cache.lookup(key, st), st,
                                        (dir_fd, name))
        line = self._finish(entry, st, content, self.cache_writer)
        self.pending.append(line)
        self.buffered += len(line)
        if self.buffered >= 262144:
            self._flush()

    def _flush(self) -> None:
        self.writer.write(b"".join(self.pending))
        self.pending, self.buffered = [], 0

    def finish(self) -> dict:
        """Store the tree object and the new stat cache; return the root's manifest record."""
        self._flush()
        tree = self.writer.commit()[0]
        self.store.packs.finish()  # every object the new cache names is in a finished pack first
        self.cache_writer.commit()
        return root_record(self.spec, tree, self.stats)

    def abort(self) -> None:
        """Drop what was recorded."""
        self.writer.abort()
        self.cache_writer.abort()


def root_record(spec: RootSpec, tree: str, stats: CaptureStats) -> dict:
    """Return the manifest record of a captured root (with its ``scope`` when it is narrowed to some paths)."""
    record = {
        "path": spec.path,
        "include": spec.include,
        "exclude": spec.exclude,
        "tree": tree,
        "entries": stats.entries,
        "bytes": stats.bytes,
        "skipped": stats.skipped,
    }
    if spec.scope:
        record["scope"] = list(spec.scope)
    return record


def capture_root(store: Store, spec: RootSpec, dry_run: bool = False) -> Tuple[dict, CaptureStats]:
    """Capture one managed root; return its manifest record and the capture stats."""
    spec = RootSpec(resolve_root(spec.path), spec.include, spec.exclude, spec.scope)
    capture = _Capture(store, spec, dry_run)
    tree = capture.run()
    return root_record(spec, tree, capture.stats), capture.stats


def _same_state(old: Optional[dict], roots: List[dict], commit: Optional[str]) -> bool:
    if not old or old.get("commit") != commit:
        return False
    trees = [(r["path"], r["tree"], r["include"], r["exclude"], r.get("scope")) for r in roots]
    return trees == [(r["path"], r.get("tree"), r.get("include"), r.get("exclude"), r.get("scope"))
                     for r in old["roots"]]


@dataclass
class CheckpointRequest:
    """What to capture and how to describe it."""

    roots: List[RootSpec]
    label: Optional[str] = None
    commit: Optional[str] = None
    reason: Optional[str] = None
    creator: Optional[str] = None
    kind: str = "checkpoint"
    facts: Dict[str, object] = field(default_factory=dict)
    force: bool = False
    when_changed: bool = False


def newest_of_roots(store: Store, roots: List[dict]) -> Optional[dict]:
    """The newest checkpoint that manages exactly these root paths, or None."""
    wanted = sorted(root["path"] for root in roots)
    for checkpoint_id in reversed(store.ids()):
        manifest = store.load(checkpoint_id)
        if sorted(root.get("path") for root in manifest.get("roots", [])) == wanted:
            return manifest
    return None


def create_checkpoint(store: Store, request: CheckpointRequest, dry_run: bool = False) -> Tuple[dict, bool, dict]:
    """Capture the roots into a new checkpoint; return (manifest, changed, stats).

    When a checkpoint with the same label already holds exactly this state (same trees and
    commit), it is returned unchanged unless ``force``. With ``when_changed``, so is the newest
    checkpoint of the same roots when its trees are these (whatever its label). The caller holds
    the store lock.
    """
    if not dry_run:
        store.init()
    roots, totals = [], {"entries": 0, "bytes": 0, "hashed": 0, "new_blobs": 0}
    try:
        for spec in request.roots:
            record, stats = capture_root(store, spec, dry_run)
            roots.append(record)
            for key in totals:
                totals[key] += getattr(stats, key)
    except BaseException:
        store.packs.abort()  # an unfinished pack is never named by an index: drop it now
        raise
    previous = store.find_optional(request.label) if request.label else None
    if previous and previous.get("label") == request.label and not request.force and _same_state(previous, roots, request.commit):
        return previous, False, totals
    newest = newest_of_roots(store, roots) if request.when_changed and store.exists() else None
    if newest is not None and _same_state(newest, roots, newest.get("commit")):
        return newest, False, totals
    if dry_run:
        return {"id": None, "label": request.label, "commit": request.commit, "reason": request.reason,
                "creator": request.creator, "kind": request.kind, "roots": roots}, True, totals
    return save_checkpoint(store, request, roots), True, totals


def save_checkpoint(store: Store, request: CheckpointRequest, roots: List[dict]) -> dict:
    """Write the manifest of captured roots; return it."""
    manifest = store.new_manifest(
        label=request.label, commit=request.commit, reason=request.reason,
        creator=request.creator, kind=request.kind,
    )
    manifest["roots"] = roots
    manifest["facts"] = request.facts
    store.save(manifest)
    return manifest


def locate(roots: Sequence[str], path: str) -> Tuple[str, Optional[str]]:
    """Return the managed root a path is or lies below, and its path relative to that root (None: the root).

    The match is made on the path as written (normalized, no link followed: the engine reaches what lies
    below a root only through directory descriptors); only a path that matches no root lexically is
    resolved, so a root named through a link is still found. Raises ValueError when no root holds the path.
    """
    if not os.path.isabs(path):
        raise ValueError(path)
    for candidate in (os.path.normpath(path), os.path.realpath(path)):
        found = [root for root in roots if candidate == root or candidate.startswith(root.rstrip("/") + "/")]
        if found:
            root = max(found, key=len)
            return root, (candidate[len(root):].strip("/") or None)
    raise ValueError(path)


def by_root(roots: Sequence[str], paths: Sequence[str]) -> Dict[str, Optional[List[str]]]:
    """Group paths by the managed root each is or lies below: root -> the relative paths (None: the whole root).
    Raises ValueError naming the first path no root holds."""
    wanted: Dict[str, Optional[List[str]]] = {}
    for path in paths:
        root, rel = locate(roots, path)
        if rel is None or wanted.get(root, []) is None:
            wanted[root] = None
        else:
            wanted.setdefault(root, []).append(rel)
    return wanted


def narrow(recorded: Sequence[str], wanted: Optional[Sequence[str]]) -> List[str]:
    """Return the scope of a restore: the wanted paths (None: the whole root) within a record's own scope."""
    keys = [path_key(rel) for rel in recorded]
    if wanted is None:
        return list(recorded)
    chosen = [rel for rel in wanted if not keys or any(path_key(rel)[: len(key)] == key for key in keys)]
    chosen += [rel for rel, key in zip(recorded, keys) if any(key[: len(path_key(w))] == path_key(w) for w in wanted)]
    unique = sorted(set(chosen), key=path_key)
    return [rel for rel in unique if not any(path_key(rel)[: len(path_key(o))] == path_key(o) and o != rel
                                             for o in unique)]


def root_specs(paths: Sequence[str], roots: Sequence[str], include: Sequence[str] = (),
               exclude: Sequence[str] = ()) -> List[RootSpec]:
    """Return what to capture of ``paths``: each is a root of its own, or, when ``roots`` are given (the
    managed roots of a rollback's target), a managed root or a path below one (its root narrowed to it)."""
    if not roots:
        return [RootSpec(path, list(include), list(exclude)) for path in paths]
    try:
        wanted = by_root(roots, paths)
    except ValueError as exc:
        raise RollbackError("%s is not a managed path nor below one (the managed paths: %s). Nothing was "
                            "captured." % (exc, ", ".join(roots)), available=list(roots)) from None
    return [RootSpec(root, list(include), list(exclude), narrow([], scope) if scope is not None else [])
            for root, scope in wanted.items()]


def _not_managed(manifest: dict, path: str, managed: Sequence[str]) -> RollbackError:
    return RollbackError(
        "%s is not a managed path of checkpoint %s (%s) nor below one; it manages: %s. Nothing was changed. Name "
        "managed paths or paths below them in paths, or leave paths empty to restore them all." % (
            path, show_label(manifest["label"]) if manifest.get("label") else manifest["id"],
            manifest["id"], ", ".join(managed) or "no paths"),
        available=list(managed))


def roots_of(manifest: dict, only: Sequence[str] = ()) -> List[dict]:
    """Return the manifest's root records, or only those ``only`` names: a managed path names its root, a path
    below one the root narrowed to it (the record's ``scope``); refuse a path outside every root."""
    roots = manifest.get("roots", [])
    managed = [root["path"] for root in roots]
    if not only:
        return list(roots)
    try:
        wanted = by_root(managed, only)
    except ValueError as exc:
        raise _not_managed(manifest, str(exc), managed) from None
    chosen = []
    for record in roots:
        if record["path"] in wanted:
            scope = narrow(record.get("scope") or [], wanted[record["path"]])
            if wanted[record["path"]] is not None and not scope:
                raise RollbackError(
                    "Checkpoint %s holds nothing of %s: it holds only %s there. Nothing was changed." % (
                        manifest["id"], ", ".join(os.path.join(record["path"], rel) for rel in wanted[record["path"]]),
                        ", ".join(os.path.join(record["path"], rel) for rel in record["scope"])),
                    available=managed)
            chosen.append(dict(record, scope=scope) if scope else record)
    return chosen
