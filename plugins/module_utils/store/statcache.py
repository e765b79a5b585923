# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A rebuildable cache of file stat data to content hash, read and written in tree order.

A file whose size, mtime, ctime and inode are unchanged since it was hashed is not read
again. ctime cannot be set by users, so a rewrite that restores mtime is still noticed.

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
from ..common.fsutil import create_private, split_lines, temp_name, unlink_quietly
from .tree import Key, path_key

FLUSH = 256 * 1024
_NAME = re.compile(r"[0-9a-f]{64}\Z")  # a cached hash that is not an object name is not an answer


_DECODE = json.JSONDecoder().decode
_QUOTE = json.encoder.encode_basestring_ascii  # the C encoder json.dumps uses for a str
_ROW = '[%s, "%s", %d, %d, %d, %d, %d]\n'  # what json.dumps([path, sha, *signature]) writes


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
    """Looks up paths in increasing tree order; a damaged (or forged) cache just stops answering."""

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
        self._current: Optional[Tuple[Key, list]] = None
        self._advance()

    def _advance(self) -> None:
        try:
            row = _DECODE(next(self._lines).decode("utf-8"))
            self._current = (path_key(row[0]), row)
        except (StopIteration, ValueError, IndexError, TypeError, RollbackError):
            self._current = None

    def lookup(self, key: Key, st: os.stat_result) -> Optional[str]:
        """Return the cached sha256 of ``key`` if its stat signature still matches."""
        while self._current is not None and self._current[0] < key:
            self._advance()
        if self._current is None or self._current[0] != key:
            return None
        row = self._current[1]
        if row[2:] != stat_signature(st) or not isinstance(row[1], str) or not _NAME.match(row[1]):
            return None
        return row[1]

    def close(self) -> None:
        """Close the cache file."""
        if self._handle:
            self._handle.close()


class CacheWriter:
    """Writes a new cache beside the old one and renames it into place on commit."""

    def __init__(self, path: str, cipher=None) -> None:
        self.path = path
        self.tmp = temp_name(path)
        self._handle = os.fdopen(create_private(self.tmp), "wb")
        self._sealer = cipher.sealer() if cipher is not None else None
        self._pending: List[bytes] = []
        self._buffered = 0
        if self._sealer:
            self._handle.write(self._sealer.header)

    def add(self, rel: str, sha: str, st: os.stat_result) -> None:
        """Record the hash of a file with its stat signature."""
        line = _ROW % ((_QUOTE(rel), sha) + tuple(stat_signature(st)))
        line = line.encode("ascii")
        if self._sealer is None:
            self._handle.write(line)
            return
        self._pending.append(line)
        self._buffered += len(line)
        if self._buffered >= FLUSH:
            self._flush()

    def _flush(self) -> None:
        self._handle.write(self._sealer.update(b"".join(self._pending)))
        self._pending, self._buffered = [], 0

    def commit(self) -> None:
        """Replace the old cache."""
        if self._sealer:
            self._flush()
            self._handle.write(self._sealer.finish(_context(self.path)))
        self._handle.close()
        os.rename(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the new cache."""
        self._handle.close()
        unlink_quietly(self.tmp)
