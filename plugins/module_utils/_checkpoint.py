# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Creating host checkpoints: capture managed roots into tree objects and a manifest."""

from __future__ import annotations

import os
import stat
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterator, List, Optional, Sequence, Tuple

from ._contentpool import ContentPool
from ._errors import RollbackError
from ._statcache import CacheReader, CacheWriter
from ._store import Store
from ._fsutil import is_temp_name
from ._tree import FILE, LINK, Key, Selection, describe_entry, encode_entry, kind_of, path_key, walk

# Walked entries that may wait for their file contents (hashed and stored by worker processes).
WINDOW = 2048


@dataclass
class RootSpec:
    """A managed root directory and the globs that select its entries."""

    path: str
    include: List[str] = field(default_factory=list)
    exclude: List[str] = field(default_factory=list)

    @classmethod
    def from_record(cls, record: dict) -> "RootSpec":
        """Build the spec a manifest root was captured with."""
        return cls(record["path"], list(record.get("include") or []), list(record.get("exclude") or []))

    def selection(self) -> Selection:
        """Return the include/exclude selection."""
        return Selection(self.include, self.exclude)


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

    def _store_content(self, full: str, cached: Optional[str], size: int) -> Tuple[str, int, bool]:
        """Hash (and unless dry-run, store) a file; return (sha256, size, new object). Runs in a worker."""
        if self.dry_run:
            sha = cached or self.store.hash_file(full)
            return sha, size, not self.store.has_blob(sha)
        return self.store.put_file_counted(full, size)

    def _describe(self, rel: str, st: os.stat_result) -> Optional[Tuple[dict, str]]:
        """Return an entry's record (a link's target included) and full path; None for a special file."""
        kind = kind_of(st)
        if kind is None:
            self.stats.skipped.append(rel)
            return None
        self.stats.entries += 1
        entry = describe_entry(rel, st, kind)
        full = os.path.join(self.spec.path, rel)
        if kind == LINK:
            entry["target"] = os.readlink(full)
        return entry, full

    def _content_now(self, full: str, sha: Optional[str], st: os.stat_result) -> Tuple:
        """Return a file's (sha256, size[, new]): the known hash if its blob is stored, else hash and store it here."""
        if sha and self.store.has_blob(sha):
            return sha, st.st_size
        return self._store_now(full, sha, st)

    def _store_now(self, full: str, sha: Optional[str], st: os.stat_result) -> Tuple:
        """Hash and store a file in this thread; return (sha256, size, new)."""
        content = self._store_content(full, sha, st.st_size)
        self.stats.hashed += 1
        self.stats.new_blobs += 1 if content[2] else 0
        return content

    def _finish(self, entry: dict, st: os.stat_result, content, writer: Optional[CacheWriter],
                contents: Optional[ContentPool] = None) -> bytes:
        """Fill in a file entry's content (a known tuple, or a job of ``contents``) and return its tree line."""
        if content is not None:
            if contents is not None and isinstance(content, int):
                content = contents.result(content)
                self.stats.hashed += 1
                self.stats.new_blobs += 1 if content[2] else 0
            entry["sha256"], entry["size"] = content[0], content[1]
            if writer:
                writer.add(entry["path"], entry["sha256"], st)
            self.stats.bytes += entry["size"]
        return encode_entry(entry)

    def lines(self, cache: CacheReader, writer: Optional[CacheWriter]) -> Iterator[bytes]:
        """Yield the tree object's lines for the root, in tree order.

        Files the stat cache cannot vouch for are hashed and stored by worker processes while
        the walk goes on (see ``_contentpool``); at most WINDOW entries wait for them, so memory
        stays bounded.
        """
        pending: Deque[Tuple[dict, os.stat_result, object]] = deque()
        contents = ContentPool(self._store_content, self.store)
        try:
            for rel, st in walk(self.spec.path, self.spec.selection()):
                described = self._describe(rel, st)
                if described is None:
                    continue
                entry, full = described
                content: object = None
                if entry["type"] == FILE:
                    cached = cache.lookup(path_key(rel), st)
                    if cached and self.store.has_blob(cached):
                        content = (cached, st.st_size)
                    else:
                        content = contents.submit(full, cached, st.st_size)
                pending.append((entry, st, content))
                while pending and (len(pending) > WINDOW or not isinstance(pending[0][2], int)
                                   or contents.ready(pending[0][2])):
                    yield self._finish(*pending.popleft(), writer, contents)
            while pending:
                yield self._finish(*pending.popleft(), writer, contents)
            contents.close()
        except BaseException:
            contents.abort()
            raise

    def run(self) -> str:
        """Capture the root; return the sha256 of its tree object."""
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
        writer.commit()
        return sha


class TreeRecorder(_Capture):
    """Records the entries of a walk that another pass drives (the restore's plan), in tree
    order, as a root's tree object: a checkpoint of the root taken in that same pass.

    ``cache`` is the driver's stat cache reader: the driver and the recorder together look each
    key up at most once, in increasing order (the driver passes the hashes it already knows).
    """

    def __init__(self, store: Store, spec: RootSpec, cache: CacheReader) -> None:
        super().__init__(store, spec, dry_run=False)
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

    def add(self, key: Key, rel: str, st: os.stat_result, sha: Optional[str] = None) -> None:
        """Record one live entry; ``sha`` is its content hash when the driver knows it."""
        if self._ours(rel, st):
            return
        described = self._describe(rel, st)
        if described is None:
            return
        entry, full = described
        content = None
        if entry["type"] == FILE:
            content = self._content_now(full, sha or self.cache.lookup(key, st), st)
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
        self.cache_writer.commit()
        return root_record(self.spec, tree, self.stats)

    def abort(self) -> None:
        """Drop what was recorded."""
        self.writer.abort()
        self.cache_writer.abort()


def root_record(spec: RootSpec, tree: str, stats: CaptureStats) -> dict:
    """Return the manifest record of a captured root."""
    return {
        "path": spec.path,
        "include": spec.include,
        "exclude": spec.exclude,
        "tree": tree,
        "entries": stats.entries,
        "bytes": stats.bytes,
        "skipped": stats.skipped,
    }


def capture_root(store: Store, spec: RootSpec, dry_run: bool = False) -> Tuple[dict, CaptureStats]:
    """Capture one managed root; return its manifest record and the capture stats."""
    spec = RootSpec(resolve_root(spec.path), spec.include, spec.exclude)
    capture = _Capture(store, spec, dry_run)
    tree = capture.run()
    return root_record(spec, tree, capture.stats), capture.stats


def _same_state(old: Optional[dict], roots: List[dict], commit: Optional[str]) -> bool:
    if not old or old.get("commit") != commit:
        return False
    trees = [(r["path"], r["tree"], r["include"], r["exclude"]) for r in roots]
    return trees == [(r["path"], r.get("tree"), r.get("include"), r.get("exclude")) for r in old["roots"]]


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


def create_checkpoint(store: Store, request: CheckpointRequest, dry_run: bool = False) -> Tuple[dict, bool, dict]:
    """Capture the roots into a new checkpoint; return (manifest, changed, stats).

    When a checkpoint with the same label already holds exactly this state (same trees and
    commit), it is returned unchanged unless ``force``. The caller holds the store lock.
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


def roots_of(manifest: dict, only: Sequence[str] = ()) -> List[dict]:
    """Return the manifest's root records, optionally only those under the given paths."""
    wanted = [os.path.realpath(path) for path in only]
    return [root for root in manifest.get("roots", []) if not wanted or root["path"] in wanted]
