"""A PostgreSQL database backed up only when the version of its migration history moved since its newest backup
(db_backup when_migrated, what ``gitops-rollback schedule checkpoint --when-migrated`` asks the checkpoint role
for): the engine in-process against a real server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from harness import PgServer


def _migrations(directory: Path) -> Path:
    directory.mkdir()
    for version, table in enumerate(("customers", "orders", "coupons"), start=1):
        (directory / f"V{version:04d}__{table}.up.sql").write_text(f"CREATE TABLE {table} (id int PRIMARY KEY);\n")
        (directory / f"V{version:04d}__{table}.down.sql").write_text(f"DROP TABLE {table};\n")
    return directory


def test_a_postgresql_backup_is_due_only_when_its_migration_version_moved(
        postgres: PgServer, tmp_path: Path, unique_name: Callable[[str], str], collections_path: Path) -> None:
    if str(collections_path) not in sys.path:
        sys.path.insert(0, str(collections_path))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate as mig
    from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate_plan as plan
    from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import BackupRequest, backup, unmigrated_backup
    from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
    from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
    name = postgres.create_database(unique_name("migrated"))
    conn = DbConnection.from_params({"engine": "postgresql", "database": name, "login_host": postgres.host,
                                     "login_port": postgres.port, "login_user": postgres.user,
                                     "client_bin_dir": str(postgres.bin_dir)})
    migrations = _migrations(tmp_path / "migrations")
    store = Store(str(tmp_path / "store"))

    def migrate(operation: str, **kwargs: object) -> int:
        return mig.run_operation(plan.Params(operation=operation, conn=conn, migrations_dir=str(migrations),
                                             **kwargs))["version"]

    assert migrate("apply", version="2") == 2
    assert unmigrated_backup(store, conn) is None  # no backup yet
    first = backup(store, BackupRequest(conn=conn, checkpoint="scheduled/1"), "test")[0]
    held = unmigrated_backup(store, conn)
    assert held["checkpoint"] == first.id and held["migration_version"] == held["current_version"] == 2

    postgres.psql("INSERT INTO customers VALUES (1)", db=name)
    assert unmigrated_backup(store, conn)["checkpoint"] == first.id  # rows changed, the version did not

    assert migrate("apply") == 3
    assert unmigrated_backup(store, conn) is None
    second = backup(store, BackupRequest(conn=conn, checkpoint="scheduled/2"), "test")[0]
    assert unmigrated_backup(store, conn)["checkpoint"] == second.id
    assert migrate("revert", count=1) == 2
    assert unmigrated_backup(store, conn) is None  # back down to 2: the newest backup says 3
