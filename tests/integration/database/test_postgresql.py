"""PostgreSQL backup and restore through ansible-playbook against a real throwaway server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness import PgServer

pytestmark = pytest.mark.slow

SCHEMA = r"""
CREATE SCHEMA sales;
CREATE SCHEMA audit;
CREATE TYPE sales.status AS ENUM ('new', 'paid', 'shipped');
CREATE TABLE sales.customer (id serial PRIMARY KEY, name text NOT NULL, avatar bytea);
CREATE TABLE sales.orders (
    id bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES sales.customer(id),
    status sales.status NOT NULL DEFAULT 'new',
    note text,
    amount numeric(12, 2)
);
CREATE TABLE audit.log (id serial PRIMARY KEY, order_id bigint, what text, at timestamptz DEFAULT now());
CREATE SEQUENCE sales.invoice_no START 1000;
CREATE FUNCTION audit.record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit.log(order_id, what) VALUES (NEW.id, TG_OP || ':' || NEW.status);
  RETURN NEW;
END $$;
CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE ON sales.orders FOR EACH ROW EXECUTE FUNCTION audit.record();
CREATE VIEW sales.paid_totals AS
  SELECT c.name, sum(o.amount) AS total FROM sales.orders o JOIN sales.customer c ON c.id = o.customer_id
  WHERE o.status = 'paid' GROUP BY c.name;
INSERT INTO sales.customer (name, avatar)
  SELECT 'Kunde ' || g || ' — Ünïcødé ✓ 客户', decode(md5(random()::text) || md5(random()::text), 'hex')
  FROM generate_series(1, 50) g;
INSERT INTO sales.orders (customer_id, status, note, amount)
  SELECT 1 + (g % 50), (ARRAY['new', 'paid', 'shipped'])[1 + g % 3]::sales.status, 'note ' || g || ' ß',
         (g * 3.17)::numeric(12, 2)
  FROM generate_series(1, 300) g;
SELECT nextval('sales.invoice_no') FROM generate_series(1, 7);
"""

TABLES = {"sales.customer": "id", "sales.orders": "id", "audit.log": "id"}

DAMAGE = """
UPDATE sales.orders SET status = 'shipped', note = 'changed' WHERE id % 2 = 0;
DELETE FROM sales.orders WHERE id > 250;
INSERT INTO sales.customer (name) VALUES ('intruder');
SELECT nextval('sales.invoice_no') FROM generate_series(1, 30);
DROP VIEW sales.paid_totals;
ALTER TABLE sales.customer ADD COLUMN extra int;
DROP TABLE audit.log CASCADE;
"""


def snapshot(pg: PgServer, db: str) -> dict:
    """Every table's rows ordered by key, plus the view's rows."""
    state = {}
    for table, key in TABLES.items():
        state[table] = pg.psql("SELECT row_to_json(t)::text FROM %s t ORDER BY %s" % (table, key), db=db)
    state["view"] = pg.psql("SELECT row_to_json(v)::text FROM sales.paid_totals v ORDER BY name", db=db)
    return state


def make_db(pg: PgServer, name: str) -> str:
    pg.create_database(name)
    pg.psql(SCHEMA, db=name)
    return name


def conn(pg: PgServer, db: str, **extra: object) -> dict:
    args = {"engine": "postgresql", "database": db, "login_host": pg.host, "login_port": pg.port,
            "login_user": pg.user, "client_bin_dir": str(pg.bin_dir)}
    args.update(extra)
    return args


@pytest.mark.parametrize("fmt,mode,jobs", [("custom", "replace", 1), ("directory", "swap", 2), ("plain", "swap", 1)])
def test_restore_brings_back_every_row_and_sequence(postgres: PgServer, run_task, store_path: Path, unique_name,
                                                    fmt: str, mode: str, jobs: int) -> None:
    db = make_db(postgres, unique_name("pg"))
    before = snapshot(postgres, db)
    result, backup = run_task("gitops.rollback.db_backup", conn(postgres, db, store_path=str(store_path),
                                                                checkpoint="v1", format=fmt, jobs=jobs))
    assert result.rc == 0, str(result)
    assert backup["backup"]["row_counts"] == {"sales.customer": 50, "sales.orders": 300, "audit.log": 300}
    assert backup["backup"]["format"] == fmt and len(backup["backup"]["sha256"]) == 64

    postgres.psql(DAMAGE, db=db)
    assert postgres.psql("SELECT count(*) FROM sales.orders", db=db) == "250"
    result, restored = run_task("gitops.rollback.db_restore", conn(postgres, db, store_path=str(store_path),
                                                                   checkpoint="v1", mode=mode, jobs=jobs))
    assert result.rc == 0, str(result)
    assert restored["restore"]["verification"]["matched"] is True
    assert snapshot(postgres, db) == before
    # sequences continue where they were at backup time, not where the damage left them
    assert postgres.psql("SELECT nextval('sales.invoice_no')", db=db) == "1007"
    new_id = postgres.psql("INSERT INTO sales.orders (customer_id, amount) VALUES (1, 1) RETURNING id", db=db)
    assert new_id == "301"
    # the trigger and function came back and work
    assert postgres.psql("SELECT what FROM audit.log WHERE order_id = 301", db=db) == "INSERT:new"
    # the safety checkpoint holds the damaged state, so the restore can be undone
    safety = restored["safety_checkpoint"]
    assert safety and (store_path / "checkpoints" / (safety + ".json")).exists()
    if mode == "swap":
        old = restored["restore"]["old_database"]
        assert old.startswith(db + "__gr_old_")
        assert postgres.psql("SELECT count(*) FROM sales.customer WHERE name = 'intruder'", db=old) == "1"
        assert db + "__gr_restore_" not in postgres.psql("SELECT string_agg(datname, ',') FROM pg_database")


def test_check_mode_changes_nothing_and_shows_row_count_diff(postgres: PgServer, run_task, store_path: Path,
                                                             unique_name) -> None:
    db = make_db(postgres, unique_name("pgcheck"))
    result, planned = run_task("gitops.rollback.db_backup", conn(postgres, db, store_path=str(store_path),
                                                                 checkpoint="v1"), check=True)
    assert result.rc == 0 and planned["changed"] is True, str(result)
    assert planned["backup"]["row_counts"]["sales.orders"] == 300
    assert not (store_path / "checkpoints").exists() or not list((store_path / "checkpoints").iterdir())

    run_task("gitops.rollback.db_backup", conn(postgres, db, store_path=str(store_path), checkpoint="v1"))
    postgres.psql("DELETE FROM sales.orders WHERE id > 100", db=db)
    damaged = snapshot(postgres, db)
    result, plan = run_task("gitops.rollback.db_restore", conn(postgres, db, store_path=str(store_path),
                                                               checkpoint="v1", mode="swap"), check=True, diff=True)
    assert result.rc == 0, str(result)
    assert plan["diff"]["before"]["sales.orders"] == 100 and plan["diff"]["after"]["sales.orders"] == 300
    assert any("swap" in step for step in plan["restore"]["steps"])
    assert snapshot(postgres, db) == damaged
    manifests = list((store_path / "checkpoints").iterdir())
    assert len(manifests) == 1, "check mode took no safety backup"


def test_password_is_never_logged_and_app_user_can_back_up(postgres: PgServer, run_task, store_path: Path,
                                                           unique_name) -> None:
    db = unique_name("pgapp")
    postgres.create_database(db, owner=postgres.app_user)
    postgres.psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g "
                  "FROM generate_series(1, 10) g", db=db, user=postgres.app_user, password=postgres.app_password)
    args = conn(postgres, db, store_path=str(store_path), checkpoint="v1", login_user=postgres.app_user,
                login_password=postgres.app_password)
    result, backup = run_task("gitops.rollback.db_backup", args)
    assert result.rc == 0, str(result)
    assert backup["backup"]["row_counts"] == {"public.t": 10}
    postgres.psql("DELETE FROM t", db=db, user=postgres.app_user, password=postgres.app_password)
    args.update(mode="swap")
    result, restored = run_task("gitops.rollback.db_restore", args)
    assert result.rc == 0, str(result)
    assert postgres.psql("SELECT count(*) FROM t", db=db) == "10"
    assert postgres.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '%s'" % db) == "app"
    assert postgres.app_password not in result.stdout + result.stderr
    for path in store_path.rglob("*.json"):
        assert postgres.app_password not in path.read_text()


def test_two_databases_share_one_checkpoint_and_info_lists_them(postgres: PgServer, run_task, store_path: Path,
                                                                unique_name) -> None:
    first, second = make_db(postgres, unique_name("pga")), make_db(postgres, unique_name("pgb"))
    ids = []
    for db in (first, second):
        result, backup = run_task("gitops.rollback.db_backup", conn(postgres, db, store_path=str(store_path),
                                                                    checkpoint="release-7"))
        assert result.rc == 0, str(result)
        ids.append(backup["checkpoint"])
    assert ids[0] == ids[1]
    manifest = json.loads((store_path / "checkpoints" / (ids[0] + ".json")).read_text())
    assert sorted(c["name"] for c in manifest["components"]) == sorted(
        ["postgresql/" + first, "postgresql/" + second])
    result, info = run_task("gitops.rollback.db_backup_info", {"store_path": str(store_path),
                                                               "checkpoint": "release-7", "verify": True})
    assert result.rc == 0 and info["changed"] is False, str(result)
    assert sorted(b["database"] for b in info["backups"]) == sorted([first, second])
    assert all(b["verified"] for b in info["backups"])


def test_retention_keeps_the_newest_backups(postgres: PgServer, run_task, store_path: Path, unique_name) -> None:
    db = make_db(postgres, unique_name("pgkeep"))
    for label in ("r1", "r2", "r3"):
        result, backup = run_task("gitops.rollback.db_backup", conn(postgres, db, store_path=str(store_path),
                                                                    checkpoint=label, keep=2))
        assert result.rc == 0, str(result)
    assert backup["backup"]["pruned"] and len(backup["backup"]["pruned"]) == 1
    result, info = run_task("gitops.rollback.db_backup_info", {"store_path": str(store_path), "database": db})
    assert [b["label"] for b in info["backups"]] == ["r2", "r3"]
    objects = [p for p in (store_path / "objects").rglob("*") if p.is_file()]
    referenced = {sha for b in info["backups"] for sha in [b["sha256"]]}
    assert {p.name for p in objects} == referenced


# --------------------------------------------------------------- the database itself, not only its contents
def catalog(pg: PgServer, db: str) -> dict:
    """Everything PostgreSQL records about the database itself (not its contents), by name."""
    row = pg.psql(
        "SELECT row_to_json(x)::text FROM (SELECT pg_encoding_to_char(d.encoding) AS encoding, d.datcollate, "
        "d.datctype, d.datlocprovider, d.daticulocale, d.datconnlimit, d.datistemplate, d.datallowconn, "
        "pg_get_userbyid(d.datdba) AS owner, t.spcname AS tablespace, d.datacl::text AS acl, "
        "shobj_description(d.oid, 'pg_database') AS comment, "
        "(SELECT json_agg(json_build_object('role', coalesce(pg_get_userbyid(nullif(s.setrole, 0)), ''), "
        "'config', s.setconfig) ORDER BY s.setrole) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) "
        "AS settings FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace "
        "WHERE d.datname = '%s') x" % db)
    return json.loads(row)


def make_dressed_db(pg: PgServer, name: str) -> dict:
    """A database with every database-level property set away from its default; returns role names."""
    tag = name.rsplit("_", 1)[-1]
    roles = {"owner": "own_" + tag, "reader": "read_" + tag, "writer": "write_" + tag}
    for role in roles.values():
        pg.psql('CREATE ROLE "%s" NOLOGIN' % role)
    location = pg.root / ("ts_" + tag)
    location.mkdir()
    shutil.chown(location, "postgres", "postgres")
    pg.psql("CREATE TABLESPACE ts_%s LOCATION '%s'" % (tag, location))
    pg.psql("CREATE DATABASE %s OWNER %s TEMPLATE template0 ENCODING 'LATIN1' LOCALE_PROVIDER icu "
            "ICU_LOCALE 'de' LC_COLLATE 'C' LC_CTYPE 'C' TABLESPACE ts_%s CONNECTION LIMIT 7"
            % (name, roles["owner"], tag))
    pg.psql(";".join([
        "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC",
        "GRANT CONNECT ON DATABASE {db} TO {reader}",
        "GRANT CONNECT, CREATE ON DATABASE {db} TO {writer} WITH GRANT OPTION",
        "COMMENT ON DATABASE {db} IS 'Bestellungen (prod), don''t drop'",
        "ALTER DATABASE {db} SET search_path = app, \"$user\", public",
        "ALTER DATABASE {db} SET work_mem = '8MB'",
        "ALTER DATABASE {db} SET statement_timeout = '5s'",
        "ALTER ROLE {reader} IN DATABASE {db} SET work_mem = '16MB'",
        "ALTER DATABASE {db} IS_TEMPLATE true",
    ]).format(db=name, **roles))
    pg.psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g "
            "FROM generate_series(1, 25) g", db=name)
    return roles


def change_everything(pg: PgServer, db: str) -> None:
    """Undo every database-level property the backup recorded (what a bad release or a DBA might do)."""
    pg.psql(";".join([
        "ALTER DATABASE {db} IS_TEMPLATE false",
        "ALTER DATABASE {db} CONNECTION LIMIT -1",
        "GRANT ALL ON DATABASE {db} TO PUBLIC",
        "REVOKE ALL ON DATABASE {db} FROM read_{tag}",
        "COMMENT ON DATABASE {db} IS 'changed'",
        "ALTER DATABASE {db} RESET ALL",
        "ALTER DATABASE {db} SET work_mem = '64MB'",
        "ALTER ROLE read_{tag} IN DATABASE {db} RESET ALL",
        "ALTER DATABASE {db} OWNER TO postgres",
    ]).format(db=db, tag=db.rsplit("_", 1)[-1]))
    pg.psql("ALTER DATABASE %s SET TABLESPACE pg_default" % db)  # not inside a transaction block
    pg.psql("DELETE FROM t WHERE id > 10", db=db)


@pytest.mark.parametrize("mode,fmt", [("replace", "custom"), ("swap", "plain")])
def test_restore_brings_back_the_database_itself(postgres: PgServer, run_task, store_path: Path, unique_name,
                                                 mode: str, fmt: str) -> None:
    db = unique_name("pgprops")
    make_dressed_db(postgres, db)
    before = catalog(postgres, db)
    assert before["datlocprovider"] == "i" and before["datconnlimit"] == 7 and before["settings"]
    result, backup = run_task("gitops.rollback.db_backup", conn(postgres, db, store_path=str(store_path),
                                                                checkpoint="v1", format=fmt))
    assert backup["status"] == "ok", backup

    change_everything(postgres, db)
    changed = catalog(postgres, db)
    assert {k for k in before if before[k] != changed[k]} >= {
        "datconnlimit", "datistemplate", "owner", "tablespace", "acl", "comment", "settings"}
    result, restored = run_task("gitops.rollback.db_restore", conn(postgres, db, store_path=str(store_path),
                                                                   checkpoint="v1", mode=mode))
    assert restored["status"] == "ok", restored
    assert catalog(postgres, db) == before
    assert postgres.psql("SELECT count(*) FROM t", db=db) == "25"
    leftovers = postgres.psql("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '%s__gr_%%'" % db)
    assert ("__gr_restore_" not in leftovers) and (mode == "swap" or leftovers == "")


def test_a_non_superuser_owner_is_told_which_privilege_it_lacks_before_anything_changes(
        postgres: PgServer, run_task, store_path: Path, unique_name) -> None:
    db = unique_name("pgowner")
    owner, password = "own_" + db.rsplit("_", 1)[-1], "owner-secret-7"
    postgres.psql("CREATE ROLE %s LOGIN NOCREATEDB PASSWORD '%s'" % (owner, password))
    postgres.create_database(db, owner=owner)
    postgres.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 30);"
                  "REVOKE CONNECT, TEMPORARY ON DATABASE %s FROM PUBLIC; GRANT CONNECT ON DATABASE %s TO app;"
                  "COMMENT ON DATABASE %s IS 'owned by a plain role'; ALTER DATABASE %s SET work_mem = '3MB'"
                  % (db, db, db, db), db=db, user=owner, password=password)
    before = catalog(postgres, db)
    args = conn(postgres, db, store_path=str(store_path), checkpoint="v1", login_user=owner, login_password=password)
    _result, backup = run_task("gitops.rollback.db_backup", args)
    assert backup["status"] == "ok", backup
    postgres.psql("DELETE FROM t WHERE id > 3; COMMENT ON DATABASE %s IS 'changed'; GRANT ALL ON DATABASE %s TO "
                  "PUBLIC" % (db, db), db=db, user=owner, password=password)

    def untouched() -> None:
        assert postgres.psql("SELECT count(*) FROM t", db=db) == "3"
        assert postgres.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%s\\_\\_gr\\_%%'" % db) == "0"
        assert len(list((store_path / "checkpoints").iterdir())) == 1, "no safety backup was taken"

    # 1. without CREATEDB: refused before anything changes, naming the attribute and the way to grant it
    _result, task = run_task("gitops.rollback.db_restore", args)
    assert task["status"] == "ignored" and "needs the CREATEDB attribute" in task["msg"], task
    assert 'ALTER ROLE "%s" CREATEDB' % owner in task["msg"] and "Nothing was changed" in task["msg"]
    untouched()

    # 2. another role's session is connected: refused, naming it, unless terminate_sessions is set
    postgres.psql("ALTER ROLE %s CREATEDB" % owner)
    sleeper = subprocess.Popen(
        [postgres.bin("psql"), "-X", "-h", postgres.host, "-p", str(postgres.port), "-U", "app", "-d", db,
         "-c", "SELECT pg_sleep(600)"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, PGPASSWORD=postgres.app_password, PGAPPNAME="billing-worker"))
    try:
        deadline = time.monotonic() + 20
        while postgres.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'" % db) != "1":
            assert time.monotonic() < deadline and sleeper.poll() is None, "the session did not connect"
            time.sleep(0.1)
        backend = postgres.psql("SELECT pid FROM pg_stat_activity WHERE datname = '%s'" % db)
        _result, task = run_task("gitops.rollback.db_restore", dict(args, mode="swap"))
        assert task["status"] == "ignored", task
        assert "pid %s (user app, application billing-worker" % backend in task["msg"], task["msg"]
        assert "terminate_sessions=true" in task["msg"]
        untouched()

        # 3. asked to end it, but ending another role's session needs pg_signal_backend
        _result, task = run_task("gitops.rollback.db_restore", dict(args, terminate_sessions=True))
        assert task["status"] == "ignored" and "GRANT pg_signal_backend TO \"%s\"" % owner in task["msg"], task
        untouched()
        assert sleeper.poll() is None

        # 4. with it, the restore ends the session and brings back the rows and the database itself
        postgres.psql("GRANT pg_signal_backend TO %s" % owner)
        _result, task = run_task("gitops.rollback.db_restore", dict(args, terminate_sessions=True))
        assert task["status"] == "ok", task
        assert sleeper.wait(timeout=30) != 0, "the session was ended"
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
            # the server would keep its backend in pg_sleep, a session on the worker's shared server
            postgres.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '%s'" % db)
    assert postgres.psql("SELECT count(*) FROM t", db=db) == "30"
    assert catalog(postgres, db) == before
    assert postgres.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%s\\_\\_gr\\_%%'" % db) == "0"


def test_extra_dump_and_restore_arguments_reach_the_clients_and_unsafe_ones_are_refused(
        postgres: PgServer, run_task, store_path: Path, unique_name) -> None:
    db = unique_name("pgargs")
    postgres.create_database(db)
    postgres.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 12);"
                  "COMMENT ON TABLE t IS 'kept out by --no-comments'; CREATE ROLE ro_%s; GRANT SELECT ON t TO ro_%s"
                  % ((db.rsplit("_", 1)[-1],) * 2), db=db)
    _result, task = run_task("gitops.rollback.db_backup", conn(postgres, db, store_path=str(store_path),
                                                               dump_extra_args=["--file=/tmp/elsewhere", "-a"]))
    assert task["status"] == "ignored", task
    assert "--file: the dump goes into the checkpoint store" in task["msg"]
    assert "-a (--data-only): a dump without the schema cannot be restored" in task["msg"]
    assert not (store_path / "checkpoints").exists() or not list((store_path / "checkpoints").iterdir())

    _result, task = run_task("gitops.rollback.db_backup", conn(postgres, db, store_path=str(store_path),
                                                               checkpoint="v1", dump_extra_args=["--no-comments"]))
    assert task["status"] == "ok", task
    assert task["backup"]["dump_extra_args"] == ["--no-comments"]
    assert "--no-comments" in task["commands"][0]
    postgres.psql("DELETE FROM t", db=db)
    _result, task = run_task("gitops.rollback.db_restore", conn(postgres, db, store_path=str(store_path),
                                                                checkpoint="v1", restore_extra_args=["--table=t"]))
    assert task["status"] == "ignored" and "a partial restore leaves tables out" in task["msg"], task
    assert postgres.psql("SELECT count(*) FROM t", db=db) == "0"
    _result, task = run_task("gitops.rollback.db_restore", conn(postgres, db, store_path=str(store_path),
                                                                checkpoint="v1", restore_extra_args=["--no-privileges"]))
    assert task["status"] == "ok", task
    assert postgres.psql("SELECT count(*) FROM t", db=db) == "12"
    assert postgres.psql("SELECT coalesce(obj_description('t'::regclass), 'none')", db=db) == "none"
    assert postgres.psql("SELECT coalesce(relacl::text, 'default') FROM pg_class WHERE relname = 't'", db=db) == "default"
