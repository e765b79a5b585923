# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bringing a checkpoint back from a repository (docs/repository.md, "Restoring from a repository").

:func:`fetch_checkpoint` makes the local store hold one checkpoint: its manifest and the objects it
needs, each checked (hash; envelope authenticity in an encrypted store) before it is placed, the
manifest last. :class:`RepositoryView` reads the host's manifests in the repository through a
throwaway store of the same format (also what pruning decides on).
"""

from __future__ import annotations

import collections
import os
import queue
import tempfile
import threading
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ..common.errors import CheckpointNotFound, IntegrityError
from ..common.fsutil import atomic_write_bytes, atomic_write_json, ensure_private_dir, unlink_quietly
from ..common.labels import escape
from ..store.allowed_roots import check_roots
from ..store.packs import SMALL_OBJECT
from .client import (CHUNK, NAMES_PER_REQUEST, Connection, RepositoryError, RepositorySpec, compatible,
                     needed_objects, recorded_format, read_file)
from .replies import UNDECLARED_OBJECT_MAX, checked_sizes, listed_manifests, object_limit
from ..store.store import LAYOUT, Store, parse_time, checkpoint_summary

READ_CHUNK = 256 * 1024  # the reader thread's reads of a large object
READ_GROUP = 1024 * 1024  # bytes the reader hands over at once: many small objects, or four chunks of a large one
READ_AHEAD = 64  # groups read ahead of the restore (at most 64 MiB)
_END = object()  # the reader's last item: every object asked for was sent
REPEATS_KEPT = 64 * 1024 * 1024  # bytes of content several files have, kept in memory for the later ones


def _missing_locally(store: Store, manifest: dict) -> Tuple[Dict[str, int], bool]:
    """Objects of a checkpoint the local store lacks, each with the most bytes it may have (:func:`object_limit`),
    and whether the list is complete (every tree was there)."""
    trees = _trees(manifest)
    absent_trees = {tree: UNDECLARED_OBJECT_MAX for tree in trees if not store.has_blob(tree)}
    if absent_trees:
        return absent_trees, False
    limits = {tree: UNDECLARED_OBJECT_MAX for tree in trees}
    for tree in trees:
        for entry in store.iter_tree(tree):
            name = entry.get("sha256")
            if name:
                limits[name] = max(limits.get(name, 0), object_limit(store, entry.get("size")))
    for component in manifest.get("components", []):
        for name in component.get("blobs", []):
            limits[name] = UNDECLARED_OBJECT_MAX
    return {name: limit for name, limit in limits.items() if not store.has_blob(name)}, True


def _trees(manifest: dict) -> List[str]:
    return [root["tree"] for root in manifest.get("roots", []) if root.get("tree")]


def seed_store(store: Store, host_format: dict) -> None:
    """Create a missing local store with the format recorded in the repository (same naming key, if sealed).

    The format is checked first, in a scratch store (an encrypted one needs the key; a plain one refuses a
    key), so a refused format leaves no store behind.
    """
    if store.exists():
        return
    with tempfile.TemporaryDirectory(prefix="gitops-rollback-format-") as scratch:
        Store(_create_store_dir(os.path.join(scratch, "store"), host_format), store.base.key).check_format()
    _create_store_dir(store.path(""), host_format)
    store.check_format()


def _create_store_dir(root: str, host_format: dict) -> str:
    """Create a store's directories at ``root`` with the repository's recorded format; return ``root``."""
    for sub in ("",) + LAYOUT:
        ensure_private_dir(os.path.join(root, sub))
    atomic_write_json(os.path.join(root, "format"), host_format)
    return root


class RepositoryView:
    """The host's manifests in the repository, read through a throwaway store of the same format."""

    def __init__(self, conn: Connection, host_format: dict, key: Optional[str], workdir: str) -> None:
        self.root = os.path.join(workdir, "view")
        self.store = Store(_create_store_dir(self.root, host_format), key)
        reply = conn.request({"op": "get_manifests"}, "listing checkpoints")
        for checkpoint_id, size in listed_manifests(reply, conn.spec.where()):
            body = conn.read_exactly(size, "reading checkpoint %s" % checkpoint_id)
            atomic_write_bytes(self.store.manifest_path(checkpoint_id), body)

    def find(self, ref: str, where: str) -> dict:
        try:
            return self.store.find(ref)
        except CheckpointNotFound as exc:
            available = exc.details.get("available", [])
            raise CheckpointNotFound(
                "Checkpoint %s is neither in the local store nor in the repository %s (it has: %s)." % (
                    escape(ref), where, ", ".join(
                        "%s (%s)" % (item["id"], item["label"]) if item.get("label") else item["id"]
                        for item in reversed(available[-20:])) or "none"), available=available) from exc

    def newest(self) -> Optional[dict]:
        """Id and creation time of the host's newest checkpoint in the repository (what a rebuild can reach at best)."""
        manifests = self.store.manifests()
        return {"id": manifests[-1]["id"], "created": manifests[-1]["created"]} if manifests else None

    def raw(self, checkpoint_id: str) -> bytes:
        return read_file(self.store.manifest_path(checkpoint_id))


def _damaged(name: str, where: str, actual: Optional[str], exc: Optional[Exception] = None,
             path: Optional[str] = None) -> IntegrityError:
    if actual is None:
        return IntegrityError("Object %s in the repository %s is damaged: %s Nothing was restored; the object was not "
                              "placed in the local store." % (name, where, exc), expected=name, actual=None, path=path)
    return IntegrityError(
        "Object %s in the repository %s is corrupted (its content hashes to %s). Nothing was restored; the object "
        "was not placed in the local store. Restore another checkpoint, or sync this one again from a host that "
        "holds it intact." % (name, where, actual), expected=name, actual=actual, path=path)


def _check_fetched(store: Store, name: str, tmp: str, where: str) -> None:
    """Refuse a fetched object file whose content does not have its name (or, sealed, is not authentic)."""
    cipher = store.cipher
    digest = store.hasher()
    try:
        with open(tmp, "rb") as handle:
            if cipher is None:
                for chunk in iter(lambda: handle.read(CHUNK), b""):
                    digest.update(chunk)
            else:
                size = os.fstat(handle.fileno()).st_size
                for chunk in cipher.open_stream(handle, size, b"object:" + name.encode("ascii"), "Object %s" % name):
                    digest.update(chunk)
    except IntegrityError as exc:
        raise _damaged(name, where, None, exc) from exc
    if digest.hexdigest() != name:
        raise _damaged(name, where, digest.hexdigest())


def _check_fetched_bytes(store: Store, name: str, data: bytes, where: str) -> None:
    """Like :func:`_check_fetched`, for an object read into memory."""
    cipher = store.cipher
    try:
        content = data if cipher is None else cipher.unseal(data, b"object:" + name.encode("ascii"), "Object %s" % name)
    except IntegrityError as exc:
        raise _damaged(name, where, None, exc) from exc
    actual = store.hash_bytes(content)
    if actual != name:
        raise _damaged(name, where, actual)


def _receive_batch(conn: Connection, store: Store, wanted: Dict[str, int], sizes: List[int],
                   staged: List[Tuple[str, str]]) -> List[Tuple[str, bytes]]:
    """Read a batch's objects, each checked: small ones into memory, larger ones into temporary files (``staged``).

    ``wanted`` maps each name to the most bytes the checkpoint allows it (:func:`object_limit`); an object
    announced as larger is refused before a byte of it is read.
    """
    where = conn.spec.where()
    small = []
    for name, size in zip(wanted, sizes):
        if size > wanted[name]:
            raise _damaged(name, where, None, RepositoryError(
                "it is announced with %d bytes where the checkpoint allows at most %d." % (size, wanted[name])))
        if size <= SMALL_OBJECT:
            data = conn.read_exactly(size, "sending object %s" % name)
            _check_fetched_bytes(store, name, data, where)
            small.append((name, data))
            continue
        tmp = store.temp_object_path()
        staged.append((name, tmp))
        conn.read_into(tmp, size, "sending object %s" % name)
        _check_fetched(store, name, tmp, where)
    return small


def _refuse_gone(conn: Connection, names: Sequence[str], sizes: Sequence[int]) -> None:
    """Refuse a batch in which the repository lacks objects (a size of -1)."""
    gone = [name for name, size in zip(names, sizes) if size < 0]
    if gone:
        raise IntegrityError("The repository %s lacks object %s (and %d more) that the checkpoint needs. "
                             "Nothing was restored." % (conn.spec.where(), gone[0], len(gone) - 1),
                             expected=gone[0], actual=None)


class RemoteContent:
    """The content of the objects a restore writes that the local store lacks, streamed from the repository
    straight into the files being restored (a rebuild): nothing is written to the local store. A
    content source of ``files.restore`` (the other objects are read from the store).

    The objects are asked for in the order the restore writes them, in batches, the next batch as
    soon as one's sizes are known. Content that several files have is asked for once and kept in
    memory (checked by the first file's write, hashed again by each later one) until its last file
    is written, up to REPEATS_KEPT bytes in all; beyond that it is asked for again. A reader
    thread takes the bytes off the SSH session while the restore creates and writes the files (both
    wait in system calls, which let the other run), at most READ_AHEAD chunks ahead. The restore
    hashes every byte as it writes it and compares the result with the object's name before the
    file can be renamed into place (:meth:`refused` names the object and the repository).
    """

    def __init__(self, store: Store, conn: Connection, wanted: Sequence[Tuple[str, int]]) -> None:
        self.store = store
        self.conn = conn
        self.wanted = frozenset(name for name, _size in wanted)
        names, self._uses = _asked_once(wanted)
        self._sizes = dict(wanted)  # each object's size by the checkpoint: a repository that says otherwise is refused
        self._kept: Dict[str, bytes] = {}  # content of several files, received, until its last file is written
        self.batches = [list(names[start:start + NAMES_PER_REQUEST]) for start in range(0, len(names), NAMES_PER_REQUEST)]
        self.objects = self.bytes = 0
        self._chunks: "queue.Queue[object]" = queue.Queue(READ_AHEAD)  # lists of (name, size, chunk, last)
        self._ready: "collections.deque[tuple]" = collections.deque()  # the group being written
        self._stopping = threading.Event()
        self._reader = threading.Thread(target=self._read_all, name="gitops-rollback-repository-reader", daemon=True)
        if self.batches:
            self._reader.start()

    def _read_all(self) -> None:
        """The reader thread: ask for each batch, read its sizes and objects, queue them as lists of
        (name, size, chunk, last) of about READ_GROUP bytes (one hand-over per group, not per object)."""
        conn = self.conn
        try:
            conn.send({"op": "get", "names": self.batches[0]})
            for number, names in enumerate(self.batches):
                sizes = checked_sizes(conn.reply("sending objects"), names, conn.spec.where(), "sending objects")
                _refuse_gone(conn, names, sizes)
                if number + 1 < len(self.batches):
                    conn.send({"op": "get", "names": self.batches[number + 1]})
                    conn.flush("sending objects")
                self._read_batch(names, sizes)
            self._put(_END)
        except _Stopped:
            return
        except BaseException as exc:  # pylint: disable=broad-exception-caught  # raised again in the restoring thread
            try:
                self._put(exc)
            except _Stopped:
                pass

    def _read_batch(self, names: Sequence[str], sizes: Sequence[int]) -> None:
        """Read one batch's objects and queue them in groups; the last group as soon as the batch ends."""
        group: List[tuple] = []
        grouped = 0
        for name, size in zip(names, sizes):
            left = size
            while True:
                data = self.conn.read_exactly(min(READ_CHUNK, left), "sending object %s" % name) if left else b""
                left -= len(data)
                group.append((name, size, data, not left))
                grouped += len(data) + 1
                if grouped >= READ_GROUP:
                    self._put(group)
                    group, grouped = [], 0
                if not left:
                    break
        if group:
            self._put(group)

    def _put(self, item: object) -> None:
        while not self._stopping.is_set():
            try:
                self._chunks.put(item, timeout=0.2)
                return
            except queue.Full:
                pass
        raise _Stopped()

    def _take(self) -> tuple:
        if not self._ready:
            item = self._chunks.get()
            if isinstance(item, BaseException):
                raise item
            if item is _END:
                raise RepositoryError("The restore asked %s for more objects than it planned; nothing was renamed "
                                      "into place." % self.conn.spec.where())
            self._ready.extend(item)
        return self._ready.popleft()

    def stop(self) -> None:
        """Stop the reader thread (a restore that ended before every object was read); the session is closed next."""
        self._stopping.set()
        while True:
            try:
                self._chunks.get_nowait()
            except queue.Empty:
                break
        if self._reader.is_alive():
            self._reader.join(timeout=1)
        if self._reader.is_alive():  # blocked reading a session that sends nothing more, holding its buffer's lock
            self.conn.kill()  # the read ends at the end of the output, and closing the session does not wait for it
            self._reader.join(timeout=5)

    def supplies(self, sha: str) -> bool:
        """Tell whether ``sha`` comes from the repository (the restore does not read it from the store)."""
        return sha in self.wanted

    def chunks(self, sha: str) -> Iterator[bytes]:
        """Yield the content of ``sha``: from the repository when the store lacked it, else from the store."""
        if sha not in self.wanted:
            return self.store.iter_blob_content(sha)
        return self._stream(sha)

    def _stream(self, sha: str) -> Iterator[bytes]:
        kept = self._kept.get(sha)
        if kept is not None:
            yield from self._repeat(sha, kept)
            return
        name, size, data, last = self._take()
        if name != sha:
            raise RepositoryError("The restore asked for object %s where %s was due from %s; nothing was renamed "
                                  "into place." % (sha, name, self.conn.spec.where()))
        if size != self._sizes[sha]:  # refused before a byte is written or kept: never more than the checkpoint says
            raise _damaged(sha, self.conn.spec.where(), None, RepositoryError(
                "it holds %d bytes where the checkpoint's file has %d." % (size, self._sizes[sha])))
        keep = [] if self._uses.get(sha) else None
        while True:
            if keep is not None:
                keep.append(data)
            yield data
            if last:
                break
            _name, _size, data, last = self._take()
        self.objects += 1
        self.bytes += size
        if keep is not None:
            self._kept[sha] = b"".join(keep)

    def _repeat(self, sha: str, kept: bytes) -> Iterator[bytes]:
        """The content of a file whose object an earlier file brought (kept until its last file)."""
        self._uses[sha] -= 1
        if not self._uses[sha]:
            del self._kept[sha], self._uses[sha]
        yield kept

    def refused(self, sha: str, actual: str, full: str) -> IntegrityError:
        """The error for an object whose content does not hash to its name, naming the object and where it came from."""
        if sha not in self.wanted:
            return IntegrityError("Object %s changed while restoring %s; nothing more was written." % (sha, full),
                                  expected=sha, actual=actual, path=full)
        return _damaged(sha, self.conn.spec.where(), actual, path=full)


def _asked_once(wanted: Sequence[Tuple[str, int]]) -> Tuple[List[str], Dict[str, int]]:
    """The names to ask for, in order, and for each object kept for later files how many will reuse it.

    An object several files have is asked for once while the sizes of those kept stay within
    REPEATS_KEPT; one beyond is asked for again at each of its files.
    """
    counts: Dict[str, int] = {}
    for name, _size in wanted:
        counts[name] = counts.get(name, 0) + 1
    names: List[str] = []
    asked = set()
    uses: Dict[str, int] = {}
    budget = REPEATS_KEPT
    for name, size in wanted:
        if name in uses:
            continue  # brought by its first file, kept
        if counts[name] > 1 and size <= budget and name not in asked:
            uses[name] = counts[name] - 1
            budget -= size
        asked.add(name)
        names.append(name)
    return names, uses


class _Stopped(Exception):
    """The restore stopped reading the stream (the reader thread ends)."""


def _fetch_objects(conn: Connection, store: Store, wanted: Dict[str, int]) -> Tuple[int, int]:
    """Fetch objects into the local store, each checked before it is placed; return (objects, bytes).

    Objects of up to 256 KiB go into a pack (as a checkpoint stores them), larger ones are renamed
    into place; none is placed before every object of its batch was checked. The next batch is asked
    for as soon as a batch's sizes are known, so the repository host reads it while this one is
    checked and written. Each object checked here is remembered as sound by the store for this run
    (a restore that follows does not hash it again). ``wanted`` maps each name to the most bytes it may
    have (:func:`object_limit`); a reply that does not give one size for each name asked for is refused.
    """
    names = list(wanted)
    where = conn.spec.where()
    batches = [names[start:start + NAMES_PER_REQUEST] for start in range(0, len(names), NAMES_PER_REQUEST)]
    count = total = 0
    if batches:
        conn.send({"op": "get", "names": batches[0]})
    for number, chunk in enumerate(batches):
        sizes = checked_sizes(conn.reply("sending objects"), chunk, where, "sending objects")
        _refuse_gone(conn, chunk, sizes)
        if number + 1 < len(batches):
            conn.send({"op": "get", "names": batches[number + 1]})
            conn.flush("sending objects")
        staged: List[Tuple[str, str]] = []
        try:
            small = _receive_batch(conn, store, {name: wanted[name] for name in chunk}, sizes, staged)
            for name, data in small:
                store.packs.add(name, lambda data=data: data, lambda _name: False)
            checked = [name for name, _data in small] + [name for name, _tmp in staged]
            for name, tmp in staged:
                store.commit_blob(tmp, name)
            staged = []
        finally:
            for _name, tmp in staged:
                unlink_quietly(tmp)
        store.remember_sound(checked)
        count += len(chunk)
        total += sum(sizes)
    return count, total


class Fetcher:
    """One session with the repository for one local store: fetches checkpoints over a single connection.

    The connection opens when first needed (a checkpoint the local store already holds whole needs
    none). Use as a context manager; :meth:`prepare` before the store lock, :meth:`fetch` under it.
    """

    def __init__(self, store: Store, spec: RepositorySpec, key: Optional[str] = None) -> None:
        self.store, self.spec, self.key = store, spec, key
        self._conn: Optional[Connection] = None
        self._format: Optional[dict] = None
        self._workdir: Optional[tempfile.TemporaryDirectory] = None
        self._view: Optional[RepositoryView] = None
        self._counts = [0, 0]  # objects and bytes fetched in this session (into the store or the restored files)
        self._content: Optional[RemoteContent] = None
        self._rebuilding: Optional[dict] = None  # the summary of trees_only (manifest, newest)
        self.allowed: Optional[Sequence[str]] = None  # where a manifest from the repository may name managed roots

    def __enter__(self) -> "Fetcher":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._content is not None:
            self._content.stop()
        if self._conn is not None:
            self._conn.close()
        if self._workdir is not None:
            self._workdir.cleanup()

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = Connection(self.spec).__enter__()
            try:
                self._format = recorded_format(conn.hello(create=False), self.spec)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _host_format(self) -> dict:
        self._connection()
        return self._format

    def view(self) -> RepositoryView:
        """The host's manifests in the repository, read once per session."""
        if self._view is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="gitops-rollback-view-")
            self._view = RepositoryView(self._connection(), self._host_format(), self.key, self._workdir.name)
        return self._view

    def _local(self, ref: str) -> Optional[dict]:
        """The result for a checkpoint the local store holds whole, or None."""
        if not self.store.exists():
            return None
        local = self.store.find_optional(ref)
        if local is not None and _missing_locally(self.store, local) == ({}, True):
            return {"checkpoint": checkpoint_summary(local), "fetched": {"objects": 0, "bytes": 0}, "source": "local"}
        return None

    def prepare(self) -> None:
        """Create a missing local store from the format the repository recorded for this host (before the lock)."""
        if not self.store.exists():
            seed_store(self.store, self._host_format())

    def plan(self, ref: str) -> dict:
        """What :meth:`fetch` would do, changing nothing here or there (check mode).

        The checkpoint's tree objects are read into the session's throwaway view to count the
        objects the local store lacks.
        """
        local = self._local(ref)
        if local is not None:
            return local
        view = self.view()
        manifest = view.find(ref, self.spec.where())
        check_roots(manifest, self.allowed, source=self.spec.where())  # before any object is fetched
        _fetch_objects(self._connection(), view.store,
                       {tree: UNDECLARED_OBJECT_MAX for tree in _trees(manifest) if not view.store.has_blob(tree)})
        here = self.store if self.store.exists() else None
        missing = [name for name in needed_objects(view.store, manifest) if here is None or not here.has_blob(name)]
        return {"checkpoint": checkpoint_summary(manifest), "fetched": {"objects": len(missing), "bytes": None},
                "source": "repository"}

    def fetch(self, ref: str) -> dict:
        """Make the local store hold checkpoint ``ref``: from the local store when it is complete there, else from the repository.

        Tree objects come first, then the file and component objects the local store lacks, each
        checked (hash; envelope authenticity in an encrypted store) before it is placed; the manifest
        is written last. The caller holds the store lock.
        """
        local = self._local(ref)
        if local is not None:
            return local
        store, conn = self.store, self._open_store()
        manifest, raw, newest = store.find_optional(ref), None, None
        if manifest is None:
            view = self.view()
            manifest = view.find(ref, self.spec.where())
            check_roots(manifest, self.allowed, source=self.spec.where())  # before any object is fetched
            raw, newest = view.raw(manifest["id"]), view.newest()
        missing, complete = _missing_locally(store, manifest)
        objects, size = self._fetched(_fetch_objects(conn, store, missing))
        if not complete:
            missing, _complete = _missing_locally(store, manifest)
            more, more_size = self._fetched(_fetch_objects(conn, store, missing))
            objects, size = objects + more, size + more_size
        store.sync()
        _refuse_incomplete(store, manifest, self.spec.where())
        if raw is not None:
            atomic_write_bytes(store.manifest_path(manifest["id"]), raw)
            store.load(manifest["id"])
        return _fetch_result(manifest, objects, size, newest)

    def _fetched(self, counts: Tuple[int, int]) -> Tuple[int, int]:
        self._counts = [self._counts[0] + counts[0], self._counts[1] + counts[1]]
        return counts

    def _open_store(self) -> Connection:
        """Connect, create a missing local store, and refuse one whose format cannot take the host's checkpoints."""
        store = self.store
        conn = self._connection()
        seed_store(store, self._host_format())
        problem = compatible(store.read_format(), self._host_format())
        if problem:
            raise RepositoryError(
                "The local store %s cannot take checkpoints of host namespace %s of the repository %s: %s. Nothing "
                "was changed. Restore into a new store_path (or remove the store that was created anew)." % (
                    store.root, self.spec.namespace, self.spec.where(), problem))
        return conn

    def trees_only(self, ref: str) -> Optional[dict]:
        """For a rebuild: the manifest of checkpoint ``ref`` with its tree objects fetched into the local store
        (checked), its other objects left in the repository for :meth:`stream`. None when the local store
        holds the checkpoint whole, or is encrypted (then :meth:`fetch` brings it into the store first, where
        its objects are opened with the store's key). The caller holds the store lock.
        """
        if self._local(ref) is not None:
            return None
        store, conn = self.store, self._open_store()
        if store.encrypted:
            return None
        manifest, newest = store.find_optional(ref), None
        if manifest is None:
            view = self.view()
            manifest = view.find(ref, self.spec.where())
            newest = view.newest()
        self._fetched(_fetch_objects(conn, store, {tree: UNDECLARED_OBJECT_MAX for tree in _trees(manifest)
                                                   if not store.has_blob(tree)}))
        store.packs.finish()
        self._rebuilding = {"manifest": manifest, "newest": newest}
        return manifest

    def stream(self, wanted: Sequence[Tuple[str, int]]) -> RemoteContent:
        """The content of ``wanted`` ((name, size) in the order a restore writes them), streamed from the repository."""
        self._content = RemoteContent(self.store, self._connection(), wanted)
        return self._content

    def rebuilt(self) -> dict:
        """What a rebuild begun with :meth:`trees_only` fetched (into the store, and into the restored files)."""
        objects, size = self._counts
        if self._content is not None:
            objects, size = objects + self._content.objects, size + self._content.bytes
        return _fetch_result(self._rebuilding["manifest"], objects, size, self._rebuilding["newest"])


def _refuse_incomplete(store: Store, manifest: dict, where: str) -> None:
    """Refuse a checkpoint the local store still lacks objects of after fetching (its manifest is not written)."""
    missing, complete = _missing_locally(store, manifest)
    if missing or not complete:
        raise IntegrityError("The local store still lacks object %s (and %d more) of checkpoint %s after fetching it "
                             "from the repository %s. Nothing was restored; its manifest was not written." % (
                                 next(iter(missing)), len(missing) - 1, manifest["id"], where),
                             expected=next(iter(missing)), actual=None)


def _fetch_result(manifest: dict, objects: int, size: int, newest: Optional[dict]) -> dict:
    return {"checkpoint": checkpoint_summary(manifest), "fetched": {"objects": objects, "bytes": size},
            "source": "repository", "newest_replicated": newest,
            "rpo_seconds": None if newest is None else max(0, int(time.time() - parse_time(newest["created"])))}
