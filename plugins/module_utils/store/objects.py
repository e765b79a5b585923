# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's objects, read side: names (SHA-256, or HMAC in an encrypted store), lookup in loose files and
packs, and reads that check every byte against the name (and, encrypted, its authenticity)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from typing import TYPE_CHECKING, Iterator, Optional, Set

from ..common.errors import EncryptionKeyError, IntegrityError
from ..common.fsutil import raise_if_full, split_lines, unlink_quietly
from .packs import Location, PackSet, read_range
from .root import CHUNK, SHA_RE, StoreRoot, object_context, sha256_file

if TYPE_CHECKING:  # the cipher module is imported only for an encrypted store
    from .crypto import Cipher
    # the stat caches only by a capture or a restore plan (which import them anyway): a module that only reads or
    # writes objects does not compile them at its start
    from .statcache import CacheReader, CacheWriter


class Objects:
    """Finds and reads a store's objects: loose files under objects/ and ranges of packs, named by their content."""

    def __init__(self, base: StoreRoot) -> None:
        self.base = base
        self.packs = PackSet(base.path("packs"), base.path("tmp"), base.upgrade_to_packs)
        self._fanouts: Optional[Set[str]] = None  # objects/ fan-out directories, read once

    @property
    def cipher(self) -> Optional[Cipher]:
        """The store's cipher (None for a plain store)."""
        return self.base.cipher

    def hasher(self):
        """Return a fresh hash object that computes object names (SHA-256, or HMAC when encrypted)."""
        cipher = self.cipher
        return cipher.hasher() if cipher else hashlib.sha256()

    def hash_bytes(self, data: bytes) -> str:
        """Return the object name of ``data`` (one call into OpenSSL: most objects are small)."""
        cipher = self.cipher
        if cipher is None:
            return hashlib.sha256(data).hexdigest()
        return cipher.name(data)  # what cipher.hasher() computes

    def hash_file(self, path: str) -> str:
        """Return the object name of a file's content."""
        if self.cipher is None:
            return sha256_file(path)
        digest = self.hasher()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def hash_fd(self, fd: int) -> str:
        """Return the object name of the content of an open file (read from its current offset)."""
        digest = self.hasher()
        for chunk in iter(lambda: os.read(fd, CHUNK), b""):
            digest.update(chunk)
        return digest.hexdigest()

    def blob_path(self, sha: str) -> str:
        """Return where the blob named ``sha`` lives."""
        if not SHA_RE.match(sha or ""):
            raise IntegrityError("%r is not a SHA-256 object name." % (sha,))
        return self.base.path("objects", sha[:2], sha)

    def has_blob(self, sha: str) -> bool:
        """Tell whether the blob is stored (as a file of its own or in a pack)."""
        return self.packs.has(sha) or self.loose_exists(sha)

    def loose_exists(self, sha: str) -> bool:
        """Tell whether a blob is a file of its own; no stat at all when its fan-out directory is absent."""
        if self._fanouts is None:
            objects = self.base.path("objects")
            self._fanouts = set(os.listdir(objects)) if os.path.isdir(objects) else set()
        return sha[:2] in self._fanouts and os.path.exists(self.blob_path(sha))

    def made_fanout(self, sha: str) -> None:
        """Note a fan-out directory just made."""
        if self._fanouts is not None:
            self._fanouts.add(sha[:2])

    def packed(self, sha: str) -> Optional[Location]:
        """Return where a blob is packed, or None when it is a file of its own (or missing)."""
        if self.loose_exists(sha):
            return None
        return self.packs.find(sha)

    def _stored_bytes(self, sha: str) -> bytes:
        """Return a blob's bytes as stored (sealed in an encrypted store), unchecked."""
        location = self.packed(sha)
        if location is not None:
            return read_range(location)
        try:
            with open(self.blob_path(sha), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "No such object in the store", self.blob_path(sha)) from None

    def cache_reader(self, root: str) -> CacheReader:
        """Return the stat cache of a managed root for lookups (sealed in an encrypted store)."""
        from . import statcache  # pylint: disable=import-outside-toplevel  # see TYPE_CHECKING above
        cipher = self.cipher
        return statcache.CacheReader(self._cache_path(root), cipher)

    def cache_writer(self, root: str) -> CacheWriter:
        """Return a writer of a managed root's new stat cache (renamed into place on commit)."""
        from . import statcache  # pylint: disable=import-outside-toplevel
        cipher = self.cipher
        return statcache.CacheWriter(self._cache_path(root), cipher)

    def _cache_path(self, root: str) -> str:
        from . import statcache  # pylint: disable=import-outside-toplevel
        return statcache.cache_file(self.base.path("cache"), root, self.hasher if self.cipher else None)

    def object_location(self, sha: str) -> Location:
        """Return (file, offset, length) of a blob's stored bytes: its own file, or a range of a pack."""
        location = self.packed(sha)
        return location if location else (self.blob_path(sha), 0, os.path.getsize(self.blob_path(sha)))

    def object_size(self, sha: str) -> int:
        """Return how many bytes a blob takes in the store."""
        location = self.packed(sha)
        return location[2] if location else os.path.getsize(self.blob_path(sha))

    def read_blob(self, sha: str) -> bytes:
        """Return a blob's bytes after checking their hash (and, encrypted, their authenticity)."""
        return self._content(sha, self._stored_bytes(sha))

    def _unsealed(self, sha: str, stored: bytes) -> bytes:
        """Return a blob's content from its stored bytes (authenticated first when encrypted), unhashed."""
        cipher = self.cipher
        return stored if cipher is None else cipher.unseal(stored, object_context(sha), "Object %s" % sha)

    def _content(self, sha: str, data: bytes) -> bytes:
        """Return a blob's content from its stored bytes after checking them (see read_blob)."""
        data = self._unsealed(sha, data)
        actual = self.hash_bytes(data)
        if actual != sha:
            raise IntegrityError("Object %s is corrupted (content hashes to %s)." % (sha, actual))
        return data

    def _loose_chunks(self, sha: str) -> Iterator[bytes]:
        """Yield the content of a blob stored as a file of its own, unhashed (an encrypted one's tag is
        verified before its first byte)."""
        cipher = self.cipher
        with open(self.blob_path(sha), "rb") as handle:
            if cipher is None:
                yield from iter(lambda: handle.read(CHUNK), b"")
            else:
                yield from cipher.open_stream(handle, os.fstat(handle.fileno()).st_size, object_context(sha),
                                              "Object %s" % sha)

    def iter_blob_chunks(self, sha: str) -> Iterator[bytes]:
        """Yield a blob's content in chunks, then check the hash of everything read (a packed blob's
        before its bytes are yielded).

        An encrypted object's tag is verified before its first byte is yielded.
        """
        location = self.packed(sha)
        if location is not None:
            yield self._content(sha, read_range(location))
            return
        digest = self.hasher()
        for chunk in self._loose_chunks(sha):
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != sha:
            raise IntegrityError("Object %s is corrupted (content hashes to %s)." % (sha, digest.hexdigest()))

    def iter_blob_content(self, sha: str) -> Iterator[bytes]:
        """Yield a blob's content in chunks without hashing it: for a caller that hashes what it
        writes and compares the result with ``sha`` itself (a restore). An encrypted object is
        still authenticated before its first byte is yielded."""
        location = self.packed(sha)
        if location is not None:
            yield self._unsealed(sha, read_range(location))
            return
        yield from self._loose_chunks(sha)

    def iter_blob_lines(self, sha: str) -> Iterator[bytes]:
        """Yield a blob's lines, then check the hash of everything read."""
        if self.cipher is not None or self.packed(sha) is not None:
            yield from split_lines(self.iter_blob_chunks(sha))
            return
        digest = hashlib.sha256()
        with open(self.blob_path(sha), "rb") as handle:
            for line in handle:
                digest.update(line)
                yield line
        if digest.hexdigest() != sha:
            raise IntegrityError("Object %s is corrupted (content hashes to %s)." % (sha, digest.hexdigest()))

    def blob_hash(self, sha: str) -> Optional[str]:
        """Return the actual name of a stored blob's content, or None if it is missing.

        For an encrypted object that fails authentication the result says so instead of a hash.
        """
        digest = self.hasher()
        try:
            location = self.packed(sha)
            if location is not None:
                stored = read_range(location)
                if self.cipher is None:
                    return self.hash_bytes(stored)
                digest.update(self.cipher.unseal(stored, object_context(sha), "Object %s" % sha))
                return digest.hexdigest()
            if self.cipher is None:
                return sha256_file(self.blob_path(sha))
            for chunk in self.iter_blob_chunks(sha):
                digest.update(chunk)
        except FileNotFoundError:
            return None
        except EncryptionKeyError:
            return "encrypted with another key"
        except IntegrityError as exc:
            if "corrupted" in str(exc):
                return digest.hexdigest()
            return "not authentic (MAC mismatch)"
        return digest.hexdigest()

    def export_blob(self, sha: str, target: str) -> None:
        """Write a blob's plain content to ``target`` (mode 0600); a plain store hard-links when it can."""
        if self.cipher is None and self.packed(sha) is None:
            try:
                os.link(self.blob_path(sha), target)
                return
            except OSError:
                shutil.copyfile(self.blob_path(sha), target)
                return
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_blob_chunks(sha):
                    out.write(chunk)
        except BaseException as exc:
            unlink_quietly(target)
            if isinstance(exc, OSError):
                raise_if_full(exc, "a copy of object %s" % sha[:12])
            raise

    def readable_path(self, sha: str, workdir: str) -> str:
        """Return a path holding a blob's plain content for an external program.

        A plain store returns the object file itself; a packed object is copied out, and an
        encrypted store decrypts it (verified), into ``workdir``, which the caller removes.
        """
        if self.cipher is None and self.packed(sha) is None:
            return self.blob_path(sha)
        target = os.path.join(workdir, "object-" + sha)
        if not os.path.exists(target):
            self.export_blob(sha, target)
        return target

    def forget_fanouts(self) -> None:
        """Read the fan-out directories again at the next lookup (other processes made some)."""
        self._fanouts = None
