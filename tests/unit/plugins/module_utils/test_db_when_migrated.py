# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A database backed up only when its migration version moved since its newest backup (when_migrated), on a
real SQLite file (PostgreSQL: tests/integration/database/test_when_migrated.py)."""

from __future__ import annotations

import sqlite3

from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate as mig
from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate_plan as plan
from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import BackupRequest, backup, unmigrated_backup
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.migration_files import write_chain


def _migrate(conn, directory, version):
    return mig.run_operation(plan.Params(operation="apply", conn=conn, migrations_dir=str(directory),
                                         version=str(version)))["version"]


def test_a_backup_is_due_only_when_the_migration_version_moved(tmp_path):
    conn = DbConnection(engine="sqlite", database=str(tmp_path / "app.db"))
    store = Store(str(tmp_path / "store"))
    chain = write_chain(tmp_path)
    assert _migrate(conn, chain, 2) == 2

    assert unmigrated_backup(store, conn) is None  # no store, no backup yet: one is due
    first = backup(store, BackupRequest(conn=conn, checkpoint="scheduled/1"), "test")[0]
    newest = unmigrated_backup(store, conn)
    assert newest is not None and newest["checkpoint"] == first.id and newest["current_version"] == 2
    assert newest["migration_version"] == 2 and newest["label"] == "scheduled/1"

    assert _migrate(conn, chain, 4) == 4
    assert unmigrated_backup(store, conn) is None  # moved: 4, the newest backup says 2
    second = backup(store, BackupRequest(conn=conn, checkpoint="scheduled/2"), "test")[0]
    assert unmigrated_backup(store, conn)["checkpoint"] == second.id

    mig.run_operation(plan.Params(operation="revert", conn=conn, migrations_dir=str(chain), count=1))
    assert unmigrated_backup(store, conn) is None  # a revert moves it too (4 -> 3)


def test_a_database_without_a_history_is_backed_up_once(tmp_path):
    conn = DbConnection(engine="sqlite", database=str(tmp_path / "plain.db"))

    with sqlite3.connect(conn.database) as db:
        db.execute("CREATE TABLE t (v INTEGER)")
    store = Store(str(tmp_path / "store"))
    assert unmigrated_backup(store, conn) is None
    backup(store, BackupRequest(conn=conn, checkpoint="scheduled/1"), "test")
    assert unmigrated_backup(store, conn)["current_version"] is None
    other = DbConnection(engine="sqlite", database=str(tmp_path / "other.db"))
    with sqlite3.connect(other.database) as db:
        db.execute("CREATE TABLE t (v INTEGER)")
    assert unmigrated_backup(store, other) is None  # another database's backup does not count
