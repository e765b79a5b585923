"""A swap restore keeps the previous database under a name no database or file has yet: the name holds the
time to the second, so two restores within one second (a re-run right after a restore, a retry after a kill)
used to meet the first one's kept copy. PostgreSQL refused the second swap ("already exists") after loading
everything; SQLite would have replaced the first kept file."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import List

import psycopg2
import pytest

from harness import MariaDbServer, PgServer

pytestmark = pytest.mark.slow

WINDOW = 20  # seconds of kept-old names taken in advance: the restores below start within them


def kept_names(database: str) -> List[str]:
    """The kept-old names a swap restore would pick in the next WINDOW seconds."""
    now = datetime.now(timezone.utc)
    return ["%s__gr_old_%s" % (database, (now + timedelta(seconds=s)).strftime("%Y%m%dT%H%M%S")) for s in range(WINDOW)]


def pg_run(pg: PgServer, db: str, sql: str) -> list:
    """Run ``sql`` as the superuser on ``db`` in this process (autocommit); return its rows."""
    conn = psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname=db, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description is not None else []
    finally:
        conn.close()


def pg_args(pg: PgServer, db: str, store: Path, **extra: object) -> dict:
    return dict({"engine": "postgresql", "database": db, "login_host": pg.host, "login_port": pg.port,
                 "login_user": pg.user, "client_bin_dir": str(pg.bin_dir), "store_path": str(store)}, **extra)


def test_postgresql_swaps_in_one_second_keep_every_previous_database(postgres: PgServer, run_task, store_path: Path,
                                                                     unique_name) -> None:
    db = unique_name("swapname")
    postgres.create_database(db)
    taken = kept_names(db)
    try:
        postgres.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (1)", db=db)
        assert run_task("gitops.rollback.db_backup", pg_args(postgres, db, store_path, checkpoint="v1"))[0].rc == 0
        for name in taken:  # in this process: one session per database, no psql process per statement
            pg_run(postgres, "postgres", 'CREATE DATABASE "%s"' % name)
            pg_run(postgres, name, "CREATE TABLE mark (name text); INSERT INTO mark VALUES ('%s')" % name)
        kept = []
        for value in (2, 3):
            postgres.psql("UPDATE t SET v = %d" % value, db=db)
            restore_args = pg_args(postgres, db, store_path, checkpoint="v1", mode="swap")
            result, restored = run_task("gitops.rollback.db_restore", restore_args)
            assert result.rc == 0, str(result)
            assert postgres.psql("SELECT v FROM t", db=db) == "1"
            kept.append(restored["restore"]["old_database"])
            assert postgres.psql("SELECT v FROM t", db=kept[-1]) == str(value), "the kept copy is the one replaced"
        assert len(set(kept)) == 2 and not set(kept) & set(taken), kept
        for name in taken:
            assert pg_run(postgres, name, "SELECT name FROM mark") == [(name,)], "a database kept before was touched"
    finally:
        for (name,) in pg_run(postgres, "postgres", "SELECT datname FROM pg_database WHERE datname LIKE '%s%%'" % db):
            pg_run(postgres, "postgres", 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def test_mariadb_swaps_in_one_second_keep_every_previous_database(mariadb: MariaDbServer, run_task, store_path: Path,
                                                                  unique_name) -> None:
    db = unique_name("swapname")
    args = {"engine": "mysql", "database": db, "login_host": mariadb.host, "login_port": mariadb.port,
            "login_user": mariadb.user, "login_password": mariadb.password, "store_path": str(store_path)}
    taken = kept_names(db)
    mariadb.create_database(db)
    try:
        mariadb.sql("CREATE TABLE t (v int); INSERT INTO t VALUES (1)", db=db)
        assert run_task("gitops.rollback.db_backup", dict(args, checkpoint="v1"))[0].rc == 0
        mariadb.sql("".join("CREATE DATABASE `%s`; CREATE TABLE `%s`.mark (name text); INSERT INTO `%s`.mark "
                            "VALUES ('%s');" % (name, name, name, name) for name in taken))  # one client process
        kept = []
        for value in (2, 3):
            mariadb.sql("UPDATE t SET v = %d" % value, db=db)
            result, restored = run_task("gitops.rollback.db_restore", dict(args, checkpoint="v1", mode="swap"))
            assert result.rc == 0, str(result)
            assert mariadb.sql("SELECT v FROM t", db=db).strip() == "1"
            kept.append(restored["restore"]["old_database"])
            assert mariadb.sql("SELECT v FROM t", db=kept[-1]).strip() == str(value), "the kept copy is the one replaced"
        assert len(set(kept)) == 2 and not set(kept) & set(taken), kept
        marks = mariadb.sql(" UNION ALL ".join("SELECT '%s', name FROM `%s`.mark" % (name, name) for name in taken))
        assert sorted(marks.splitlines()) == sorted("%s\t%s" % (name, name) for name in taken), \
            "a database kept before was touched"
    finally:
        names = mariadb.sql("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '%s%%'"
                            % db).split()
        if names:
            mariadb.sql("".join("DROP DATABASE IF EXISTS `%s`;" % name for name in names))


def test_sqlite_swaps_in_one_second_never_replace_a_kept_file(run_task, store_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (v int)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    args = {"engine": "sqlite", "database": str(path), "store_path": str(store_path), "checkpoint": "v1"}
    assert run_task("gitops.rollback.db_backup", args)[0].rc == 0
    taken = {Path(name): ("kept before " + name).encode() for name in kept_names(str(path))}
    for name, content in taken.items():
        name.write_bytes(content)
    kept = []
    conn.close()
    for value in (2, 3):
        with sqlite3.connect(path) as conn:  # the file at ``path`` is a new one after each swap
            conn.execute("UPDATE t SET v = ?", (value,))
        conn.close()
        result, restored = run_task("gitops.rollback.db_restore", dict(args, mode="swap"))
        assert result.rc == 0, str(result)
        kept.append(Path(restored["restore"]["old_database"]))
        assert sqlite3.connect(kept[-1]).execute("SELECT v FROM t").fetchone() == (value,)
    assert sqlite3.connect(path).execute("SELECT v FROM t").fetchone() == (1,)
    assert len(set(kept)) == 2 and not set(kept) & set(taken), kept
    assert {name: name.read_bytes() for name in taken} == taken, "a file kept before was replaced"
