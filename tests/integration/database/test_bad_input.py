"""Bad input gets a clear error before anything changes, and the live database is untouched."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from harness import MariaDbServer, PgServer

pytestmark = pytest.mark.slow


def pg_args(pg: PgServer, db: str, store: Path, **extra: object) -> dict:
    args = {"engine": "postgresql", "database": db, "login_host": pg.host, "login_port": pg.port,
            "login_user": pg.user, "store_path": str(store), "checkpoint": "v1"}
    args.update(extra)
    return args


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def backed_up(postgres: PgServer, run_task, store_path: Path, unique_name) -> str:
    """A database with 20 rows backed up as checkpoint v1, then changed to 5 rows."""
    db = unique_name("pgbad")
    postgres.create_database(db)
    postgres.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 20)", db=db)
    result = run_task("gitops.rollback.db_backup", pg_args(postgres, db, store_path))[0]
    assert result.rc == 0, str(result)
    postgres.psql("DELETE FROM t WHERE id > 5", db=db)
    return db


def assert_failed(task: dict, *phrases: str) -> str:
    assert task["status"] == "ignored", json.dumps(task, indent=1)
    for phrase in phrases:
        assert phrase in task["msg"], task["msg"]
    return task["msg"]


def test_unreachable_servers(run_task, store_path: Path) -> None:
    port = closed_port()
    task = run_task("gitops.rollback.db_backup", {"engine": "postgresql", "database": "x", "login_host": "127.0.0.1",
                                                  "login_port": port, "store_path": str(store_path)})[1]
    assert_failed(task, "Check login_host, login_port", str(port))
    task = run_task("gitops.rollback.db_backup", {"engine": "mysql", "database": "x", "login_host": "127.0.0.1",
                                                  "login_port": port, "login_user": "root",
                                                  "store_path": str(store_path)})[1]
    assert_failed(task, "Check login_host, login_port")
    assert not (store_path / "checkpoints").exists() or not list((store_path / "checkpoints").iterdir())


def test_wrong_passwords(postgres: PgServer, mariadb: MariaDbServer, run_task, store_path: Path) -> None:
    task = run_task("gitops.rollback.db_backup", pg_args(postgres, "postgres", store_path, login_user="app",
                                                         login_password="not-the-password"))[1]
    msg = assert_failed(task, "Check login_user and login_password")
    assert "not-the-password" not in msg
    task = run_task("gitops.rollback.db_backup", {"engine": "mysql", "database": "mysql", "login_host": mariadb.host,
                                                  "login_port": mariadb.port, "login_user": "root",
                                                  "login_password": "not-the-password",
                                                  "store_path": str(store_path)})[1]
    assert_failed(task, "Access denied", "Check login_user and login_password")


def test_unknown_database_and_checkpoint(postgres: PgServer, mariadb: MariaDbServer, run_task, store_path: Path,
                                         backed_up: str) -> None:
    task = run_task("gitops.rollback.db_backup", pg_args(postgres, "no_such_db", store_path))[1]
    assert_failed(task, "'no_such_db' does not exist", backed_up)
    task = run_task("gitops.rollback.db_backup", {"engine": "mysql", "database": "no_such_db",
                                                  "login_host": mariadb.host, "login_port": mariadb.port,
                                                  "login_user": "root", "login_password": mariadb.password,
                                                  "store_path": str(store_path)})[1]
    assert_failed(task, "'no_such_db' does not exist")
    task = run_task("gitops.rollback.db_restore", pg_args(postgres, backed_up, store_path, checkpoint="v9"))[1]
    assert_failed(task, "'v9' is not in", "v1")
    task = run_task("gitops.rollback.db_restore", pg_args(postgres, "other_db", store_path))[1]
    assert_failed(task, "has no backup of postgresql/other_db", "postgresql/" + backed_up)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_damaged_dump_is_refused_before_anything_is_dropped(postgres: PgServer, run_task, store_path: Path,
                                                            backed_up: str, damage: str) -> None:
    manifest = next((store_path / "checkpoints").iterdir())
    blob = next(p for p in (store_path / "objects").rglob("*") if p.is_file())
    if damage == "corrupt":
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.chmod(0o600)
        blob.write_bytes(bytes(data))
    else:
        blob.unlink()
    task = run_task("gitops.rollback.db_restore", pg_args(postgres, backed_up, store_path, mode="replace"))[1]
    assert_failed(task, "is damaged", "hash mismatch" if damage == "corrupt" else "missing", "Nothing was changed")
    assert postgres.psql("SELECT count(*) FROM t", db=backed_up) == "5"
    assert [p.name for p in (store_path / "checkpoints").iterdir()] == [manifest.name], "no safety backup taken"
    info = run_task("gitops.rollback.db_backup_info", {"store_path": str(store_path), "verify": True})[1]
    assert info["backups"][0]["verified"] is False


def test_dump_of_another_engine_is_refused(mariadb: MariaDbServer, run_task, store_path: Path, backed_up: str) -> None:
    mariadb.create_database(backed_up)
    mariadb.sql("CREATE TABLE keep (id INT); INSERT INTO keep VALUES (1)", db=backed_up)
    task = run_task("gitops.rollback.db_restore", {"engine": "mysql", "database": backed_up,
                                                   "login_host": mariadb.host, "login_port": mariadb.port,
                                                   "login_user": "root", "login_password": mariadb.password,
                                                   "store_path": str(store_path), "checkpoint": "v1"})[1]
    assert_failed(task, "holds a postgresql dump", "cannot be restored into mysql")
    assert mariadb.sql("SELECT COUNT(*) FROM keep", db=backed_up) == "1"


def test_second_restore_of_the_same_database_is_refused(postgres: PgServer, run_task, store_path: Path,
                                                        backed_up: str, collections_path: Path) -> None:
    sys.path.insert(0, str(collections_path))
    from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import restore_lock
    from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

    with restore_lock(Store(str(store_path)), "postgresql", backed_up, "alice@ci-job-17", 0):
        task = run_task("gitops.rollback.db_restore", pg_args(postgres, backed_up, store_path))[1]
    assert_failed(task, "locked by alice@ci-job-17", "db_restore postgresql/" + backed_up)
    assert postgres.psql("SELECT count(*) FROM t", db=backed_up) == "5"
    result, task = run_task("gitops.rollback.db_restore", pg_args(postgres, backed_up, store_path))
    assert result.rc == 0, str(result)
    assert postgres.psql("SELECT count(*) FROM t", db=backed_up) == "20"


def test_failed_swap_restore_leaves_the_live_database_untouched(postgres: PgServer, run_task, store_path: Path,
                                                                unique_name) -> None:
    db, role = unique_name("pgswapfail"), unique_name("owner")
    postgres.create_database(db)
    postgres.psql("CREATE ROLE %s; CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO %s; "
                  "INSERT INTO t SELECT generate_series(1, 10)" % (role, role), db=db)
    assert run_task("gitops.rollback.db_backup", pg_args(postgres, db, store_path))[0].rc == 0
    # the dump now names a role the server no longer has: pg_restore fails half-way
    postgres.psql("REASSIGN OWNED BY %s TO postgres; DELETE FROM t WHERE id > 2" % role, db=db)
    postgres.psql("DROP ROLE %s" % role)
    task = run_task("gitops.rollback.db_restore", pg_args(postgres, db, store_path, mode="swap"))[1]
    assert_failed(task, "pg_restore of %s__gr_restore_" % db, "role \"%s\" does not exist" % role,
                  "The live database %s was not touched" % db)
    assert postgres.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM t", db=db) == "1,2"
    assert "__gr_restore_" not in postgres.psql("SELECT string_agg(datname, ',') FROM pg_database")
