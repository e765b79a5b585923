# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Flushing by path (fsync of a written file or its directory, syncfs of a file system) never waits on a
FIFO a user put in the path's place: the open itself would block until a writer came."""

from __future__ import annotations

import os
import threading

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common import fsutil
from ansible_collections.gitops.rollback.plugins.module_utils.replication import receiver


def _returns_promptly(action, seconds: float = 5.0) -> bool:
    """Run ``action`` in a daemon thread; tell whether it ended within ``seconds`` (a hung open never does)."""
    errors: list = []

    def run() -> None:
        try:
            action()
        except OSError as exc:  # a refusal is fine: what must not happen is waiting forever
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


@pytest.mark.parametrize("flush", [fsutil.fsync_path, fsutil.sync_filesystem, receiver._fsync,  # pylint: disable=protected-access
                                   receiver._sync_filesystem],  # pylint: disable=protected-access
                         ids=["fsync_path", "sync_filesystem", "receiver-fsync", "receiver-syncfs"])
def test_a_fifo_in_place_of_the_flushed_path_does_not_hang(tmp_path, flush):
    fifo = tmp_path / "written"
    os.mkfifo(fifo)
    assert _returns_promptly(lambda: flush(str(fifo)))


def test_files_and_directories_are_still_flushed(tmp_path, monkeypatch):
    flushed = []
    real_fsync = os.fsync
    monkeypatch.setattr(fsutil.os, "fsync", lambda fd: flushed.append(fd) or real_fsync(fd))
    (tmp_path / "file").write_bytes(b"data")
    fsutil.fsync_path(str(tmp_path / "file"))
    fsutil.fsync_path(str(tmp_path))
    assert len(flushed) == 2
