# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pack files: many small objects appended to one file, found through an index.

Creating a file costs far more than writing its bytes on many file systems, so objects of up to
``SMALL_OBJECT`` bytes are appended to a pack instead of getting a file each (see
docs/store-format.md, "Packs")::

    packs/<name>.pack   the stored bytes of each object, back to back (plain, or each sealed)
    packs/<name>.idx    b"GRIDX001", then one 48-byte record per object, sorted by name:
                        32-byte object name, 8-byte offset, 8-byte length (big-endian)

A pack is written under tmp/, renamed into packs/ when finished, and only then gets its index
(written atomically). An object is in a pack once the pack's index names it; a pack without an
index is the leftover of an interrupted writer and is deleted by the next garbage collection.
"""

from __future__ import annotations

import os
import secrets
import struct
import sys
import threading
import time
from array import array
from bisect import bisect_left
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from ..common.errors import IntegrityError
from ..common.fsutil import atomic_write_bytes, create_private, raise_if_full, start_writeback, unlink_quietly, write_all

SMALL_OBJECT = 256 * 1024
PACK_LIMIT = 64 * 1024 * 1024  # a pack is closed once it holds this many bytes
WRITEBACK_STEP = 8 * 1024 * 1024  # written bytes are sent to disk in steps of this size, without waiting
IDX_MAGIC = b"GRIDX001"
RECORD = struct.Struct(">32sQQ")

Location = Tuple[str, int, int]  # pack file, offset, length


class PackIndex:
    """The index of one finished pack: its 48-byte records."""

    def __init__(self, pack_path: str, records: bytes) -> None:
        self.pack_path = pack_path
        self.records = records
        self.count = len(records) // RECORD.size

    @classmethod
    def load(cls, idx_path: str) -> "PackIndex":
        """Read an index file, refusing one that is damaged."""
        with open(idx_path, "rb") as handle:
            magic = handle.read(len(IDX_MAGIC))
            body = handle.read()  # (not sliced off the whole file: one copy of the records in memory)
        if magic != IDX_MAGIC or len(body) % RECORD.size:
            raise IntegrityError(
                "Pack index %s is damaged (bad header or truncated). Run gitops.rollback.checkpoint "
                "state=verified to see which checkpoints need it; delete those and take new ones." % idx_path)
        return cls(idx_path[:-len(".idx")] + ".pack", body)

    @staticmethod
    def encode(entries: Dict[bytes, Tuple[int, int]]) -> bytes:
        """Return the index file bytes of ``entries`` (name -> (offset, length))."""
        return IDX_MAGIC + b"".join(RECORD.pack(key, *entries[key]) for key in sorted(entries))

    def at(self, start: int) -> Tuple[bytes, Location]:
        """Return the name and location of the record at byte ``start``."""
        key, offset, length = RECORD.unpack_from(self.records, start)
        return key, (self.pack_path, offset, length)

    def entries(self) -> Iterator[Tuple[str, int, int]]:
        """Yield (object name in hex, offset, length) for every object of the pack."""
        for key, offset, length in RECORD.iter_unpack(self.records):
            yield key.hex(), offset, length


def _key_of(sha: str) -> Optional[bytes]:
    """Return the 32-byte form of an object name, or None when ``sha`` is not one."""
    try:
        key = bytes.fromhex(sha)
    except (TypeError, ValueError):
        return None
    return key if len(key) == 32 else None


def _prefix(key: bytes) -> int:
    return int.from_bytes(key[:8], "big")


def _prefixes(records: bytes) -> array:
    """Return the first 8 bytes of every record's name, as numbers (sorted, as the records are)."""
    prefixes = array("Q")
    prefixes.frombytes(memoryview(records).cast("B").cast("Q")[::RECORD.size // 8].tobytes())
    if sys.byteorder == "little":
        prefixes.byteswap()
    return prefixes


WHERE_BITS = 40  # where a record is: index number << WHERE_BITS | byte offset of the record in the index
Run = Tuple[array, Optional[array], int]  # sorted prefixes; where each record is (None: all in one index); that index


class _Lookup:
    """Finds packed objects of every index by binary search over sorted runs of the first 8 bytes
    of their names (16 bytes per object at most; the full name is compared on a hit).

    The indexes read together make one run; a pack finished later adds a run of its own, and
    more than ``MAX_RUNS`` are merged into one.
    """

    MAX_RUNS = 8

    def __init__(self, indexes: List[PackIndex]) -> None:
        self.indexes: List[PackIndex] = []
        self._runs: List[Run] = []
        for index in indexes:
            self.indexes.append(index)
            self._runs.append((_prefixes(index.records), None, len(self.indexes) - 1))
        if len(self._runs) > 1:
            self._merge()

    def add(self, index: PackIndex) -> None:
        """Make a finished pack's objects findable."""
        self.indexes.append(index)
        self._runs.append((_prefixes(index.records), None, len(self.indexes) - 1))
        if len(self._runs) > self.MAX_RUNS:
            self._merge()

    def _merge(self) -> None:
        """Merge every run into one (each object as one number while they are sorted)."""
        keyed = []
        for prefixes, wheres, number in self._runs:
            if wheres is None:
                base = number << WHERE_BITS
                keyed.extend(prefix << 64 | base | start
                             for prefix, start in zip(prefixes, range(0, len(prefixes) * RECORD.size, RECORD.size)))
            else:
                keyed.extend(prefix << 64 | where for prefix, where in zip(prefixes, wheres))
        self._runs = []
        keyed.sort()
        mask = (1 << 64) - 1
        self._runs = [(array("Q", (key >> 64 for key in keyed)), array("Q", (key & mask for key in keyed)), -1)]

    def find(self, key: bytes) -> Optional[Location]:
        """Return where the object ``key`` (32-byte name) is packed, or None."""
        prefix = _prefix(key)
        for prefixes, wheres, number in self._runs:
            at = bisect_left(prefixes, prefix)
            while at < len(prefixes) and prefixes[at] == prefix:
                where = wheres[at] if wheres is not None else number << WHERE_BITS | at * RECORD.size
                found, location = self.indexes[where >> WHERE_BITS].at(where & ((1 << WHERE_BITS) - 1))
                if found == key:
                    return location
                at += 1
        return None

    def has(self, key: bytes) -> bool:
        """Tell whether the object ``key`` is packed."""
        return self.find(key) is not None


class PackWriter:
    """Appends objects to one new pack; safe to share between threads."""

    def __init__(self, tmp_dir: str, packs_dir: str) -> None:
        self.name = "%d-%s" % (time.time_ns(), secrets.token_hex(4))
        self.path = os.path.join(tmp_dir, ".pack-" + self.name)
        self.packs_dir = packs_dir
        self.entries: Dict[bytes, Tuple[int, int]] = {}
        self.size = 0
        self.written_back = 0
        self.fd: Optional[int] = create_private(self.path)

    def find(self, key: bytes) -> Optional[Location]:
        """Return where an object added to this unfinished pack is."""
        found = self.entries.get(key)
        return (self.path, found[0], found[1]) if found else None

    def add(self, key: bytes, stored: bytes) -> None:
        """Append one object's stored bytes (the caller holds the pack set's lock)."""
        try:
            write_all(self.fd, stored)
        except OSError as exc:
            raise_if_full(exc, "a pack in %s" % self.packs_dir)
            raise
        self.entries[key] = (self.size, len(stored))
        self.size += len(stored)
        if self.size - self.written_back >= WRITEBACK_STEP:
            start_writeback(self.fd, self.written_back, self.size - self.written_back)
            self.written_back = self.size

    def finish(self) -> Optional[PackIndex]:
        """Make the pack durable, move it into packs/ and write its index; None when it is empty.

        The pack's bytes are on disk before an index names them: a crash can never leave an
        index whose objects were not written (a later checkpoint would trust them).
        """
        fd, self.fd = self.fd, None
        try:
            if self.entries:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        if not self.entries:
            unlink_quietly(self.path)
            return None
        final = os.path.join(self.packs_dir, self.name + ".pack")
        os.rename(self.path, final)
        data = PackIndex.encode(self.entries)
        try:
            atomic_write_bytes(os.path.join(self.packs_dir, self.name + ".idx"), data)
        except OSError as exc:
            unlink_quietly(final)
            raise_if_full(exc, "a pack index in %s" % self.packs_dir)
            raise
        return PackIndex(final, data[len(IDX_MAGIC):])

    def abort(self) -> None:
        """Drop the unfinished pack (idempotent)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        unlink_quietly(self.path)


class PackSet:
    """The packs of one store: finished indexes (read lazily) and at most one open writer."""

    def __init__(self, packs_dir: str, tmp_dir: str, before_first_pack: Callable[[], None]) -> None:
        self.packs_dir = packs_dir
        self.tmp_dir = tmp_dir
        self.before_first_pack = before_first_pack  # records the packed format before a pack exists
        self._lookup: Optional[_Lookup] = None
        self._writer: Optional[PackWriter] = None
        self._lock = threading.Lock()
        self.finished: List[str] = []  # index files this pack set wrote

    def _loaded(self) -> _Lookup:
        if self._lookup is None:
            try:
                names = sorted(os.listdir(self.packs_dir))
            except FileNotFoundError:
                names = []
            self._lookup = _Lookup([PackIndex.load(os.path.join(self.packs_dir, name))
                                    for name in names if name.endswith(".idx")])
        return self._lookup

    def indexes(self) -> List[PackIndex]:
        """Return the index of every finished pack (read once)."""
        return self._loaded().indexes

    def forget(self) -> None:
        """Drop the cached indexes (after packs were rewritten or removed)."""
        with self._lock:
            self._lookup = None

    def _find_key(self, key: bytes) -> Optional[Location]:
        writer = self._writer
        found = writer.find(key) if writer else None
        return found or self._loaded().find(key)

    def find(self, sha: str) -> Optional[Location]:
        """Return where the object ``sha`` is packed, or None (also for a string that is no name)."""
        key = _key_of(sha)
        if key is None:
            return None
        with self._lock:
            return self._find_key(key)

    def has(self, sha: str) -> bool:
        """Tell whether the object ``sha`` is packed (finished or in the open pack)."""
        key = _key_of(sha)
        if key is None:
            return False
        with self._lock:
            writer = self._writer
            return bool(writer and key in writer.entries) or self._loaded().has(key)

    def add(self, sha: str, stored: Callable[[], bytes], exists: Callable[[str], bool]) -> bool:
        """Append an object unless it is already stored (``exists(sha)`` checks loose objects).

        ``stored()`` returns the bytes to write (called only for a new object). Returns whether
        the object was added.
        """
        key = bytes.fromhex(sha)
        with self._lock:
            if self._find_key(key) or exists(sha):
                return False
            writer = self._writer
            if writer is None:
                self.before_first_pack()
                os.makedirs(self.packs_dir, mode=0o700, exist_ok=True)
                writer = self._writer = PackWriter(self.tmp_dir, self.packs_dir)
            writer.add(key, stored())
            if writer.size >= PACK_LIMIT:
                self._finish_locked()
        return True

    def _finish_locked(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            finished = writer.finish()
        except BaseException:
            writer.abort()
            raise
        if finished is None:
            return
        self.finished.append(os.path.basename(finished.pack_path)[:-len(".pack")] + ".idx")
        if self._lookup is not None:
            self._lookup.add(finished)  # (not loaded yet: the lookup reads the new index with the others)

    def detach(self) -> None:
        """In a forked worker: forget the parent's open pack (the parent still writes it)."""
        writer, self._writer = self._writer, None
        if writer is not None and writer.fd is not None:
            os.close(writer.fd)  # this process's copy only
        self._lock = threading.Lock()
        self.finished = []

    def adopt(self, names: List[str]) -> None:
        """Make packs that other processes finished findable (index file names in packs/)."""
        with self._lock:
            if self._lookup is not None:
                for name in names:
                    self._lookup.add(PackIndex.load(os.path.join(self.packs_dir, name)))

    def finish(self) -> None:
        """Finish the open pack, if any (before the manifest that needs its objects is saved)."""
        with self._lock:
            self._finish_locked()

    def abort(self) -> None:
        """Drop the open pack, if any."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer:
            writer.abort()


def read_range(location: Location) -> bytes:
    """Return the stored bytes at a pack location."""
    path, offset, length = location
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        data = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    if len(data) != length:
        raise IntegrityError("Pack %s is truncated: an object at offset %d is cut short. Run "
                             "gitops.rollback.checkpoint state=verified." % (path, offset))
    return data
