# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writeback started while a restore still writes: the flush that makes the restore durable then finds
only the last files unwritten, not the whole tree."""

from __future__ import annotations

import os
import threading

from .fsutil import sync_filesystem

FLUSH_EVERY = 32 << 20  # bytes written between two flushes started in the background


class EarlyWriteback:
    """A thread that flushes the file system (``syncfs``) each FLUSH_EVERY bytes written, while the writes
    go on: the disk writes what was written so far while the next files are created and written (the
    kernel would start only at its dirty limit, often above a whole tree). It does not make anything
    durable by itself: the restore's own flush, after the last write, does; an error here shows there."""

    def __init__(self, fd: int) -> None:
        self.fd = os.dup(fd)
        self.written = 0
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="gitops-rollback-writeback", daemon=True)
        try:
            self.thread.start()
        except BaseException:
            os.close(self.fd)
            raise

    def wrote(self, size: int) -> None:
        """Count ``size`` bytes written; wake the thread each FLUSH_EVERY bytes."""
        self.written += size
        if self.written >= FLUSH_EVERY:
            self.written = 0
            self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stopping:
                return
            try:
                sync_filesystem(self.fd)
            except OSError:
                pass  # the restore's own flush reports it

    def stop(self) -> None:
        """End the thread (after the flush it is in, if any) and close its descriptor."""
        self.stopping = True
        self.wake.set()
        self.thread.join()
        os.close(self.fd)
