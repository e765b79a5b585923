"""SIGKILL at seeded random points of a db_migrate revert (PostgreSQL, SQLite): the schema, the data
and the migration history agree (each migration fully reverted with its history row gone, or still
applied), the migration lock of the dead run is recovered, and re-running the revert through
ansible-playbook reaches the target version with the expected schema."""

from __future__ import annotations

import json
import secrets
import shutil
import sqlite3
from pathlib import Path
from typing import Callable, Tuple

import pytest

from harness import PgServer
from kill_support import (
    Tally, kill_group_after, kill_points, pg_copy_database, pg_drop_database, pg_query, pg_settle, start_engine, timed,
)

pytestmark = [pytest.mark.slow, pytest.mark.deep]

POINTS = 3
STEPS = 10
TARGET = 2
ROWS = 5000
MIGRATE = """
import json, sys
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrate import run_operation
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrate_plan import Params
args = json.loads(sys.argv[1])
run_operation(Params(operation=args["operation"], conn=DbConnection.from_params(args),
                     migrations_dir=args["migrations_dir"], version=args.get("version"), owner="killer@test"))
print("done")
"""

# what a database at version v holds: tables big, t1..tv; columns c1..cv on big; sum(val) grown by
# ROWS * (1 + ... + v). Every step rewrites data, so a revert takes long enough to be killed in.
Shape = Tuple[int, Tuple[str, ...], Tuple[str, ...], int]


def write_migrations(directory: Path) -> Path:
    """STEPS migrations, each adding a table (a copy of big), a column and a data change."""
    directory.mkdir()
    (directory / "V0000__base.up.sql").write_text(
        "CREATE TABLE big (id INTEGER PRIMARY KEY, val BIGINT NOT NULL);\n")
    (directory / "V0000__base.down.sql").write_text("DROP TABLE big;\n")
    for k in range(1, STEPS + 1):
        (directory / ("V%04d__step_%d.up.sql" % (k, k))).write_text(
            "CREATE TABLE t%d (id INTEGER PRIMARY KEY, val BIGINT);\nINSERT INTO t%d SELECT id, val FROM big;\n"
            "ALTER TABLE big ADD COLUMN c%d INTEGER;\nUPDATE big SET val = val + %d;\n" % (k, k, k, k))
        (directory / ("V%04d__step_%d.down.sql" % (k, k))).write_text(
            "UPDATE big SET val = val - %d;\nALTER TABLE big DROP COLUMN c%d;\nDROP TABLE t%d;\n" % (k, k, k))
    return directory


def expected(version: int) -> Shape:
    """The shape of a database whose history says ``version``."""
    tables = tuple(sorted(["big"] + ["t%d" % k for k in range(1, version + 1)]))
    columns = tuple(sorted(["id", "val"] + ["c%d" % k for k in range(1, version + 1)]))
    return version, tables, columns, ROWS * (ROWS + 1) // 2 + ROWS * version * (version + 1) // 2


def check(shape: Shape, tally: Tally, delay: float, killed: bool) -> None:
    """Schema and data must be those of the version the history names; record the phase."""
    version = shape[0]
    assert shape == expected(version), "schema or data disagree with history version %d: %r" % (version, shape)
    phase = "old" if version == STEPS else "new" if version == TARGET else "between"
    tally.add(delay, killed, phase)


def pg_shape(pg: PgServer, db: str) -> Shape:
    """(history version, tables, columns of big, sum of big.val), read in one query."""
    pg_settle(pg)
    history, tables, columns, total = pg_query(pg, """
        SELECT (SELECT string_agg(version || ':' || state, ',' ORDER BY version) FROM gitops_rollback_migrations),
               (SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'
                  AND tablename NOT LIKE 'gitops_rollback_%'),
               (SELECT string_agg(column_name, ' ' ORDER BY column_name) FROM information_schema.columns
                  WHERE table_name = 'big'),
               (SELECT sum(val) FROM big)""", db=db)[0]
    history = (history or "").split(",")
    versions = [int(item.split(":")[0]) for item in history if item.endswith(":applied")]
    assert len(versions) == len(history) and versions == list(range(len(versions))), history
    return versions[-1], tuple(sorted((tables or "").split())), tuple(sorted((columns or "").split())), int(total)


def sqlite_shape(path: Path) -> Shape:
    """The same, read with sqlite3 (a hot journal of the killed run is rolled back on open)."""
    conn = sqlite3.connect(path)
    try:
        history = conn.execute("SELECT version, state FROM gitops_rollback_migrations ORDER BY version").fetchall()
        versions = [version for version, state in history if state == "applied"]
        assert len(versions) == len(history) and versions == list(range(len(versions))), history
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                 "AND name NOT LIKE 'gitops_rollback_%'")]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(big)")]
        total = conn.execute("SELECT sum(val) FROM big").fetchone()[0]
    finally:
        conn.close()
    return versions[-1], tuple(sorted(tables)), tuple(sorted(columns)), total


def test_postgresql_revert_killed_at_random_points_keeps_schema_and_history_in_step(
        postgres: PgServer, run_task, collections_path: Path, tmp_path: Path) -> None:
    db = "killmig_%s" % secrets.token_hex(3)
    saved = db + "_applied"
    postgres.create_database(db)
    conn = {"engine": "postgresql", "database": db, "login_host": postgres.host, "login_port": postgres.port,
            "login_user": postgres.user, "client_bin_dir": str(postgres.bin_dir)}
    migrations = write_migrations(tmp_path / "migrations")
    try:
        base = dict(conn, migrations_dir=str(migrations))
        timed(start_engine(collections_path, MIGRATE, json.dumps(dict(base, operation="apply", version="0"))))
        postgres.psql("INSERT INTO big SELECT g, g FROM generate_series(1, %d) g" % ROWS, db=db)
        timed(start_engine(collections_path, MIGRATE, json.dumps(dict(base, operation="apply"))))
        assert pg_shape(postgres, db) == expected(STEPS)
        pg_copy_database(postgres, db, saved)
        run_kills(run_task, collections_path, base, lambda: pg_copy_database(postgres, saved, db),
                  lambda: pg_shape(postgres, db), "db_migrate revert postgresql", 31)
    finally:
        for name in (db, saved):
            pg_drop_database(postgres, name)


def test_sqlite_revert_killed_at_random_points_keeps_schema_and_history_in_step(
        run_task, collections_path: Path, tmp_path: Path) -> None:
    live, saved = tmp_path / "app.sqlite", tmp_path / "applied.sqlite"
    base = {"engine": "sqlite", "database": str(live), "migrations_dir": str(write_migrations(tmp_path / "mig"))}
    timed(start_engine(collections_path, MIGRATE, json.dumps(dict(base, operation="apply", version="0"))))
    with sqlite3.connect(live) as db:
        db.executemany("INSERT INTO big VALUES (?, ?)", ((i, i) for i in range(1, ROWS + 1)))
    db.close()
    timed(start_engine(collections_path, MIGRATE, json.dumps(dict(base, operation="apply"))))
    assert sqlite_shape(live) == expected(STEPS)
    shutil.copyfile(live, saved)

    def reset() -> None:
        for suffix in ("-journal", "-wal", "-shm"):
            Path(str(live) + suffix).unlink(missing_ok=True)
        shutil.copyfile(saved, live)

    run_kills(run_task, collections_path, base, reset, lambda: sqlite_shape(live), "db_migrate revert sqlite", 37)


def run_kills(run_task, collections_path: Path, base: dict, reset: Callable[[], None], shape: Callable[[], Shape],
              layer: str, seed: int) -> None:
    """Time an unkilled revert, then kill reverts at random points; check and re-run after each."""
    revert = dict(base, operation="revert", version=str(TARGET))
    duration = timed(start_engine(collections_path, MIGRATE, json.dumps(revert)))
    assert shape() == expected(TARGET)
    tally, recovered = Tally(layer), 0
    for delay in kill_points(seed, POINTS, duration):
        reset()
        killed = kill_group_after(start_engine(collections_path, MIGRATE, json.dumps(revert)), delay)
        check(shape(), tally, delay, killed)
        done = run_task("gitops.rollback.db_migrate", revert)[1]
        assert done["status"] == "ok", done
        assert done["version"] == TARGET and shape() == expected(TARGET), done
        recovered += bool(done.get("lock_recovered"))
    tally.summary()
    print("KILL-SUMMARY %s lock recovered by the re-run: %d" % (layer, recovered))
