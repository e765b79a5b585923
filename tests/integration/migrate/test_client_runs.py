"""How many database client processes an operation starts, on the real servers (the engine in-process).

Each client run is a process start and a server connection: a migration run used to start 11 (the lock
session, then the history tables created, looked for and read again, the owner row read and written in separate
runs), a MariaDB swap 14. What each run does is unchanged: a fresh database's status creates nothing, an apply
records its versions, a crashed run's lock row is reported, a template database is dropped, a swap restores the
backup's tables, view and trigger and leaves no staging database.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from harness import MariaDbServer, PgServer

pytestmark = pytest.mark.slow

CLIENTS = {"psql", "mariadb", "mysql"}


@pytest.fixture
def client_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The database client processes started in this process (names), counted as they start."""
    started: list[str] = []
    real = subprocess.Popen

    class Counted(real):  # type: ignore[misc,valid-type]
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            name = os.path.basename(str(args[0] if isinstance(args, (list, tuple)) else args))
            if name in CLIENTS:
                started.append(name)
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Counted)
    return started


def api(collections_path: Path) -> Any:
    sys.path.insert(0, str(collections_path))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate, mysql, pg
    from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
    from ansible_collections.gitops.rollback.plugins.module_utils.db.migrate_plan import Params
    return migrate, mysql, pg, DbConnection, Params


def _conn(connection: Any, engine: str, server: Any, name: str) -> Any:
    if engine == "postgresql":
        return connection(engine="postgresql", database=name, host=server.host, port=server.port, user=server.user,
                          client_bin_dir=str(server.bin_dir))
    return connection(engine="mysql", database=name, host=server.host, port=server.port, user=server.user,
                      password=server.password)


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_migration_run_starts_few_clients(engine: str, request: pytest.FixtureRequest, collections_path: Path,
                                            client_runs: list[str], tmp_path: Path) -> None:
    server = request.getfixturevalue("postgres" if engine == "postgresql" else "mariadb")
    sql: Callable[..., str] = server.psql if engine == "postgresql" else server.sql
    migrate, _mysql, _pg, connection, params = api(collections_path)
    name = server.create_database("runs_" + secrets.token_hex(4))
    conn = _conn(connection, engine, server, name)
    folder = tmp_path / "m"
    folder.mkdir()
    for version in (1, 2):
        (folder / ("V%04d__t%d.up.sql" % (version, version))).write_text("CREATE TABLE t%d (id INT);\n" % version)
        (folder / ("V%04d__t%d.down.sql" % (version, version))).write_text("DROP TABLE t%d;\n" % version)

    def run(operation: str) -> tuple[dict, int]:
        client_runs.clear()
        result = migrate.run_operation(params(operation=operation, conn=conn, migrations_dir=str(folder)))
        return result, len(client_runs)

    tables = ("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name LIKE "
              "'gitops_rollback%%'" % ("'public'" if engine == "postgresql" else "DATABASE()"))
    status, runs = run("status")
    assert status["version"] == 0 and runs == 1, (status, client_runs)  # was 2: look for the history, then read it
    assert sql(tables, db=name).strip() == "0"  # a status creates nothing

    applied, runs = run("apply")
    assert applied["version"] == 2 and [m["version"] for m in applied["migrations"]] == [1, 2], applied
    assert runs == 6, client_runs  # was 11
    assert "lock_recovered" not in applied

    # a crashed run's owner row (its server-side lock went with its session): reported, then replaced
    sql("INSERT INTO gitops_rollback_lock (name, owner, host, pid, token, acquired_at, expires_epoch, expires_at) "
        "VALUES ('migrate', 'crashed@elsewhere', 'elsewhere', 42, 'x', '2026-01-01T00:00:00Z', 1, "
        "'2026-01-01T00:00:00Z')", db=name)
    again, runs = run("apply")
    assert again["version"] == 2 and not again["migrations"] and again["lock_recovered"]["owner"] == "crashed@elsewhere"
    assert runs == 4, client_runs  # was 8
    assert sql("SELECT count(*) FROM gitops_rollback_lock", db=name).strip() == "0"  # our row went with the run

    status, runs = run("status")
    assert status["version"] == 2 and runs == 1, (status, client_runs)


def test_postgresql_drop_and_recreate_are_one_client_run_each(postgres: PgServer, collections_path: Path,
                                                              client_runs: list[str]) -> None:
    _migrate, _mysql, pg, connection, _params = api(collections_path)
    name = "tmpl_" + secrets.token_hex(4)
    postgres.psql("CREATE DATABASE %s" % name)
    postgres.psql("ALTER DATABASE %s IS_TEMPLATE true" % name)
    engine = pg.PgEngine(_conn(connection, "postgresql", postgres, "postgres"))
    client_runs.clear()
    engine.recreate(name, {})  # a template is made an ordinary database first, in the same run
    assert client_runs == ["psql"]
    assert postgres.psql("SELECT datistemplate FROM pg_database WHERE datname = '%s'" % name) == "f"
    postgres.psql("ALTER DATABASE %s IS_TEMPLATE true" % name)
    client_runs.clear()
    engine.drop(name)
    engine.drop(name)  # gone: nothing to do, no error
    assert client_runs == ["psql", "psql"]
    assert postgres.psql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % name) == "0"


def test_a_mariadb_swap_starts_six_clients(mariadb: MariaDbServer, collections_path: Path, client_runs: list[str],
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(collections_path))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.db import backup as db_backup
    from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
    _migrate, mysql, _pg, connection, _params = api(collections_path)
    db = mariadb.create_database("swapruns_" + secrets.token_hex(4))
    mariadb.sql("CREATE TABLE t (id INT PRIMARY KEY, v INT); CREATE TABLE log (what VARCHAR(20)); "
                "INSERT INTO t VALUES (1, 10), (2, 20); CREATE VIEW big AS SELECT id FROM t WHERE v > 15; "
                "CREATE TRIGGER t_log AFTER INSERT ON t FOR EACH ROW INSERT INTO log VALUES ('added')", db=db)
    conn = _conn(connection, "mysql", mariadb, db)
    store = Store(str(tmp_path / "store"))
    db_backup.backup(store, db_backup.BackupRequest(conn=conn, checkpoint="v1"), "test", 0)
    mariadb.sql("DROP VIEW big; DROP TRIGGER t_log; DELETE FROM t; CREATE TABLE extra (id INT)", db=db)
    mariadb.sql("CREATE DATABASE `%s__gr_drop`" % db)  # a killed run's leftover: dropped by the swap
    in_swap: list[int] = []
    real = mysql.swap

    def counted(*args: Any) -> None:
        start = len(client_runs)
        real(*args)
        in_swap.append(len(client_runs) - start)

    monkeypatch.setattr(mysql, "swap", counted)
    request = db_backup.RestoreRequest(conn=conn, checkpoint="v1", mode="swap", keep_old=False, safety_backup=False)
    result = db_backup.restore(store, request, "test", 0)

    assert in_swap == [7], client_runs  # was 15: one more than six for the leftover's drop
    assert result["old_database"] is None
    assert mariadb.sql("SELECT id, v FROM t ORDER BY id", db=db) == "1\t10\n2\t20"
    assert mariadb.sql("SELECT id FROM big", db=db) == "2"
    mariadb.sql("INSERT INTO t VALUES (3, 30)", db=db)
    assert mariadb.sql("SELECT what FROM log", db=db) == "added"
    assert mariadb.sql("SHOW TABLES", db=db).split() == ["big", "log", "t"]
    assert [d for d in mariadb.sql("SHOW DATABASES").split() if d.startswith(db + "__gr_")] == []


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_the_migration_version_a_backup_records_is_one_client_run(engine: str, request: pytest.FixtureRequest,
                                                                  collections_path: Path,
                                                                  client_runs: list[str]) -> None:
    server = request.getfixturevalue("postgres" if engine == "postgresql" else "mariadb")
    sql: Callable[..., str] = server.psql if engine == "postgresql" else server.sql
    sys.path.insert(0, str(collections_path))
    from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import recorded_version  # noqa: E501 pylint: disable=import-outside-toplevel
    _migrate, _mysql, _pg, connection, _params = api(collections_path)
    name = server.create_database("recorded_" + secrets.token_hex(4))
    conn = _conn(connection, engine, server, name)
    client_runs.clear()
    assert recorded_version(conn) is None  # no history: nothing recorded (was 2 client runs)
    assert len(client_runs) == 1, client_runs
    sql("CREATE TABLE gitops_rollback_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT "
        "NULL, down_checksum TEXT, down_sql TEXT, applied_at TIMESTAMP NOT NULL, applied_by TEXT, job_id TEXT, "
        "duration_ms BIGINT, label TEXT, state TEXT NOT NULL, direction TEXT NOT NULL); CREATE TABLE "
        "gitops_rollback_labels (label VARCHAR(255) PRIMARY KEY, version BIGINT NOT NULL, labelled_at TIMESTAMP NOT "
        "NULL, labelled_by TEXT); INSERT INTO gitops_rollback_migrations VALUES (3, 'a', 'c', NULL, NULL, "
        "CURRENT_TIMESTAMP, NULL, NULL, NULL, NULL, 'applied', 'up')", db=name)
    client_runs.clear()
    assert recorded_version(conn) == 3  # was 3 client runs
    assert len(client_runs) == 1, client_runs


def test_a_postgresql_swap_is_one_client_run(postgres: PgServer, collections_path: Path, client_runs: list[str],
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(collections_path))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.db import backup as db_backup
    from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
    _migrate, _mysql, pg, connection, _params = api(collections_path)
    db = postgres.create_database("swapruns_" + secrets.token_hex(4))
    postgres.psql("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 10), (2, 20)", db=db)
    conn = _conn(connection, "postgresql", postgres, db)
    store = Store(str(tmp_path / "store"))
    db_backup.backup(store, db_backup.BackupRequest(conn=conn, checkpoint="v1"), "test", 0)
    postgres.psql("DELETE FROM t; CREATE TABLE extra (id int)", db=db)
    # a killed run's pre-restore copy (a template, as the live database may be): dropped by the swap
    postgres.psql("CREATE DATABASE %s__gr_drop" % db)
    postgres.psql("ALTER DATABASE %s__gr_drop IS_TEMPLATE true" % db)
    in_swap: list[int] = []
    real = pg.PgEngine.swap

    def counted(*args: Any, **kwargs: Any) -> None:
        start = len(client_runs)
        real(*args, **kwargs)
        in_swap.append(len(client_runs) - start)

    monkeypatch.setattr(pg.PgEngine, "swap", counted)
    request = db_backup.RestoreRequest(conn=conn, checkpoint="v1", mode="replace", safety_backup=False)
    result = db_backup.restore(store, request, "test", 0)

    assert in_swap == [1], client_runs  # was 5: the leftover's drop (2), the swap, the pre-restore copy's drop (2)
    assert result["old_database"] is None
    assert postgres.psql("SELECT id, v FROM t ORDER BY id", db=db) == "1|10\n2|20"
    assert postgres.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'extra'", db=db) == "0"
    assert postgres.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%s\\_\\_gr\\_%%'" % db) == "0"
