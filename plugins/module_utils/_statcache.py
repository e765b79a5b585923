# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A rebuildable cache of file stat data to content hash, read and written in tree order.

A file whose size, mtime, ctime and inode are unchanged since it was hashed is not read
again. ctime cannot be set by users, so a rewrite that restores mtime is still noticed.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import IO, Iterator, List, Optional, Tuple

from ._fsutil import temp_name, unlink_quietly
from ._tree import Key, path_key


_DECODE = json.JSONDecoder().decode


def stat_signature(st: os.stat_result) -> List[int]:
    """Return the values that must be unchanged for a cached hash to be trusted."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def cache_file(cache_dir: str, root: str) -> str:
    """Return the cache file of a managed root."""
    return os.path.join(cache_dir, hashlib.sha256(root.encode("utf-8")).hexdigest()[:24] + ".jsonl")


class CacheReader:
    """Looks up paths in increasing tree order; a damaged cache just stops answering."""

    def __init__(self, path: str) -> None:
        self._lines: Iterator[bytes] = iter(())
        self._handle: Optional[IO[bytes]] = None
        try:
            self._handle = open(path, "rb")
            self._lines = iter(self._handle)
        except OSError:
            pass
        self._current: Optional[Tuple[Key, list]] = None
        self._advance()

    def _advance(self) -> None:
        try:
            row = _DECODE(next(self._lines).decode("utf-8"))
            self._current = (path_key(row[0]), row)
        except (StopIteration, ValueError, IndexError, TypeError):
            self._current = None

    def lookup(self, key: Key, st: os.stat_result) -> Optional[str]:
        """Return the cached sha256 of ``key`` if its stat signature still matches."""
        while self._current is not None and self._current[0] < key:
            self._advance()
        if self._current is None or self._current[0] != key:
            return None
        row = self._current[1]
        return row[1] if row[2:] == stat_signature(st) else None

    def close(self) -> None:
        """Close the cache file."""
        if self._handle:
            self._handle.close()


class CacheWriter:
    """Writes a new cache beside the old one and renames it into place on commit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tmp = temp_name(path)
        self._handle = open(self.tmp, "wb")

    def add(self, rel: str, sha: str, st: os.stat_result) -> None:
        """Record the hash of a file with its stat signature."""
        self._handle.write((json.dumps([rel, sha] + stat_signature(st)) + "\n").encode("utf-8"))

    def commit(self) -> None:
        """Replace the old cache."""
        self._handle.close()
        os.rename(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the new cache."""
        self._handle.close()
        unlink_quietly(self.tmp)
