"""The database server stops while db_restore loads a dump (issue 10): PostgreSQL and MariaDB.

A real throwaway PostgreSQL server is stopped (fast or immediate shutdown of the postmaster, by
PID) while pg_restore is copying rows, detected in pg_stat_progress_copy (the failure must show the
copy of the event rows cut; for MariaDB, the ``INSERT INTO `event``` under way). In ``swap`` mode the
live database must be untouched; in ``replace`` mode the failure must name the safety backup,
and restoring that backup must bring the pre-restore state back. In both modes the restore
completes once the server is back.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness import DatabaseError, MariaDbServer, PgServer, run_module_process
from kill_support import MariaDbPoll

pytestmark = [pytest.mark.slow, pytest.mark.deep]

BIG_ROWS = 20_000
"""The event rows in PostgreSQL. Their CHECK constraint (``paced``, restored with the table) sleeps 250 ms
every 1,000 rows in the sessions of a restore the test stops (:data:`PACE`), so pg_restore copies them for
five seconds at little CPU: the test stops the server inside that copy, which the tests assert, however busy
the machine (a one-second window was missed on a busy machine); the stop cuts that wait short. Other loads of
the rows (the template, the restores that must succeed) are not paced."""
FIRST_PAUSE = 1_000
"""The first event row ``paced`` sleeps on; the stop waits until the copy has passed it (the account table, copied
first, has 300 rows: a stop inside its copy once cut the wrong table)."""
PACE = "gitops_test.pace"
"""The role setting that paces ``paced``: on for the superuser's new sessions while a restore is to be stopped."""
MARIA_ROWS = 30_000
"""The event rows in MariaDB: the client loads them in a few multi-row INSERTs, killed inside one."""
LONG_NAME = "shop_" + "x" * 40
"""Too long for the staging names (name + __gr_old_<timestamp> > 63/64 bytes): replace loads in place."""
SCHEMA = f"""
CREATE FUNCTION paced(id bigint) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF id % {FIRST_PAUSE} = 0 AND current_setting('gitops_test.pace', true) = 'on' THEN PERFORM pg_sleep(0.25); END IF;
  RETURN true;
END $$;
CREATE TABLE account (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12, 2) NOT NULL);
INSERT INTO account SELECT g, 'owner ' || g, g * 1.25 FROM generate_series(1, 300) g;
CREATE TABLE event (id bigint PRIMARY KEY CHECK (paced(id)), account_id int NOT NULL, kind text NOT NULL,
                    payload text);
INSERT INTO event SELECT g, 1 + g % 300, (ARRAY['credit', 'debit'])[1 + g % 2], md5(g::text) || md5((g * 7)::text)
  FROM generate_series(1, {BIG_ROWS}) g;
CREATE INDEX event_account ON event (account_id, kind);
"""
CHANGE = """
UPDATE account SET balance = balance + 100, owner = owner || ' (moved)' WHERE id % 3 = 0;
DELETE FROM account WHERE id > 290;
INSERT INTO account VALUES (1000, 'newcomer', 1);
DELETE FROM event WHERE id % 10 = 0;
UPDATE event SET kind = 'refund' WHERE id % 7 = 0;
"""
COPYING_SQL = """
SELECT coalesce(max(p.tuples_processed), 0) FROM pg_stat_progress_copy p
  JOIN pg_stat_activity a ON a.pid = p.pid
 WHERE a.application_name = 'pg_restore' AND p.command = 'COPY FROM' AND a.datname {match}
"""


def snapshot(pg: PgServer, db: str) -> dict:
    """Every account row, and the event table row by row (count and a digest of the ordered rows)."""
    return {
        "account": pg.psql("SELECT row_to_json(a)::text FROM account a ORDER BY id", db=db).split("\n"),
        "event": pg.psql("SELECT count(*) || ' ' || md5(string_agg(row_to_json(e)::text, E'\\n' ORDER BY id)) "
                         "FROM event e", db=db),
    }


def conn(pg: PgServer, db: str, store: Path, **extra: object) -> dict:
    args = {"engine": "postgresql", "database": db, "login_host": pg.host, "login_port": pg.port,
            "login_user": pg.user, "client_bin_dir": str(pg.bin_dir), "store_path": str(store)}
    args.update(extra)
    return args


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.fixture(scope="module")
def pg(postgres: PgServer) -> Iterator[PgServer]:
    """The worker's PostgreSQL server: each test stops it and starts it again; it runs again after each
    test (``prepared``), so the tests that share it afterwards find it as they would have."""
    yield postgres
    try:
        postgres.psql("SELECT 1")
    except DatabaseError:
        postgres.start()


TEMPLATE = "outage_template"


@pytest.fixture(scope="module")
def backups(pg: PgServer, collections_path: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict, dict]]:
    """The big database made once (a template each test copies) and backed up once per database
    name as checkpoint ``v1``: (store by database name, the rows backed up)."""
    pg.create_database(TEMPLATE)
    pg.psql(SCHEMA, db=TEMPLATE)
    stores = {}
    for db in ("shop", LONG_NAME):
        pg.psql("CREATE DATABASE %s TEMPLATE %s" % (ident(db), TEMPLATE))
        store = tmp_path_factory.mktemp("outage-backup") / "store"
        result = run_module_process("gitops.rollback.db_backup", conn(pg, db, store, checkpoint="v1"),
                                    collections_dir=collections_path)
        backup = result.events[-1]["result"]
        assert result.rc == 0 and not backup.get("failed"), str(result)
        assert backup["backup"]["row_counts"] == {"public.account": 300, "public.event": BIG_ROWS}
        pg.drop_database(db)
        stores[db] = store
    yield stores, snapshot(pg, TEMPLATE)
    pg.drop_database(TEMPLATE)


@pytest.fixture
def prepared(request: pytest.FixtureRequest, pg: PgServer, backups: tuple, tmp_path: Path) -> Iterator[tuple]:
    """A database (``shop`` or the indirect parameter) as backed up as checkpoint ``v1``, then changed;
    returns (db, store, backed-up, changed). The server runs again afterwards, without the database."""
    stores, backed_up = backups
    db, store = getattr(request, "param", "shop"), tmp_path / "store"
    pg.psql("CREATE DATABASE %s TEMPLATE %s" % (ident(db), TEMPLATE))
    shutil.copytree(stores[db], store)
    pg.psql(CHANGE, db=db)
    changed = snapshot(pg, db)
    assert changed != backed_up
    try:
        yield db, store, backed_up, changed
    finally:
        try:
            pg.psql("SELECT 1")
        except DatabaseError:
            pg.start()
        pg.psql("ALTER ROLE %s RESET %s" % (ident(pg.user), PACE))
        for name in pg.psql("SELECT datname FROM pg_database WHERE datname LIKE %s" % literal(db + "%")).split():
            pg.drop_database(name)


def restore_with_outage(pg: PgServer, run_task: Callable, args: dict, target_match: str,
                        sig: int) -> tuple[dict, float]:
    """Run db_restore in the background; stop the server with ``sig`` once pg_restore copies rows.

    Returns (task result, seconds from the stop to the end of the task).
    """
    watcher = subprocess.Popen([pg.bin("psql"), "-X", "-q", "-A", "-t", "-h", pg.host, "-p", str(pg.port),
                                "-U", pg.user, "-d", "postgres"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=pg.env())
    assert watcher.stdin is not None and watcher.stdout is not None
    poll = " ".join(COPYING_SQL.format(match=target_match).split()) + ";\n"  # one session: a poll takes ~1 ms
    pg.psql("ALTER ROLE %s SET %s = 'on'" % (ident(pg.user), PACE))  # the restore's sessions copy paced
    box: list = []
    worker = threading.Thread(target=lambda: box.append(run_task("gitops.rollback.db_restore", args)[1]))
    worker.start()
    deadline = time.monotonic() + 300
    try:
        while True:
            assert worker.is_alive(), "the restore ended before the server was stopped: %s" % box
            assert time.monotonic() < deadline, "pg_restore never started copying rows"
            watcher.stdin.write(poll)
            watcher.stdin.flush()
            copied = int(watcher.stdout.readline().strip() or 0)
            if copied >= FIRST_PAUSE:  # past the account table's 300 rows: inside the event rows' copy
                break
            time.sleep(0.005)
        pg.halt(sig)
    finally:
        watcher.kill()
        watcher.communicate()
    assert copied < BIG_ROWS, "pg_restore had copied every row (%d) before the stop" % copied
    stopped = time.monotonic()
    worker.join(timeout=300)
    assert box, "db_restore did not return"
    message = box[0].get("msg", "")
    assert "PQputCopyData" in message or 'COPY failed for table "event"' in message, \
        "the stop did not cut the copy of the event rows: %s" % box[0]
    return box[0], time.monotonic() - stopped


def start_unpaced(pg: PgServer) -> None:
    """Start the server stopped inside a restore; the restores that follow load the rows unpaced."""
    pg.start()
    pg.psql("ALTER ROLE %s RESET %s" % (ident(pg.user), PACE))


def test_swap_restore_with_the_server_stopped_leaves_the_live_database_untouched(pg: PgServer, run_task,
                                                                                 prepared: tuple) -> None:
    db, store, backed_up, changed = prepared
    args = conn(pg, db, store, checkpoint="v1", mode="swap")
    task, after_stop = restore_with_outage(pg, run_task, args, "LIKE %s" % literal(db + "__gr_restore_%"),
                                           signal.SIGINT)
    assert task["status"] == "ignored", task
    message = task["msg"]
    print("%s: failed %.1f s after the stop: %s" % (args["mode"], after_stop, message))
    for phrase in ("while loading the dump into the staged copy %s__gr_restore_" % db,
                   "pg_restore of %s__gr_restore_" % db,
                   "no longer answers",
                   "The live database %s was not touched" % db,
                   "run the restore again once the server is back"):
        assert phrase in message, message
    assert task["stage"] == "load" and task["live_database_touched"] is False, task
    assert after_stop < 60, "the failure took %.1f s to be reported" % after_stop

    start_unpaced(pg)
    assert snapshot(pg, db) == changed
    _result, again = run_task("gitops.rollback.db_restore", args)
    assert again["status"] == "ok", again
    assert again["restore"]["verification"]["matched"] is True
    assert snapshot(pg, db) == backed_up
    assert "__gr_restore_" not in pg.psql("SELECT string_agg(datname, ',') FROM pg_database")


@pytest.mark.parametrize("prepared", ["shop", LONG_NAME], indirect=True)
def test_replace_restore_with_the_server_stopped_names_the_safety_backup(pg: PgServer, run_task,
                                                                         prepared: tuple) -> None:
    db, store, backed_up, changed = prepared
    in_place = db == LONG_NAME  # else replace mode loads beside the live database, then renames it in
    args = conn(pg, db, store, checkpoint="v1", mode="replace")
    target = "= %s" % literal(db) if in_place else "LIKE %s" % literal(db + "__gr_restore_%")
    task, after_stop = restore_with_outage(pg, run_task, args, target, signal.SIGQUIT)
    assert task["status"] == "ignored", task
    safety = task["safety_checkpoint"]
    assert safety and (store / "checkpoints" / (safety + ".json")).exists(), task
    message = task["msg"]
    where = " in place" if in_place else ""
    print("%s%s: failed %.1f s after the stop: %s" % (args["mode"], where, after_stop, message))
    if in_place:
        phrases = ("while loading the dump into %s:" % db, "may hold a partial restore",
                   "its previous state is in safety checkpoint %s (restore it with checkpoint=%s)" % (safety, safety))
    else:
        phrases = ("while loading the dump into the staged copy %s__gr_restore_" % db,
                   "The live database %s was not touched" % db, "safety checkpoint %s also holds it" % safety)
    for phrase in phrases + ("no longer answers", "run the restore again once the server is back"):
        assert phrase in message, message
    assert task["stage"] == "load" and task["live_database_touched"] is in_place, task
    assert after_stop < 60, "the failure took %.1f s to be reported" % after_stop

    start_unpaced(pg)
    if in_place:
        tables = pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", db=db)
        assert tables == "0", "the interrupted single-transaction restore left %s tables" % tables
    else:
        assert snapshot(pg, db) == changed
    _result, undone = run_task("gitops.rollback.db_restore", conn(pg, db, store, checkpoint=safety, mode="replace"))
    assert undone["status"] == "ok", undone
    assert snapshot(pg, db) == changed, "the safety checkpoint holds the pre-restore state"
    _result, again = run_task("gitops.rollback.db_restore", args)
    assert again["status"] == "ok", again
    assert again["restore"]["verification"]["matched"] is True
    assert snapshot(pg, db) == backed_up
    assert "__gr_" not in pg.psql("SELECT string_agg(datname, ',') FROM pg_database")


# ------------------------------------------------------------------------------------ MariaDB
MARIA_SCHEMA = f"""
CREATE TABLE account (id int PRIMARY KEY, owner varchar(80) NOT NULL, balance decimal(12, 2) NOT NULL);
INSERT INTO account SELECT seq, CONCAT('owner ', seq), seq * 1.25 FROM seq_1_to_300;
CREATE TABLE event (id bigint PRIMARY KEY, account_id int NOT NULL, kind varchar(10) NOT NULL, payload text,
                    KEY event_account (account_id, kind));
INSERT INTO event SELECT seq, 1 + seq % 300, IF(seq % 2, 'debit', 'credit'), CONCAT(MD5(seq), MD5(seq * 7))
  FROM seq_1_to_{MARIA_ROWS};
"""
MARIA_CHANGE = """
UPDATE account SET balance = balance + 100, owner = CONCAT(owner, ' (moved)') WHERE id % 3 = 0;
DELETE FROM account WHERE id > 290;
INSERT INTO account VALUES (1000, 'newcomer', 1);
DELETE FROM event WHERE id % 10 = 0;
UPDATE event SET kind = 'refund' WHERE id % 7 = 0;
"""
MARIA_LOADING_SQL = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                     "WHERE DB {match} AND INFO LIKE 'INSERT INTO `event`%%'")


def maria_snapshot(server: MariaDbServer, db: str) -> dict:
    """Every account row, and the event table row by row (count, sum and xor of per-row CRC32)."""
    return {
        "account": server.sql("SELECT id, owner, balance FROM account ORDER BY id", db=db).split("\n"),
        "event": server.sql("SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, account_id, kind, payload))), "
                            "BIT_XOR(CRC32(CONCAT_WS('|', id, account_id, kind, payload))) FROM event", db=db),
    }


def maria_conn(server: MariaDbServer, db: str, store: Path, **extra: object) -> dict:
    args = {"engine": "mysql", "database": db, "login_host": server.host, "login_port": server.port,
            "login_user": server.user, "login_password": server.password, "store_path": str(store)}
    args.update(extra)
    return args


@pytest.fixture(scope="module")
def maria_server(mariadb: MariaDbServer) -> MariaDbServer:
    """The worker's MariaDB server: each test kills it and starts it again (``maria``)."""
    return mariadb


@pytest.fixture
def maria(maria_server: MariaDbServer) -> Iterator[MariaDbServer]:
    """The module's MariaDB server, running again after the test, without the test's databases."""
    yield maria_server
    if maria_server.process is None:
        maria_server.start()
    for name in maria_server.sql("SHOW DATABASES").split():
        if name.startswith("shop"):  # the test's database and any staged copy a failed test left
            maria_server.drop_database(name)


@pytest.mark.parametrize("mode,db", [("swap", "shop"), ("replace", "shop"), ("replace", LONG_NAME)])
def test_mariadb_killed_mid_restore(maria: MariaDbServer, run_task, tmp_path: Path, mode: str, db: str) -> None:
    store = tmp_path / "store"
    in_place = db == LONG_NAME  # else both modes load beside the live database
    maria.create_database(db)
    maria.sql(MARIA_SCHEMA, db=db)
    backed_up = maria_snapshot(maria, db)
    result, _backup = run_task("gitops.rollback.db_backup", maria_conn(maria, db, store, checkpoint="v1"))
    assert result.rc == 0, str(result)
    maria.sql(MARIA_CHANGE, db=db)
    changed = maria_snapshot(maria, db)
    args = maria_conn(maria, db, store, checkpoint="v1", mode=mode)
    match = "= '%s'" % db if in_place else "LIKE '%s__gr_restore_%%'" % db

    box: list = []
    worker = threading.Thread(target=lambda: box.append(run_task("gitops.rollback.db_restore", args)[1]))
    with MariaDbPoll(maria) as watcher:  # one session: a poll takes ~1 ms
        worker.start()
        deadline = time.monotonic() + 300
        while int(watcher.value(MARIA_LOADING_SQL.format(match=match)) or 0) == 0:
            assert worker.is_alive(), "the restore ended before the server was killed: %s" % box
            assert time.monotonic() < deadline, "the restore never started loading rows"
            time.sleep(0.02)
        maria.halt(signal.SIGKILL)
    killed = time.monotonic()
    worker.join(timeout=300)
    task = box[0]
    message = task["msg"]
    where = " in place" if in_place else ""
    print("mariadb %s%s: failed %.1f s after the kill: %s" % (mode, where, time.monotonic() - killed, message))
    assert task["status"] == "ignored" and task["stage"] == "load", task
    assert task["live_database_touched"] is in_place, task
    assert "while loading the dump into" in message and "no longer answers" in message, message
    assert "INSERT INTO `event`" in message and "Lost connection to server during query" in message, \
        "the kill did not cut the load of the event rows: %s" % message
    safety = task["safety_checkpoint"]
    if in_place:
        assert safety and "restore it with checkpoint=%s" % safety in message, message
    else:
        assert "The live database %s was not touched" % db in message, message

    maria.start()
    if in_place:
        _result, undone = run_task("gitops.rollback.db_restore", maria_conn(maria, db, store, checkpoint=safety))
        assert undone["status"] == "ok", undone
    assert maria_snapshot(maria, db) == changed
    _result, again = run_task("gitops.rollback.db_restore", args)
    assert again["status"] == "ok", again
    assert maria_snapshot(maria, db) == backed_up
    assert "__gr_restore_" not in maria.sql("SHOW DATABASES")
