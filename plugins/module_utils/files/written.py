# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files a restore wrote, hashed as they were written: what lets its verification take one as written
without reading it back, and only while it is untouched."""

from __future__ import annotations

import os
from array import array
from typing import Optional, Tuple

from ..common.nofollow import inode_generation


class WrittenFiles:
    """Which file a restore wrote for each action, its content hashed and checked against the object
    name as it was written (by action number; 32 bytes each).

    A file is known by its inode number and generation (an inode number freed and given to another file
    has another generation), its size, and its change time after the rename (set by the kernel, no user
    can set it back: a write, a chmod or a ``utime`` after the rename changes it). Where the file system
    has no generation number, nothing is noted and the verification reads the file back.
    """

    def __init__(self, count: int) -> None:
        self.inodes = array("Q", bytes(8 * count))
        self.generations = array("Q", bytes(8 * count))
        self.sizes = array("Q", bytes(8 * count))
        self.ctimes = array("q", bytes(8 * count))

    def note(self, number: int, fd: int) -> None:
        """Remember the file open at ``fd``, written for action ``number`` with its metadata (before its rename)."""
        generation = inode_generation(fd)
        if generation is not None:
            st = os.fstat(fd)
            self.inodes[number], self.generations[number], self.sizes[number] = st.st_ino, generation, st.st_size
            self.ctimes[number] = st.st_ctime_ns

    def tracked(self, number: int) -> bool:
        """Tell whether the file of action ``number`` is still taken as written."""
        return bool(self.inodes[number])

    def unchanged(self, number: int, st: os.stat_result) -> bool:
        """Tell whether ``st`` (the staged file just before its rename) is the file as written: same inode,
        size and change time."""
        return (st.st_ino, st.st_size, st.st_ctime_ns) == (self.inodes[number], self.sizes[number], self.ctimes[number])

    def renamed(self, number: int, st: os.stat_result) -> None:
        """Take the change time of the entry found at the destination just after the rename (a rename sets
        it); forget the file when that entry is not it."""
        if st.st_ino == self.inodes[number] and st.st_size == self.sizes[number]:
            self.ctimes[number] = st.st_ctime_ns
        else:
            self.forget(number)

    def forget(self, number: int) -> None:
        """Read the file of action ``number`` back at the verification."""
        self.inodes[number] = 0

    def get(self, number: int) -> Optional[Tuple[int, int, int, int]]:
        """(inode, size, change time after the rename, generation) of the file written for action ``number``, or None."""
        if not self.inodes[number]:
            return None
        return self.inodes[number], self.sizes[number], self.ctimes[number], self.generations[number]


def unchanged_since_written(fd: int, st: os.stat_result, as_written: Optional[Tuple[int, int, int, int]]) -> bool:
    """Tell whether the file open at ``fd`` (``st`` its status) is the file this run wrote and renamed into
    place, untouched since: same inode and generation, same size and change time."""
    if as_written is None or as_written[:3] != (st.st_ino, st.st_size, st.st_ctime_ns):
        return False
    return inode_generation(fd) == as_written[3]
