"""SIGKILL at seeded random points of MariaDB db_restore (replace and swap) and db_migrate revert.

Restore: the live database is exactly the pre-restore content or exactly the backup, row by row
(tables, columns, rows, views and triggers); a staged copy or a moved-out copy of the killed run
does not outlive the next run, and that run (through ansible-playbook) restores the backup.
One intermediate state is documented (``db.mysql_swap`` module docstring) and accepted as the phase
``moved``: MariaDB cannot move a table with triggers to another schema, nor create triggers or
views in one statement with a rename, so for the milliseconds between the swap's single
``RENAME TABLE`` and the re-creation of the views and triggers (one client session), every table
holds exactly the backup's rows and only some of the backup's views and triggers exist. Any
other mix fails, and the re-run must complete it.

Migrate revert: MariaDB cannot roll back DDL, so a revert killed inside a migration leaves it
recorded ``dirty``. The history and the schema must then agree with a prefix of that migration's
down script (never a half statement), the re-run must refuse with the documented recovery steps,
and following them (finish the down script by hand, ``operation=resolve``, run again) reaches the
target version with the expected schema.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from harness import MariaDbServer
from kill_support import MariaDbPoll, Tally, kill_group_after, kill_points, phase_of, start_engine, timed
from test_kill_migrate import MIGRATE, ROWS, STEPS, TARGET, expected, write_migrations

pytestmark = [pytest.mark.slow, pytest.mark.deep]

POINTS = 3
RESTORE = """
import json, sys
from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import RestoreRequest, restore
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
args = json.loads(sys.argv[1])
request = RestoreRequest(conn=DbConnection.from_params(args), checkpoint=args["checkpoint"], mode=args["mode"],
                         keep_old=args.get("keep_old", True))
restore(Store(args["store_path"]), request, "killer@test", 0)
print("done")
"""

SCHEMA = """
CREATE TABLE customer (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL) DEFAULT CHARSET = utf8mb4;
CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, note VARCHAR(64), amount DECIMAL(12, 2),
                     KEY orders_customer (customer_id),
                     FOREIGN KEY (customer_id) REFERENCES customer (id)) DEFAULT CHARSET = utf8mb4;
CREATE TABLE log (id BIGINT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100)) DEFAULT CHARSET = utf8mb4;
CREATE VIEW big_spenders AS SELECT customer_id, SUM(amount) AS total FROM orders GROUP BY customer_id;
CREATE TRIGGER orders_log AFTER INSERT ON orders FOR EACH ROW INSERT INTO log (what) VALUES (CONCAT('order ', NEW.id));
INSERT INTO customer SELECT seq, CONCAT('customer ', seq, ' \u00fc\u2713') FROM seq_1_to_2000;
INSERT INTO orders SELECT seq, 1 + seq % 2000, MD5(seq), seq * 1.5 FROM seq_1_to_15000;
INSERT INTO log (what) SELECT CONCAT('event ', seq) FROM seq_1_to_5000;
"""

DAMAGE = """
UPDATE orders SET note = 'changed', amount = 0 WHERE id % 7 = 0;
DELETE FROM orders WHERE id > 14000;
INSERT INTO customer VALUES (99999, 'intruder');
DROP VIEW big_spenders;
CREATE TABLE extra (id INT PRIMARY KEY);
INSERT INTO extra VALUES (1), (2);
"""


def quote(name: str) -> str:
    """Quote a MariaDB identifier."""
    return "`" + name.replace("`", "``") + "`"


def text(value: str) -> str:
    """Quote a MariaDB string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


SETTLED = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
           "AND COMMAND NOT IN ('Daemon', 'Binlog Dump') AND USER NOT IN ('system user', 'event_scheduler')")
MARK = "\x1e"
"""Starts a line that names the next result in a batch of queries run by one client process."""


def my_batch(server: MariaDbServer, queries: Dict[str, str], db: Optional[str] = None) -> Dict[str, str]:
    """{name: tab-separated rows} of several queries run by one mariadb client process (one per check,
    not one per query)."""
    script = "".join("SELECT '%s%s';\n%s;\n" % (MARK, name, sql) for name, sql in queries.items())
    found: Dict[str, List[str]] = {}
    rows: List[str] = []
    for line in server.sql(script, db=db).split("\n"):
        if line.startswith(MARK):
            rows = found.setdefault(line[len(MARK):], [])
        else:
            rows.append(line)
    return {name: "\n".join(found.get(name, [])) for name in queries}


def my_settle(server: MariaDbServer, timeout: float = 60, queries: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Wait until the statements of killed clients have ended (the server notices a dead client late);
    ``queries`` run in the same client process as the last check, their results returned."""
    deadline = time.monotonic() + timeout
    while True:
        found = my_batch(server, dict({"settled": SETTLED}, **(queries or {})))
        if found["settled"].strip() == "0":
            return found
        assert time.monotonic() < deadline, "sessions of the killed run never ended"
        time.sleep(0.05)


def my_databases(server: MariaDbServer, prefix: str) -> List[str]:
    """Names of databases starting with ``prefix``."""
    return server.sql(databases_like(prefix)).split()


def databases_like(prefix: str) -> str:
    """The query of :func:`my_databases`."""
    return ("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE LEFT(SCHEMA_NAME, %d) = %s ORDER BY 1"
            % (len(prefix), text(prefix)))


def my_fingerprint(server: MariaDbServer, db: str) -> Optional[Dict[str, str]]:
    """{table: sha256 of its columns and every row, ordered by key; "objects": views and triggers},
    or None when ``db`` does not exist. Equal only when every table holds exactly the same rows.
    Two client processes: the catalogue, then every table's rows."""
    catalogue = my_settle(server, queries={
        "databases": databases_like(db),
        "columns": "SELECT c.TABLE_NAME, GROUP_CONCAT(c.COLUMN_NAME, ' ', c.COLUMN_TYPE ORDER BY c.ORDINAL_POSITION) "
                   "FROM information_schema.COLUMNS c JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = "
                   "c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME WHERE c.TABLE_SCHEMA = %s AND t.TABLE_TYPE = "
                   "'BASE TABLE' GROUP BY c.TABLE_NAME ORDER BY 1" % text(db)})
    if db not in catalogue["databases"].split():
        return None
    columns = dict(line.split("\t", 1) for line in catalogue["columns"].splitlines())
    queries = {table: "SELECT * FROM %s.%s ORDER BY 1" % (quote(db), quote(table)) for table in columns}
    queries[MARK] = (
        "SELECT CONCAT('view ', TABLE_NAME) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s UNION ALL "
        "SELECT CONCAT('trigger ', TRIGGER_NAME) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
        "ORDER BY 1" % (text(db), text(db)))
    rows = my_batch(server, queries)
    found = {table: hashlib.sha256((columns[table] + "\n" + rows[table]).encode("utf-8")).hexdigest()
             for table in columns}
    found["objects"] = rows[MARK].replace("\n", ", ")
    return found


def restore_phase(now: Optional[Dict[str, str]], old: Dict[str, str], new: Dict[str, str]) -> str:
    """``old``, ``new``, or ``moved``: the backup's tables all in place with only some of its views
    and triggers re-created yet (the swap's documented window); anything else fails."""
    if now and now != new and {k: v for k, v in now.items() if k != "objects"} == \
            {k: v for k, v in new.items() if k != "objects"}:
        present = {name for name in now["objects"].split(", ") if name}
        if present < {name for name in new["objects"].split(", ") if name}:
            return "moved"
    return phase_of(now, old, new)


def my_copy_database(server: MariaDbServer, source: str, target: str) -> None:
    """Replace ``target`` by a copy of ``source`` (tables, rows, views, triggers) through mariadb-dump."""
    server.drop_database(target)
    server.create_database(target)
    env = {"MYSQL_PWD": server.password, "PATH": "/usr/bin:/bin"}
    login = ["--no-defaults", "--protocol=TCP", "-h", server.host, "-P", str(server.port), "-u", server.user]
    dump = subprocess.run(["mariadb-dump", *login, "--single-transaction", "--triggers", "--skip-comments", source],
                          capture_output=True, env=env, check=False)
    assert dump.returncode == 0, dump.stderr
    load = subprocess.run(["mariadb", *login, "--binary-mode", target], input=dump.stdout, capture_output=True,
                          env=env, check=False)
    assert load.returncode == 0, load.stderr


def plain_tables(server: MariaDbServer, db: str) -> List[str]:
    """The tables of ``db``, asserting it holds nothing else a table copy would miss (views, triggers,
    routines, foreign keys): what the migrations of the revert test make."""
    found = my_batch(server, {
        "tables": "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                  "AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1" % text(db),
        "others": "SELECT CONCAT('view ', TABLE_NAME) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s "
                  "UNION ALL SELECT CONCAT('trigger ', TRIGGER_NAME) FROM information_schema.TRIGGERS "
                  "WHERE TRIGGER_SCHEMA = %s UNION ALL SELECT CONCAT('routine ', ROUTINE_NAME) FROM "
                  "information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s UNION ALL SELECT CONCAT('foreign key ', "
                  "CONSTRAINT_NAME) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s"
                  % ((text(db),) * 4)})
    assert found["others"] == "", "a table copy would miss: %s" % found["others"]
    return found["tables"].split()


def my_copy_tables(server: MariaDbServer, source: str, target: str, tables: List[str]) -> None:
    """Replace ``target`` by a copy of ``source``'s ``tables`` (see :func:`plain_tables`), inside the server
    in one client process (no dump to load)."""
    server.sql("DROP DATABASE IF EXISTS %s; CREATE DATABASE %s; " % (quote(target), quote(target)) + "".join(
        "CREATE TABLE %s.%s LIKE %s.%s; INSERT INTO %s.%s SELECT * FROM %s.%s; "
        % (quote(target), quote(t), quote(source), quote(t), quote(target), quote(t), quote(source), quote(t))
        for t in tables))


def my_args(server: MariaDbServer, db: str, store: Path, **extra: object) -> dict:
    args = {"engine": "mysql", "database": db, "login_host": server.host, "login_port": server.port,
            "login_user": server.user, "login_password": server.password, "store_path": str(store)}
    args.update(extra)
    return args


@pytest.mark.parametrize("mode", ["replace", "swap"])
def test_mariadb_restore_killed_at_random_points_is_old_or_new(mariadb: MariaDbServer, run_task,
                                                               collections_path: Path, tmp_path: Path,
                                                               mode: str) -> None:
    db = "kill_%s_%s" % (mode, secrets.token_hex(3))
    template = db + "_old"
    mariadb.create_database(db)
    try:
        mariadb.sql(SCHEMA, db=db)
        new = my_fingerprint(mariadb, db)
        base = my_args(mariadb, db, tmp_path / "store")
        backup = run_task("gitops.rollback.db_backup", dict(base, checkpoint="good"))[1]
        assert backup["status"] == "ok", backup
        mariadb.sql(DAMAGE, db=db)
        old = my_fingerprint(mariadb, db)
        assert old != new and set(old) == set(new) | {"extra"}
        my_copy_database(mariadb, db, template)
        # swap keeps no old copy here, so a run's leftovers are exactly what the kills left
        args = dict(base, checkpoint="good", mode=mode, keep_old=False)
        # the shorter of two unkilled runs (the first pays for cold caches), so kill points land in a run
        duration = min(timed(start_engine(collections_path, RESTORE, json.dumps(args))) for _run in range(2))
        assert my_fingerprint(mariadb, db) == new
        print("KILL db_restore mariadb %s: unkilled run %.3fs" % (mode, duration))
        tally = Tally("db_restore mariadb %s" % mode)
        for delay in kill_points(2000 + len(mode), POINTS, duration, tail=1):
            my_copy_database(mariadb, template, db)
            assert my_fingerprint(mariadb, db) == old
            killed = kill_group_after(start_engine(collections_path, RESTORE, json.dumps(args)), delay)
            tally.add(delay, killed, restore_phase(my_fingerprint(mariadb, db), old, new))
            done = run_task("gitops.rollback.db_restore", args)[1]
            assert done["status"] == "ok", done
            assert my_fingerprint(mariadb, db) == new, "the re-run did not restore every row"
            assert my_databases(mariadb, db + "__gr_") == [], "a staged or moved-out copy outlived the re-run"
        tally.summary()
    finally:
        for name in [db, template] + my_databases(mariadb, db + "__gr_"):
            mariadb.drop_database(name)


def my_waiting(server: MariaDbServer, prefix: str, timeout: float = 180) -> None:
    """Wait until a statement starting with ``prefix`` waits for a metadata lock."""
    deadline = time.monotonic() + timeout
    with MariaDbPoll(server) as watcher:
        while watcher.value("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'Waiting for table "
                            "metadata lock' AND INFO LIKE %s" % text(prefix + "%")).strip() == "0":
            assert time.monotonic() < deadline, "no %s ever waited for the held lock" % prefix
            time.sleep(0.05)


def test_mariadb_swap_killed_while_the_move_waits_for_a_lock_is_moved(
        mariadb: MariaDbServer, run_task, collections_path: Path, tmp_path: Path) -> None:
    """Another session reads a live table without triggers, so the swap's RENAME TABLE waits for its
    metadata lock after the live triggers were dropped; the client is killed then, and the server
    notices the dead client while the wait goes on. The move still happens once the lock is free:
    the live database is ``moved`` (backup tables, triggers not yet re-created), never the previous
    tables without their triggers, and the next run completes the restore."""
    db = "killwait_%s" % secrets.token_hex(3)
    mariadb.create_database(db)
    holder = None
    try:
        mariadb.sql(SCHEMA, db=db)
        new = my_fingerprint(mariadb, db)
        base = my_args(mariadb, db, tmp_path / "store")
        assert run_task("gitops.rollback.db_backup", dict(base, checkpoint="good"))[1]["status"] == "ok"
        mariadb.sql(DAMAGE, db=db)
        old = my_fingerprint(mariadb, db)
        holder = subprocess.Popen(["mariadb", *mariadb.client_args(), "-N", "-B"], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, env={"MYSQL_PWD": mariadb.password, "PATH": "/usr/bin:/bin"})
        holder.stdin.write(("BEGIN; SELECT COUNT(*) FROM %s.log;\n" % quote(db)).encode("utf-8"))
        holder.stdin.flush()
        args = dict(base, checkpoint="good", mode="swap", keep_old=False)
        run = start_engine(collections_path, RESTORE, json.dumps(args))
        my_waiting(mariadb, "RENAME TABLE")
        assert kill_group_after(run, 0), "the restore ended while its move waited for the held lock"
        # the server checks every second whether a waiting statement's client is gone, and fails the wait:
        # 1.5 s holds at least one such check (the block must retry the move, not give it up)
        time.sleep(1.5)
        holder.communicate(b"COMMIT;\n", timeout=60)
        holder = None
        now = my_fingerprint(mariadb, db)
        assert restore_phase(now, old, new) == "moved", now
        done = run_task("gitops.rollback.db_restore", args)[1]
        assert done["status"] == "ok", done
        assert my_fingerprint(mariadb, db) == new, "the re-run did not restore every row, view and trigger"
        assert my_databases(mariadb, db + "__gr_") == [], "a staged or moved-out copy outlived the re-run"
    finally:
        if holder is not None:
            holder.kill()
            holder.communicate()
        for name in [db] + my_databases(mariadb, db + "__gr_"):
            mariadb.drop_database(name)


# ------------------------------------------------------------------------------ migrate revert
Shape = Tuple[int, Tuple[str, ...], Tuple[str, ...], int]


def my_history(server: MariaDbServer, db: str) -> List[Tuple[int, str, str]]:
    """(version, state, direction) of every history row."""
    return history_rows(server.sql(HISTORY, db=db))


HISTORY = "SELECT version, state, direction FROM gitops_rollback_migrations ORDER BY version"


def history_rows(out: str) -> List[Tuple[int, str, str]]:
    """The rows of :data:`HISTORY`."""
    return [(int(v), s, d) for v, s, d in (line.split("\t") for line in out.splitlines())]


def schema_queries(db: str) -> Dict[str, str]:
    """The queries of :func:`my_schema`."""
    return {"tables": "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                      "AND TABLE_NAME NOT LIKE 'gitops\\_rollback\\_%%'" % text(db),
            "columns": "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                       "AND TABLE_NAME = 'big'" % text(db),
            "total": "SELECT SUM(val) FROM big"}


def schema_of(found: Dict[str, str]) -> Tuple[Tuple[str, ...], Tuple[str, ...], int]:
    """(tables, columns of big, sum of big.val) from the results of :func:`schema_queries`."""
    return tuple(sorted(found["tables"].split())), tuple(sorted(found["columns"].split())), int(found["total"])


def my_schema(server: MariaDbServer, db: str) -> Tuple[Tuple[str, ...], Tuple[str, ...], int]:
    """(tables, columns of big, sum of big.val), one client process."""
    return schema_of(my_batch(server, schema_queries(db), db=db))


def down_steps(version: int) -> List[Tuple[str, Shape]]:
    """The statements of V<version>'s down script with the shape after each (its prefixes)."""
    _v, tables, columns, total = expected(version)
    lowered = total - ROWS * version
    no_column = tuple(c for c in columns if c != "c%d" % version)
    no_table = tuple(t for t in tables if t != "t%d" % version)
    return [("UPDATE big SET val = val - %d" % version, (version, tables, columns, lowered)),
            ("ALTER TABLE big DROP COLUMN c%d" % version, (version, tables, no_column, lowered)),
            ("DROP TABLE t%d" % version, (version, no_table, no_column, lowered))]


def test_mariadb_revert_killed_at_random_points_follows_the_dirty_recovery(
        mariadb: MariaDbServer, run_task, collections_path: Path, tmp_path: Path) -> None:
    db = "killmig_%s" % secrets.token_hex(3)
    saved = db + "_applied"
    mariadb.create_database(db)
    conn = {"engine": "mysql", "database": db, "login_host": mariadb.host, "login_port": mariadb.port,
            "login_user": mariadb.user, "login_password": mariadb.password}
    base = dict(conn, migrations_dir=str(write_migrations(tmp_path / "migrations")))
    try:
        timed(start_engine(collections_path, MIGRATE, json.dumps(dict(base, operation="apply", version="0"))))
        mariadb.sql("INSERT INTO big SELECT seq, seq FROM seq_1_to_%d" % ROWS, db=db)
        timed(start_engine(collections_path, MIGRATE, json.dumps(dict(base, operation="apply"))))
        assert my_schema(mariadb, db) == expected(STEPS)[1:]
        tables = plain_tables(mariadb, db)
        my_copy_tables(mariadb, db, saved, tables)
        revert = dict(base, operation="revert", version=str(TARGET))
        duration = timed(start_engine(collections_path, MIGRATE, json.dumps(revert)))
        assert my_schema(mariadb, db) == expected(TARGET)[1:]
        tally, dirty = Tally("db_migrate revert mariadb"), 0
        for delay in kill_points(41, POINTS, duration):
            my_copy_tables(mariadb, saved, db, tables)
            killed = kill_group_after(start_engine(collections_path, MIGRATE, json.dumps(revert)), delay)
            phase = check_killed_revert(mariadb, db)
            if phase.startswith("dirty"):
                dirty += 1
                recover_dirty(mariadb, db, run_task, revert)
            tally.add(delay, killed, phase)
            done = run_task("gitops.rollback.db_migrate", revert)[1]
            assert done["status"] == "ok", done
            assert done["version"] == TARGET and my_schema(mariadb, db) == expected(TARGET)[1:], done
            assert [row[1] for row in my_history(mariadb, db)] == ["applied"] * (TARGET + 1)
        tally.summary()
        print("KILL-SUMMARY db_migrate revert mariadb dirty and recovered by the documented steps: %d" % dirty)
    finally:
        for name in (db, saved):
            mariadb.drop_database(name)


def check_killed_revert(server: MariaDbServer, db: str) -> str:
    """Assert history and schema agree after a kill (read together once the killed run's statements ended);
    return the phase (old, new, between, dirty Vn after k)."""
    queries = {name: sql.replace("FROM big", "FROM %s.big" % quote(db)) for name, sql in schema_queries(db).items()}
    queries["history"] = HISTORY.replace("FROM gitops", "FROM %s.gitops" % quote(db))
    found = my_settle(server, queries=queries)
    history = history_rows(found["history"])
    versions = [v for v, _s, _d in history]
    assert versions == list(range(len(versions))), history
    top, state, direction = history[-1]
    assert all(s == "applied" for _v, s, _d in history[:-1]), history
    shape = (top,) + schema_of(found)
    if state == "applied":
        assert shape == expected(top), "schema or data disagree with history version %d: %r" % (top, shape)
        return "old" if top == STEPS else "new" if top == TARGET else "between"
    assert direction == "down", history
    prefixes = [expected(top)] + [after for _sql, after in down_steps(top)]
    assert shape in prefixes, "V%d is dirty but the schema is no prefix of its down script: %r" % (top, shape)
    return "dirty V%d after %d of 3 statements" % (top, prefixes.index(shape))


def recover_dirty(server: MariaDbServer, db: str, run_task, revert: dict) -> None:
    """Follow the documented recovery: the re-run refuses naming the steps; finish the down script by
    hand, resolve as reverted through ansible-playbook."""
    top = my_history(server, db)[-1][0]
    refused = run_task("gitops.rollback.db_migrate", revert)[1]
    assert refused["status"] in ("failed", "ignored"), (refused["status"], refused.get("msg"), refused.get("dirty"))
    name = "V%04d__step_%d" % (top, top)
    for hint in ("is dirty", name, "cannot roll back DDL", "finish or undo the half-done statements by hand",
                 "operation=resolve version=%d resolve_as=applied" % top, "resolve_as=reverted"):
        assert hint in refused["msg"], (hint, refused["msg"])
    shape = (top,) + my_schema(server, db)
    prefixes = [expected(top)] + [after for _sql, after in down_steps(top)]
    for statement, _after in down_steps(top)[prefixes.index(shape):]:
        server.sql(statement, db=db)
    assert (top,) + my_schema(server, db) == down_steps(top)[-1][1]
    resolved = run_task("gitops.rollback.db_migrate", dict(revert, operation="resolve", version=str(top),
                                                           resolve_as="reverted"))[1]
    assert resolved["status"] == "ok" and resolved["changed"], resolved
