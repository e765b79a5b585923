"""What db_migrate refuses, and how it recovers: checksum drift, irreversible crossings (naming the
checkpoint backup), MariaDB dirty state, locks held by live, dead and expired owners,
verify_reversible, and a migration interrupted by killing its client on each engine."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psycopg2
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.deep]


def up_down(directory: Path, version: int, name: str, up: str, down: str | None) -> None:
    """Write one migration (no down file when ``down`` is None)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ("V%04d__%s.up.sql" % (version, name))).write_text(up)
    if down is not None:
        (directory / ("V%04d__%s.down.sql" % (version, name))).write_text(down)


def test_drift_refuses_revert_and_apply_until_repaired(new_target, migrate, write_chain, tmp_path: Path) -> None:
    target = new_target("postgresql")
    migrations = write_chain(tmp_path / "m", "postgresql", 3)
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations), version="2")
    assert ok, run
    before_3 = target.schema()
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations))
    assert ok and res["version"] == 3, run
    before = target.schema()
    down = migrations / "V0003__step_3.down.sql"
    down.write_text("-- edited after it was applied\n" + down.read_text())

    ok, res, run = migrate(target, operation="revert", migrations_dir=str(migrations), count=1)
    assert not ok
    assert "Checksum drift" in res["msg"] and "V0003__step_3.down.sql" in res["msg"] and "force=true" in res["msg"]
    assert target.history()[-1] == (3, "applied") and target.schema() == before

    ok, res, run = migrate(target, operation="status", migrations_dir=str(migrations))
    assert res["drift"] == [{"version": 3, "name": "step_3", "files": ["V0003__step_3.down.sql"]}]

    # an apply refuses the drift too, unless allow_drift; repair would accept the reviewed change
    (migrations / "V0004__step_4.up.sql").write_text("CREATE TABLE t4 (id INTEGER);\n")
    (migrations / "V0004__step_4.down.sql").write_text("DROP TABLE t4;\n")
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations), layout="gitops")
    assert not ok and "Checksum drift" in res["msg"] and "operation=repair" in res["msg"], run
    assert target.history()[-1] == (3, "applied")
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations), allow_drift=True)
    assert ok and res["version"] == 4 and "V0003__step_3" in res["warnings"][0], run
    ok, res, run = migrate(target, check=True, operation="repair", migrations_dir=str(migrations), version="3")
    assert ok and res["changed"] and "direction = 'repair'" in res["sql"][0], run
    (repaired,) = res["repaired"]
    assert {key: repaired[key] for key in ("version", "name", "files")} == {
        "version": 3, "name": "step_3", "files": ["V0003__step_3.down.sql"]}
    # what the repair accepts: the edited down script's new checksum in place of the recorded one
    assert repaired["checksum_before"] == repaired["checksum_after"]
    assert repaired["down_checksum_before"] != repaired["down_checksum_after"]
    assert len(repaired["down_checksum_after"]) == 64
    assert target.sql("SELECT direction FROM gitops_rollback_migrations WHERE version = 3") == "up"

    ok, res, run = migrate(target, operation="revert", migrations_dir=str(migrations), count=2, force=True)
    assert ok and res["version"] == 2, run
    assert target.schema() == before_3


def _store_with_backup(collections_path: Path, store: Path, label: str, database: str) -> str:
    sys.path.insert(0, str(collections_path))
    from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

    repo = Store(str(store))
    repo.init()
    manifest = repo.new_manifest(label=label, reason="release", creator="test")
    repo.attach_component(manifest, {"type": "database", "name": "sqlite/%s" % database, "database": database,
                                     "blobs": []})
    return manifest["id"]


def test_irreversible_crossing_is_refused_and_names_the_backup(new_target, migrate, write_chain, collections_path,
                                                               tmp_path: Path) -> None:
    target = new_target("sqlite")
    migrations = write_chain(tmp_path / "m", "sqlite", 3)
    up_down(migrations, 4, "drop_legacy", "-- gitops-rollback: irreversible\nDROP TABLE t1;\n", "SELECT 1;\n")
    up_down(migrations, 5, "add_t5", "CREATE TABLE t5 (id INTEGER);\n", None)
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations), version="3", label="v1")
    assert ok, run
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations), label="v2")
    assert ok and res["version"] == 5, run
    schema = target.schema()

    empty_store = tmp_path / "empty-store"
    ok, res, run = migrate(target, operation="revert", migrations_dir=str(migrations), label="v1",
                           store_path=str(empty_store))
    assert not ok
    msg = res["msg"]
    assert "irreversible" in msg and "V0004__drop_legacy" in msg and "V0005__add_t5" in msg
    assert "Nothing was run" in msg and "gitops.rollback.db_backup" in msg
    assert target.history()[-1] == (5, "applied") and target.schema() == schema

    store = tmp_path / "store"
    checkpoint = _store_with_backup(collections_path, store, "v1", target.conn["database"])
    ok, res, run = migrate(target, check=True, operation="revert", migrations_dir=str(migrations), label="v1",
                           store_path=str(store))
    assert not ok
    assert checkpoint in res["msg"] and "gitops.rollback.db_restore" in res["msg"]
    assert [c["version"] for c in res["irreversible"]] == [5, 4]
    assert target.history()[-1] == (5, "applied") and target.schema() == schema


def test_mariadb_failed_ddl_leaves_dirty_state_with_recovery_steps(new_target, migrate, tmp_path: Path) -> None:
    target = new_target("mysql")
    migrations = tmp_path / "m"
    up_down(migrations, 1, "base", "CREATE TABLE base (id INT PRIMARY KEY);\n", "DROP TABLE base;\n")
    up_down(migrations, 2, "half", "CREATE TABLE half_a (id INT);\nCREATE TABLE half_a (id INT);\n",
            "DROP TABLE half_a;\n")
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations))
    assert not ok
    assert "V0002__half" in res["msg"] and "now at version" in res["msg"]
    assert target.history() == [(1, "applied"), (2, "dirty")]
    assert "half_a" in target.sql("SHOW TABLES")  # the first DDL statement stayed: MariaDB cannot roll it back

    ok, res, run = migrate(target, operation="status", migrations_dir=str(migrations))
    assert ok and res["dirty"] == [2], run
    ok, res, run = migrate(target, operation="revert", migrations_dir=str(migrations), count=1)
    assert not ok and "dirty" in res["msg"] and "resolve_as=reverted" in res["msg"]

    target.sql("DROP TABLE half_a")  # undo the half-done statement by hand, as the message says
    ok, res, run = migrate(target, operation="resolve", version="2", resolve_as="reverted")
    assert ok and res["changed"], run
    (migrations / "V0002__half.up.sql").write_text("CREATE TABLE half_a (id INT);\n")
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations))
    assert ok and res["version"] == 2, run
    assert target.history() == [(1, "applied"), (2, "applied")]


def test_verify_reversible_stops_a_deploy_whose_down_is_incomplete(new_target, migrate, tmp_path: Path) -> None:
    target = new_target("postgresql")
    migrations = tmp_path / "m"
    up_down(migrations, 1, "users", "CREATE TABLE users (id int PRIMARY KEY, email text);\n", "DROP TABLE users;\n")
    up_down(migrations, 2, "email_index", "CREATE INDEX users_email ON users (email);\n"
            "ALTER TABLE users ADD COLUMN name text;\n", "ALTER TABLE users DROP COLUMN name;\n")
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations), verify_reversible=True)
    assert not ok
    assert "V0002__email_index" in res["msg"] and "users_email" in res["msg"] and "not touched" in res["msg"]
    assert target.sql("SELECT to_regclass('users') IS NULL") == "t"
    assert target.sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'gr_scratch_%'") == "0"

    (migrations / "V0002__email_index.down.sql").write_text(
        "DROP INDEX users_email;\nALTER TABLE users DROP COLUMN name;\n")
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations), verify_reversible=True)
    assert ok and res["version"] == 2, run
    assert [v["checked"] for v in res["verified"]] == ["up, down, up", "up, down, up"]


# ----------------------------------------------------------------------------- locks
HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.db.engines import make_engine
import json
conn = DbConnection.from_params(json.loads(sys.argv[2]))
engine = make_engine(conn).migrations()
engine.acquire_lock("holder-test@elsewhere", float(sys.argv[3]), 0)
print("locked", flush=True)
time.sleep(600)
"""


def hold_lock(collections_path: Path, target: Any, ttl: float) -> subprocess.Popen:
    """Start a process holding the migration lock of ``target``; return once it holds it."""
    import json

    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(collections_path), json.dumps(target.conn), str(ttl)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_lock_held_refuses_then_dead_owner_is_recovered(engine, new_target, migrate, write_chain,
                                                        collections_path, tmp_path: Path) -> None:
    target = new_target(engine)
    migrations = write_chain(tmp_path / "m", engine, 2)
    holder = hold_lock(collections_path, target, 3600)
    try:
        # refused at once (waiting lock_timeout for a live holder: test_migrate_layouts.py, lock_timeout)
        ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations), lock_timeout=0)
        assert not ok
        assert "locked by holder-test@elsewhere" in res["msg"], res["msg"]
        assert target.history() == []  # nothing ran while another run held the lock
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations))
    assert ok and res["version"] == 2, run
    assert res["lock_recovered"]["owner"] == "holder-test@elsewhere"


def test_mariadb_expired_lock_owner_is_ended(new_target, migrate, write_chain, collections_path,
                                             tmp_path: Path) -> None:
    target = new_target("mysql")
    migrations = write_chain(tmp_path / "m", "mysql", 2)
    holder = hold_lock(collections_path, target, 0.2)  # alive, but its expiry passes in 0.2 s
    try:
        time.sleep(0.3)
        ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations), lock_timeout=10)
        assert ok and res["version"] == 2, run
        assert res["lock_recovered"]["owner"] == "holder-test@elsewhere"
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------- interrupted
def _processes(match: Callable[[list[str]], bool]) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path("/proc/%s/cmdline" % pid).read_bytes().split(b"\0")
        except OSError:
            continue
        if match([a.decode("utf-8", "replace") for a in argv if a]):
            found.append(int(pid))
    return found


def _wait_for(condition: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


SLOW = {
    # PostgreSQL's step waits for an advisory lock the test holds until the client is killed (see blocker)
    "postgresql": "CREATE TABLE slow (id int);\nSELECT pg_advisory_xact_lock(4242);\nCREATE TABLE slow_end (id int);\n",
    "mysql": "CREATE TABLE slow (id INT);\nSELECT SLEEP(8);\nCREATE TABLE slow_end (id INT);\n",
    "sqlite": "CREATE TABLE slow (id INTEGER);\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
              "WHERE x < 400000000) SELECT count(*) FROM c;\nCREATE TABLE slow_end (id INTEGER);\n",
}


def _client_of(target: Any) -> Callable[[list[str]], bool]:
    db = target.conn["database"]
    if target.engine == "postgresql":
        return lambda argv: bool(argv) and argv[0].endswith("psql") and "gitops_rollback=migrate" in argv and db in argv
    if target.engine == "mysql":
        return lambda argv: bool(argv) and argv[0].endswith(("mariadb", "mysql")) and db in argv \
            and "--unbuffered" not in argv
    return lambda argv: False  # SQLite runs inside the module's own process: see _holders_of


def _sqlite_lock_held(path: str) -> bool:
    """Whether the migration lock row (the engine's ``LOCKS`` table, ``LOCK_NAME`` row: db/migrations.py) is
    committed in the SQLite database at ``path``, read without waiting."""
    db = sqlite3.connect(path, timeout=0)
    try:
        return bool(db.execute("SELECT count(*) FROM gitops_rollback_lock WHERE name = 'migrate'").fetchone()[0])
    except sqlite3.OperationalError:  # no lock table yet, or the writer holds the database exclusively
        return False
    finally:
        db.close()


def _holders_of(path: str) -> list[int]:
    """Pids of other processes with ``path`` open (for SQLite, the module process itself)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            links = [os.readlink("/proc/%s/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%s/fd" % pid)]
        except OSError:
            continue
        if path in links:
            found.append(int(pid))
    return found


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "sqlite"])
def test_interrupted_migration(engine, new_target, migrate, tmp_path: Path) -> None:
    target = new_target(engine)
    migrations = tmp_path / "m"
    up_down(migrations, 1, "base", "CREATE TABLE base (id INTEGER PRIMARY KEY);\n", "DROP TABLE base;\n")
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations))
    assert ok, run
    up_down(migrations, 2, "slow", SLOW[engine], "DROP TABLE slow_end;\nDROP TABLE slow;\n")

    blocker = None
    if engine == "postgresql":  # holds the lock the slow step waits for, until its client is killed
        blocker = psycopg2.connect(host=target.server.host, port=target.server.port, user=target.server.user,
                                   dbname=target.conn["database"])
        blocker.autocommit = True
        blocker.cursor().execute("SELECT pg_advisory_lock(4242)")
    orphan = ("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_advisory_xact_lock(4242)%' "
              "AND pid <> pg_backend_pid()")
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.setdefault(
        "run", migrate(target, operation="apply", migrations_dir=str(migrations))))
    worker.start()
    if engine == "sqlite":
        # The lock row's own transaction writes a journal too: a kill inside it would leave no lock row to recover.
        _wait_for(lambda: _sqlite_lock_held(target.conn["database"]))
        _wait_for(lambda: os.path.exists(target.conn["database"] + "-journal"))
    elif engine == "postgresql":
        _wait_for(lambda: target.sql(orphan + " AND wait_event_type = 'Lock'") != "0")
    else:
        _wait_for(lambda: "SLEEP(8)" in target.server.sql("SHOW FULL PROCESSLIST"))
    if engine == "sqlite":
        clients = _wait_for(lambda: _holders_of(target.conn["database"]))
    else:
        clients = _wait_for(lambda: _processes(_client_of(target)))
    for pid in clients:
        os.kill(pid, signal.SIGKILL)
    worker.join(120)
    ok, res, run = outcome["run"]
    assert not ok, run

    if engine == "mysql":
        # No transactional DDL: the run is recorded dirty and the half-done table stays.
        assert target.history() == [(1, "applied"), (2, "dirty")]
        ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations))
        assert not ok and "dirty" in res["msg"] and "operation=resolve version=2" in res["msg"]
        target.sql("DROP TABLE IF EXISTS slow")
        ok, res, run = migrate(target, operation="resolve", version="2", resolve_as="reverted")
        assert ok, run
    else:
        # Rolled back with the transaction: no table, no history row, no dirty state.
        if blocker is not None:  # the orphaned backend gets the lock, finishes its statement and rolls back
            blocker.close()
            _wait_for(lambda: target.sql(orphan) == "0")
        assert target.history() == [(1, "applied")]
        assert "slow" not in target.schema()

    (migrations / "V0002__slow.up.sql").write_text("CREATE TABLE slow (id INTEGER);\nCREATE TABLE slow_end (id INTEGER);\n")
    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations))
    assert ok and res["version"] == 2, run
    if engine == "sqlite":
        assert res["lock_recovered"]["pid"], res  # the killed module's lock row, recovered without manual SQL
