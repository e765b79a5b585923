# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every file of a store is mode 0600 and every directory 0700, whatever wrote it and whatever the umask."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.files.capture import (
    CheckpointRequest, RootSpec, create_checkpoint,
)
from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import BackupRequest, backup
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import SMALL_FILE, Store

SIZES = [0, 1, 4096, SMALL_FILE - 1, SMALL_FILE, SMALL_FILE + 1, 3 * SMALL_FILE + 7, 5 * 1024 * 1024]


def loose_modes(root: str) -> list:
    """Every path under ``root`` (and root) whose mode is not 0600 (files) or 0700 (directories)."""
    wrong = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            full = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(full)
            want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) or stat.S_IMODE(st.st_mode) != want:
                wrong.append((os.path.relpath(full, root), oct(st.st_mode)))
    return wrong


@pytest.fixture
def open_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_store_after_checkpoints_and_a_database_backup_is_private(tmp_path, open_umask, encrypted):
    managed = tmp_path / "managed"
    (managed / "sub").mkdir(parents=True)
    for size in SIZES:
        (managed / ("f%d" % size)).write_bytes(os.urandom(size))
        (managed / "sub" / ("g%d" % size)).write_bytes(os.urandom(size))
        os.chmod(managed / ("f%d" % size), 0o644)
    database = tmp_path / "app.db"
    with sqlite3.connect(str(database)) as conn:
        conn.execute("CREATE TABLE t (x BLOB)")
        conn.executemany("INSERT INTO t VALUES (?)", [(os.urandom(4096),) for row in range(300)])
    os.chmod(database, 0o644)
    store = Store(str(tmp_path / "store"), "correct horse battery staple" if encrypted else None)
    request = CheckpointRequest(roots=[RootSpec(str(managed))], label="v1")

    with store.lock("test", "checkpoint"):
        create_checkpoint(store, request)
        assert loose_modes(store.root) == [], "while the lock is held: %s" % loose_modes(store.root)
    (managed / "f0").write_bytes(b"changed")
    with store.lock("test", "checkpoint"):
        create_checkpoint(store, CheckpointRequest(roots=[RootSpec(str(managed))], label="v2"))
    backup(store, BackupRequest(conn=DbConnection(engine="sqlite", database=str(database)), checkpoint="v2"),
           "test@host")

    assert loose_modes(store.root) == []
    assert os.listdir(store.path("objects")) and os.listdir(store.path("packs")) and os.listdir(store.path("cache"))
