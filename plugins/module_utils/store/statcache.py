# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A rebuildable cache of file stat data to content hash, read and written in tree order.

A file whose size, mtime, ctime and inode are unchanged since it was hashed is not read
again. ctime cannot be set by users, so a rewrite that restores mtime is still noticed.

Every hash in a cache names an object the store holds: a cache is committed once every object it
names is stored (the capture finishes its open pack first), and garbage collection deletes a cache naming an object it is about to
delete before it deletes anything, so a capture takes a cached hash without looking the object up.

In an encrypted store the cache is sealed like an object (its paths and sizes are as
sensitive as a manifest), and its file name is keyed, so neither reveals the managed root.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import IO, Iterator, List, Optional, Tuple

from ..common.errors import RollbackError
from ..common.fsutil import create_private, raise_if_full, split_lines, temp_name, unlink_quietly
from .tree import Key, path_key

FLUSH = 256 * 1024
_NAME = re.compile(r"[0-9a-f]{64}\Z")  # a cached hash that is not an object name is not an answer


_DECODE = json.JSONDecoder().decode
_QUOTE = json.encoder.encode_basestring_ascii  # the C encoder json.dumps uses for a str
_ROW = '[%s, "%s", %d, %d, %d, %d, %d]\n'  # what json.dumps([path, sha, *signature]) writes
_TAIL = '", %d, %d, %d, %d, %d]\n'  # a row after its path and hash


def stat_signature(st: os.stat_result) -> List[int]:
    """Return the values that must be unchanged for a cached hash to be trusted."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def cache_file(cache_dir: str, root: str, hasher=None) -> str:
    """Return the cache file of a managed root (named by a keyed hash when ``hasher`` is given)."""
    digest = hasher() if hasher else hashlib.sha256()
    digest.update(root.encode("utf-8"))
    return os.path.join(cache_dir, digest.hexdigest()[:24] + ".jsonl")


def _context(path: str) -> bytes:
    return b"statcache:" + os.path.basename(path).encode("ascii")


class CacheReader:
    """Looks up paths in increasing tree order; a damaged (or forged) cache just stops answering.

    A row is parsed only as far as a lookup needs: when the walk meets the row's own path (the
    common case, the tree unchanged), ``lookup_row`` compares the row's text with the one the
    entry's stat would give and decodes nothing.
    """

    def __init__(self, path: str, cipher=None) -> None:
        self._lines: Iterator[bytes] = iter(())
        self._handle: Optional[IO[bytes]] = None
        try:
            self._handle = open(path, "rb")
            if cipher is None:
                self._lines = iter(self._handle)
            else:
                size = os.fstat(self._handle.fileno()).st_size
                self._lines = split_lines(cipher.open_stream(self._handle, size, _context(path), "stat cache " + path))
        except OSError:
            pass
        self._raw: Optional[str] = None  # the current row's text (None: the end, or a damaged row)
        self._key: Optional[Key] = None  # its path's key, decoded when a lookup needs it
        self._advance()

    def _advance(self) -> None:
        self._key = None
        try:
            self._raw = next(self._lines).decode("ascii")
        except (StopIteration, ValueError, RollbackError):
            self._raw = None

    def _current_key(self) -> Optional[Key]:
        if self._key is None and self._raw is not None:
            try:
                self._key = path_key(_DECODE(self._raw)[0])
            except (ValueError, IndexError, TypeError, AttributeError):
                self._raw = None
        return self._key

    def lookup(self, key: Key, st: os.stat_result) -> Optional[str]:
        """Return the cached sha256 of ``key`` if its stat signature still matches."""
        while self._current_key() is not None and self._key < key:
            self._advance()
        if self._current_key() != key:
            return None
        try:
            row = _DECODE(self._raw)
        except ValueError:
            return None
        if row[2:] != stat_signature(st) or not isinstance(row[1], str) or not _NAME.match(row[1]):
            return None
        return row[1]

    def lookup_row(self, rel: str, st: os.stat_result) -> Tuple[Optional[str], Optional[str]]:
        """Return (the cached row, sha256) of ``rel`` if its stat signature still matches; the row is
        None when the hash came from a row that is not the one ``CacheWriter.add`` would write now."""
        raw = self._raw
        if raw is not None:
            head = '[%s, "' % _QUOTE(rel)
            if raw.startswith(head):
                self._advance()
                sha = raw[len(head):len(head) + 64]
                if raw[len(head) + 64:] == _TAIL % (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                                                    st.st_dev) and _NAME.match(sha):
                    return raw, sha
                return None, None
        key = path_key(rel)
        sha = self.lookup(key, st)
        if self._key == key:
            self._advance()  # the next lookup starts at the next row: the fast path again
        return None, sha

    def hashes(self) -> Iterator[Optional[str]]:
        """Yield the hash of every row from the current one on; None for a row that does not parse."""
        while self._raw is not None:
            try:
                yield _DECODE(self._raw)[1]
            except (ValueError, IndexError, TypeError):
                yield None
                return
            self._advance()

    def close(self) -> None:
        """Close the cache file."""
        if self._handle:
            self._handle.close()


class CacheWriter:
    """Writes a new cache beside the old one and renames it into place on commit."""

    def __init__(self, path: str, cipher=None) -> None:
        self.path = path
        self.tmp = temp_name(path)
        try:
            self._handle = os.fdopen(create_private(self.tmp), "wb")
        except OSError as exc:
            raise_if_full(exc, "the stat cache %s" % self.tmp)
            raise
        self._sealer = cipher.sealer() if cipher is not None else None
        self._pending: List[bytes] = []
        self._buffered = 0
        if self._sealer:
            self._write(self._sealer.header)

    def _write(self, data: bytes) -> None:
        """Write to the new cache; a full disk is a StoreFullError like every other store write."""
        try:
            self._handle.write(data)
        except OSError as exc:
            raise_if_full(exc, "the stat cache %s" % self.tmp)
            raise

    def add(self, rel: str, sha: str, st: os.stat_result) -> None:
        """Record the hash of a file with its stat signature."""
        self.add_row(_ROW % (_QUOTE(rel), sha, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))

    def add_row(self, row: str) -> None:
        """Record a row as ``CacheReader.lookup_row`` returned it (the file is unchanged)."""
        line = row.encode("ascii")
        if self._sealer is None:
            self._write(line)
            return
        self._pending.append(line)
        self._buffered += len(line)
        if self._buffered >= FLUSH:
            self._flush()

    def _flush(self) -> None:
        self._write(self._sealer.update(b"".join(self._pending)))
        self._pending, self._buffered = [], 0

    def commit(self) -> None:
        """Replace the old cache."""
        if self._sealer:
            self._flush()
            self._write(self._sealer.finish(_context(self.path)))
        try:
            self._handle.close()  # writes what the file object still buffers
        except OSError as exc:
            raise_if_full(exc, "the stat cache %s" % self.tmp)
            raise
        os.rename(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the new cache."""
        try:
            self._handle.close()
        except OSError:
            pass  # what it still buffered could not be written (a full disk): the file goes all the same
        unlink_quietly(self.tmp)


class KeptCache:
    """A cache writer that writes nothing: the old cache stays as it was (a capture that must leave the store's
    existing files untouched, so that removing what it created restores the store byte for byte)."""

    def add(self, rel: str, sha: str, st: os.stat_result) -> None:
        """Ignore an entry."""

    def add_row(self, row: str) -> None:
        """Ignore a row."""

    def commit(self) -> None:
        """Nothing to replace."""

    def abort(self) -> None:
        """Nothing to drop."""
