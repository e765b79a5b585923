# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's objects, write side (``ObjectWrites``, ``ObjectWriter``); the read side is ``store.objects``."""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import threading
from typing import TYPE_CHECKING, Iterable, List, Optional, Set, Tuple

from ..common.fsutil import TEMP_MARK, create_private, fsync_path, raise_if_full, start_writeback, sync_filesystem, unlink_quietly
from .packs import SMALL_OBJECT
from .root import CHUNK, object_context, read_up_to, sha256_file
from ..common.fsutil import write_all
from .objects import Objects

if TYPE_CHECKING:  # the cipher module is imported only for an encrypted store
    from .crypto import Cipher

SMALL_FILE = SMALL_OBJECT
LOOSE_SYNC_LIMIT = 8  # new loose objects made durable one by one at most; beyond, the whole file system is synced


class ObjectWriter:
    """Writes one new object from chunks (encrypting when the store is), named when committed."""

    def __init__(self, store: "ObjectWrites") -> None:
        self.store = store
        self.digest = store.hasher()
        cipher = store.cipher
        self.sealer = cipher.sealer() if cipher else None
        self.size = 0
        self.tmp = store.temp_object_path()
        self.fd: Optional[int] = create_private(self.tmp)
        if self.sealer:
            self._out(self.sealer.header)

    def _out(self, data) -> None:
        try:
            write_all(self.fd, data)
        except OSError as exc:
            self.abort()
            raise_if_full(exc, "a blob into %s" % self.store.base.root)
            raise

    def write(self, chunk) -> None:
        """Add the next chunk of content."""
        self.digest.update(chunk)
        self.size += len(chunk)
        self._out(self.sealer.update(chunk) if self.sealer else chunk)

    def commit(self) -> Tuple[str, int, bool]:
        """Name the object and rename it into place; return (name, size, whether it was new)."""
        sha = self.digest.hexdigest()
        if self.sealer:
            self._out(self.sealer.finish(object_context(sha)))
        os.close(self.fd)
        self.fd = None
        try:
            written = self.store.commit_blob(self.tmp, sha)
        except OSError:
            unlink_quietly(self.tmp)
            raise
        return sha, self.size, written

    def abort(self) -> None:
        """Drop the unfinished object (idempotent)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        unlink_quietly(self.tmp)


class ObjectWrites:
    """Writes a store's objects: small ones appended to packs, large ones into files of their own, each renamed
    into place when complete; content workers (other processes) write packs of their own; ``sync`` makes
    everything written durable before a manifest names it."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.base = objects.base
        self._tmp_token = secrets.token_hex(4)
        self._tmp_count = itertools.count()
        self._unsynced: Optional[Set[str]] = set()  # loose objects placed since the last sync; None: not known
        self._unsynced_lock = threading.Lock()

    @property
    def cipher(self) -> Optional[Cipher]:
        """The store's cipher (None for a plain store)."""
        return self.base.cipher

    def hasher(self):
        """Return a fresh hash object that computes object names."""
        return self.objects.hasher()

    def object_writer(self) -> ObjectWriter:
        """Return a writer of one new object (write chunks, then commit or abort)."""
        try:
            return ObjectWriter(self)
        except OSError as exc:
            raise_if_full(exc, "a blob into %s" % self.base.root)
            raise

    def put_stream(self, chunks: Iterable[bytes]) -> Tuple[str, int]:
        """Store the bytes of ``chunks``; return (sha256, size). Existing blobs are not rewritten."""
        writer = self.object_writer()
        pending: List[bytes] = []
        buffered = 0
        try:
            for chunk in chunks:  # small chunks (tree lines) are batched: one write per 256 KiB
                pending.append(chunk)
                buffered += len(chunk)
                if buffered >= 262144:
                    writer.write(b"".join(pending))
                    pending, buffered = [], 0
            if pending:
                writer.write(b"".join(pending))
            sha, size, _written = writer.commit()
        except BaseException:
            writer.abort()
            raise
        return sha, size

    def put_file(self, path: str) -> Tuple[str, int]:
        """Store a file's content; return (sha256, size)."""
        sha, size, _written = self.put_file_counted(path)
        return sha, size

    def put_file_counted(self, path: str, size_hint: Optional[int] = None) -> Tuple[str, int, bool]:
        """Store a file's content; return (sha256, size, whether a new object was written).

        A file of up to SMALL_FILE bytes is read whole and hashed first, so content already
        stored is not written again, and a new one is appended to a pack; a larger one is hashed
        while it is copied into an object file of its own. Safe to call
        from several threads (hashing and file I/O release the GIL).
        """
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            return self.put_fd_counted(fd, size_hint)
        finally:
            os.close(fd)

    def put_fd_counted(self, fd: int, size_hint: Optional[int] = None) -> Tuple[str, int, bool]:
        """Store the content of an open file (from its current offset); as ``put_file_counted``."""
        head = read_up_to(fd, SMALL_FILE, size_hint)
        if len(head) > SMALL_FILE:
            return self._put_fd(fd, head)
        sha = self.objects.hash_bytes(head)
        cipher = self.cipher
        stored = (lambda: cipher.seal_transient(head, object_context(sha))) if cipher else (lambda: head)
        return sha, len(head), self.objects.packs.add(sha, stored, self.objects.loose_exists)

    def _put_fd(self, fd: int, head: bytes) -> Tuple[str, int, bool]:
        """Copy ``head`` and the rest of ``fd`` into a new object, hashing as it goes."""
        if self.cipher is not None:
            return self._put_fd_sealed(fd, head)
        digest = hashlib.sha256(head)
        size = len(head)
        tmp = self.temp_object_path()
        try:
            out = create_private(tmp)
            try:
                write_all(out, head)
                buffer = bytearray(CHUNK)
                view = memoryview(buffer)
                while True:
                    count = os.readv(fd, [buffer])
                    if not count:
                        break
                    digest.update(view[:count])
                    write_all(out, view[:count])
                    size += count
                start_writeback(out, 0, size)  # on its way to disk before the final sync waits for it
            finally:
                os.close(out)
            sha = digest.hexdigest()
            written = self.commit_blob(tmp, sha)
        except OSError as exc:
            unlink_quietly(tmp)
            raise_if_full(exc, "a blob into %s" % self.base.root)
            raise
        return sha, size, written

    def _put_fd_sealed(self, fd: int, head: bytes) -> Tuple[str, int, bool]:
        writer = self.object_writer()
        try:
            writer.write(head)
            for chunk in iter(lambda: os.read(fd, CHUNK), b""):
                writer.write(chunk)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def adopt_file(self, path: str, sha: Optional[str] = None) -> Tuple[str, int]:
        """Move a finished plain file into the store as an object; return (name, size).

        A plain store renames the file (no copy; ``sha`` is its SHA-256 when known). An encrypted
        store encrypts it into a new object and deletes the plain file.
        """
        if self.cipher is not None:
            name, size, _written = self.put_file_counted(path)
            unlink_quietly(path)
            return name, size
        sha = sha or sha256_file(path)
        size = os.path.getsize(path)
        os.chmod(path, 0o600)
        self.commit_blob(path, sha)
        return sha, size

    def temp_object_path(self) -> str:
        """Return a fresh temporary name in tmp/ (no random syscall per object)."""
        return self.base.path("tmp", ".blob%s%d-%s-%d" % (TEMP_MARK, os.getpid(), self._tmp_token, next(self._tmp_count)))

    def put_bytes(self, data: bytes) -> str:
        """Store bytes; return their sha256."""
        return self.put_stream([data])[0]

    def commit_blob(self, tmp: str, sha: str) -> bool:
        """Rename a finished temporary file into place; return False when the object existed.

        Either way the object is made durable by the next ``sync``: one that existed may have
        been placed by a run killed before its own sync.
        """
        final = self.objects.blob_path(sha)
        if os.path.exists(final):
            os.unlink(tmp)
            self._placed(final)
            return False
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
            self.objects.made_fanout(sha)
            os.rename(tmp, final)
        self._placed(final)
        return True

    def enter_worker(self) -> None:
        """In a forked content worker: write packs of its own, not the parent's open one."""
        self.objects.packs.detach()

    def finish_worker(self) -> List[str]:
        """In a content worker: finish its pack; return the index files it wrote."""
        self.objects.packs.finish()
        return list(self.objects.packs.finished)

    def abort_worker(self) -> None:
        """In a content worker: drop its unfinished pack."""
        self.objects.packs.abort()

    def adopt_packs(self, names: List[str]) -> None:
        """Make what content workers stored findable (their packs, fan-out directories they made), and durable at the next sync."""
        self.objects.packs.adopt(names)
        self.objects.forget_fanouts()
        self.sync_everything()  # the workers' own loose objects are not listed here

    def _placed(self, path: str) -> None:
        """Note a loose object put in place, for the next ``sync``."""
        with self._unsynced_lock:
            if self._unsynced is not None:
                self._unsynced.add(path)
                if len(self._unsynced) > LOOSE_SYNC_LIMIT:
                    self._unsynced = None

    def sync_everything(self) -> None:
        """Make the next ``sync`` flush the whole file system (what was written is not known one by one)."""
        with self._unsynced_lock:
            self._unsynced = None

    def sync(self) -> None:
        """Make every object written so far durable (objects before manifests); finishes the open pack.

        Packs make themselves durable when finished. A few new loose objects (a database dump)
        are fsynced one by one with their directories, so that the sync does not wait for what
        other processes left unwritten on the same file system; otherwise the file system is
        synced (syncfs).
        """
        self.objects.packs.finish()
        with self._unsynced_lock:
            unsynced, self._unsynced = self._unsynced, set()
        if unsynced is None:
            sync_filesystem(self.base.root)
            return
        for path in sorted(unsynced):
            fsync_path(path)
        if unsynced:
            for directory in sorted({os.path.dirname(path) for path in unsynced}) + [self.base.path("objects")]:
                fsync_path(directory)
