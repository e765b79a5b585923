"""SIGKILL at seeded random points of db_restore (PostgreSQL replace and swap, SQLite): the live
database is exactly the pre-restore content or exactly the backup, row by row; the killed run's
lock and staging copies do not stop the next run, and that run (through ansible-playbook)
restores the backup."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import sqlite3
from pathlib import Path
from typing import Dict, Optional

import pytest

from harness import PgServer
from kill_support import (
    Tally, kill_group_after, kill_points, pg_copy_database, pg_databases, pg_drop_database, pg_fingerprint, pg_query,
    phase_of, start_engine, timed,
)

pytestmark = [pytest.mark.slow, pytest.mark.deep]

POINTS = 3
RESTORE = """
import json, sys
from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import RestoreRequest, restore
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
args = json.loads(sys.argv[1])
request = RestoreRequest(conn=DbConnection.from_params(args), checkpoint=args["checkpoint"], mode=args["mode"])
restore(Store(args["store_path"]), request, "killer@test", 0)
print("done")
"""

PG_SCHEMA = """
CREATE SCHEMA shop;
CREATE TABLE shop.customer (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE shop.orders (id bigint PRIMARY KEY, customer_id int NOT NULL REFERENCES shop.customer(id),
                          note text, amount numeric(12, 2));
CREATE INDEX orders_customer ON shop.orders (customer_id);
CREATE TABLE public.log (id bigserial PRIMARY KEY, what text);
INSERT INTO shop.customer SELECT g, 'customer ' || g FROM generate_series(1, 2000) g;
INSERT INTO shop.orders SELECT g, 1 + g % 2000, md5(g::text), g * 1.5 FROM generate_series(1, 15000) g;
INSERT INTO public.log (what) SELECT 'event ' || g FROM generate_series(1, 5000) g;
"""

PG_DAMAGE = """
UPDATE shop.orders SET note = 'changed', amount = 0 WHERE id % 7 = 0;
DELETE FROM shop.orders WHERE id > 14000;
INSERT INTO shop.customer VALUES (99999, 'intruder');
CREATE TABLE public.extra (id int);
INSERT INTO public.extra VALUES (1), (2);
"""


def pg_args(pg: PgServer, db: str, store: Path, **extra: object) -> dict:
    args = {"engine": "postgresql", "database": db, "login_host": pg.host, "login_port": pg.port,
            "login_user": pg.user, "client_bin_dir": str(pg.bin_dir), "store_path": str(store)}
    args.update(extra)
    return args


@pytest.mark.parametrize("mode", ["replace", "swap"])
def test_postgresql_restore_killed_at_random_points_is_old_or_new(postgres: PgServer, run_task, collections_path: Path,
                                                                  tmp_path: Path, mode: str) -> None:
    db = "kill_%s_%s" % (mode, secrets.token_hex(3))
    template = db + "_old"
    postgres.create_database(db)
    try:
        postgres.psql(PG_SCHEMA, db=db)
        new = pg_fingerprint(postgres, db)
        base = pg_args(postgres, db, tmp_path / "store")
        backup = run_task("gitops.rollback.db_backup", dict(base, checkpoint="good"))[1]
        assert backup["status"] == "ok", backup
        postgres.psql(PG_DAMAGE, db=db)
        old = pg_fingerprint(postgres, db)
        assert old != new and set(old) == set(new) | {"public.extra"}
        pg_copy_database(postgres, db, template)
        args = dict(base, checkpoint="good", mode=mode)
        duration = timed(start_engine(collections_path, RESTORE, json.dumps(args)))
        assert pg_fingerprint(postgres, db) == new
        tally = Tally("db_restore postgresql %s" % mode)
        for delay in kill_points(1000 + len(mode), POINTS, duration, tail=1):
            pg_copy_database(postgres, template, db)
            killed = kill_group_after(start_engine(collections_path, RESTORE, json.dumps(args)), delay)
            tally.add(delay, killed, phase_of(pg_fingerprint(postgres, db), old, new))
            assert pg_query(postgres, "SELECT datallowconn FROM pg_database WHERE datname = %s", args=(db,)) == [(True,)]
            done = run_task("gitops.rollback.db_restore", args)[1]
            assert done["status"] == "ok", done
            assert pg_fingerprint(postgres, db) == new, "the re-run did not restore every row"
            assert pg_databases(postgres, db + "__gr_restore_") == [], "a staged copy outlived the re-run"
        tally.summary()
    finally:
        for name in [db, template] + pg_databases(postgres, db + "__gr_"):
            pg_drop_database(postgres, name)


def sqlite_fingerprint(path: Path) -> Optional[Dict[str, str]]:
    """{table: sha256 of its rows in order}, or None when the file does not exist."""
    if not path.exists():
        return None
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")]
        return {table: hashlib.sha256(repr(conn.execute('SELECT * FROM "%s" ORDER BY 1' % table).fetchall())
                                      .encode("utf-8")).hexdigest() for table in tables}
    finally:
        conn.close()


def sqlite_build(path: Path) -> None:
    """A database of two tables, 39 000 rows in all."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, note TEXT)")
        conn.execute("CREATE INDEX orders_customer ON orders (customer_id)")
        conn.executemany("INSERT INTO customer VALUES (?, ?)", ((i, "customer %d" % i) for i in range(1, 2001)))
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?)",
                         ((i, 1 + i % 2000, "note %d %s" % (i, "x" * 40)) for i in range(1, 37001)))
    conn.close()


def test_sqlite_restore_killed_at_random_points_is_old_or_new(run_task, collections_path: Path,
                                                              tmp_path: Path) -> None:
    live, saved = tmp_path / "app.sqlite", tmp_path / "old.sqlite"
    sqlite_build(live)
    new = sqlite_fingerprint(live)
    args = {"engine": "sqlite", "database": str(live), "store_path": str(tmp_path / "store"), "checkpoint": "good"}
    backup = run_task("gitops.rollback.db_backup", args)[1]
    assert backup["status"] == "ok", backup
    with sqlite3.connect(live) as conn:
        conn.execute("UPDATE orders SET note = 'changed' WHERE id % 7 = 0")
        conn.execute("DELETE FROM orders WHERE id > 35000")
        conn.execute("CREATE TABLE extra (id INTEGER)")
    old = sqlite_fingerprint(live)
    shutil.copyfile(live, saved)
    args["mode"] = "replace"
    duration = timed(start_engine(collections_path, RESTORE, json.dumps(args)))
    assert sqlite_fingerprint(live) == new
    tally = Tally("db_restore sqlite")
    for delay in kill_points(77, POINTS, duration, tail=1):
        shutil.copyfile(saved, live)
        killed = kill_group_after(start_engine(collections_path, RESTORE, json.dumps(args)), delay)
        tally.add(delay, killed, phase_of(sqlite_fingerprint(live), old, new))
        done = run_task("gitops.rollback.db_restore", args)[1]
        assert done["status"] == "ok", done
        assert sqlite_fingerprint(live) == new, "the re-run did not restore every row"
        leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("app.sqlite__gr_restore_"))
        assert leftovers == [], "a staged copy outlived the re-run: %s" % leftovers
    tally.summary()
