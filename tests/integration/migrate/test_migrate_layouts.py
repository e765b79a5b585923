"""Migration chains as people write them, run in-process against the harness's real servers:
MariaDB procedures and triggers without DELIMITER, the golang-migrate, dbmate and Flyway layouts,
no-transaction migrations (CREATE INDEX CONCURRENTLY), baseline and repair, drift refused on
apply, the "fix the script and run again" path after a failed down script, and lock_timeout."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def engine_api(collections_path: Path) -> Any:
    """The engine's modules, imported from the built collection."""
    sys.path.insert(0, str(collections_path))
    from ansible_collections.gitops.rollback.plugins.module_utils.common import errors as _errors
    from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate as _migrate
    from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate_plan as _migrate_plan
    from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection

    class Api:
        errors = _errors
        migrate = _migrate
        plan = _migrate_plan

        @staticmethod
        def run(target: Any, operation: str, **options: Any) -> dict:
            conn = DbConnection.from_params(target.conn)
            return _migrate.run_operation(_migrate_plan.Params(operation=operation, conn=conn, owner="test@here",
                                                               **options))

    return Api


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


# ----------------------------------------------------------------------------- MariaDB multi-statement
ROUTINES_UP = """-- as golang-migrate runs it with multiStatements=true: no DELIMITER
CREATE TABLE accounts (id INT PRIMARY KEY, balance INT NOT NULL, note VARCHAR(40) DEFAULT 'a;b');
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, account INT, what VARCHAR(20));

CREATE TRIGGER accounts_audit AFTER INSERT ON accounts FOR EACH ROW
BEGIN
  INSERT INTO audit (account, what) VALUES (NEW.id, 'insert;');
END;

CREATE PROCEDURE open_account(IN p_id INT, IN p_amount INT)
BEGIN
  DECLARE v_amount INT DEFAULT 0;
  IF p_amount > 0 THEN
    SET v_amount = p_amount; -- a comment with ; inside
  END IF;
  INSERT INTO accounts (id, balance) VALUES (p_id, CASE WHEN v_amount > 100 THEN 100 ELSE v_amount END);
END;
"""
ROUTINES_DOWN = """DROP PROCEDURE open_account;
DROP TRIGGER accounts_audit;
DROP TABLE audit;
DROP TABLE accounts;
"""
CLIENT_STYLE_UP = """DELIMITER $$
CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC
BEGIN
  RETURN x * 2;
END$$
DELIMITER ;
"""


def test_mariadb_procedure_and_trigger_without_delimiter(new_target, engine_api, tmp_path: Path) -> None:
    target = new_target("mysql")
    migrations = write(tmp_path / "m", {
        "V0001__accounts.up.sql": ROUTINES_UP, "V0001__accounts.down.sql": ROUTINES_DOWN,
        "V0002__twice.up.sql": CLIENT_STYLE_UP, "V0002__twice.down.sql": "DROP FUNCTION twice;\n"})
    before = target.schema()
    res = engine_api.run(target, "apply", migrations_dir=str(migrations))
    assert res["version"] == 2
    target.sql("CALL open_account(7, 250)")
    assert target.sql("SELECT id, balance, note FROM accounts").split("\t") == ["7", "100", "a;b"]
    assert target.sql("SELECT account, what FROM audit").split("\t") == ["7", "insert;"]
    assert target.sql("SELECT twice(21)") == "42"
    assert target.history() == [(1, "applied"), (2, "applied")]

    res = engine_api.run(target, "revert", migrations_dir=str(migrations), version="0")
    assert res["version"] == 0
    assert target.schema() == before and target.history() == []


# ----------------------------------------------------------------------------- layouts
GOLANG = {
    "000001_create_users.up.sql": "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(80));\n",
    "000001_create_users.down.sql": "DROP TABLE users;\n",
    "000002_users.email.index.up.sql": "CREATE INDEX users_email ON users (email);\n",
    "000002_users.email.index.down.sql": "DROP INDEX users_email;\n",
    "000003_orders.up.sql": "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER);\n",
    "000003_orders.down.sql": "DROP TABLE orders;\n",
}
DBMATE = {
    "20260101120000_create_users.sql": "-- migrate:up\nCREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(80));\n"
                                       "\n-- migrate:down\nDROP TABLE users;\n",
    "20260102120000_orders.sql": "-- migrate:up\nCREATE TABLE orders (id INTEGER PRIMARY KEY);\n"
                                 "INSERT INTO orders VALUES (1);\n-- migrate:down\nDROP TABLE orders;\n",
    "20260103120000_drop_legacy.sql": "-- migrate:up\nCREATE TABLE legacy_gone (id INTEGER);\n-- migrate:down\n",
}
# the same chain in this collection's own layout (names without dots: main accepted these)
CHAIN = {re.sub(r"^0*(\d+)_", lambda m: "V%04d__" % int(m.group(1)), name)
         .replace("users.email.index", "email_index"): text for name, text in GOLANG.items()}
FLYWAY = {
    "V1__create_users.sql": "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(80));\n",
    "U1__create_users.sql": "DROP TABLE users;\n",
    "V2__orders.sql": "CREATE TABLE orders (id INTEGER PRIMARY KEY);\n",
    "U2__orders.sql": "DROP TABLE orders;\n",
    "R__user_view.sql": "CREATE OR REPLACE VIEW user_emails AS SELECT email FROM users;\n",
}


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_golang_migrate_layout_with_dotted_names(engine, new_target, engine_api, tmp_path: Path) -> None:
    target = new_target(engine)
    migrations = write(tmp_path / "m", GOLANG)
    empty = target.schema()
    res = engine_api.run(target, "apply", migrations_dir=str(migrations), version="2")
    assert res["layout"] == "golang-migrate" and res["version"] == 2
    assert "users_email" in target.schema()
    at_two = target.schema()
    res = engine_api.run(target, "apply", migrations_dir=str(migrations), layout="golang-migrate")
    assert res["version"] == 3 and "orders" in target.schema()
    engine_api.run(target, "revert", migrations_dir=str(migrations), count=1)
    assert target.schema() == at_two
    engine_api.run(target, "revert", migrations_dir=str(migrations), version="0")
    assert target.schema() == empty and target.history() == []


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_dbmate_layout_sections_and_empty_down(engine, new_target, engine_api, tmp_path: Path) -> None:
    target = new_target(engine)
    migrations = write(tmp_path / "m", DBMATE)
    empty = target.schema()
    res = engine_api.run(target, "apply", migrations_dir=str(migrations), version="20260102120000")
    assert res["layout"] == "dbmate" and res["version"] == 20260102120000
    assert target.sql("SELECT count(*) FROM orders").strip() == "1"
    engine_api.run(target, "revert", migrations_dir=str(migrations), count=1)  # the down section only
    assert "orders" not in target.schema() and "users" in target.schema()
    engine_api.run(target, "revert", migrations_dir=str(migrations), version="0")
    assert target.schema() == empty

    engine_api.run(target, "apply", migrations_dir=str(migrations))
    assert "legacy_gone" in target.schema()
    with pytest.raises(engine_api.plan.IrreversibleError, match="20260103120000"):  # its down section is empty
        engine_api.run(target, "revert", migrations_dir=str(migrations), version="0")
    assert [v for v, _state in target.history()] == [20260101120000, 20260102120000, 20260103120000]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_flyway_layout_with_undo_and_repeatable_ignored(engine, new_target, engine_api, tmp_path: Path) -> None:
    target = new_target(engine)
    migrations = write(tmp_path / "m", FLYWAY)
    empty = target.schema()
    res = engine_api.run(target, "apply", migrations_dir=str(migrations))
    assert res["layout"] == "flyway" and res["version"] == 2 * 10 ** 12  # V2: 2.0.0.0 packed
    assert res["ignored"] and res["ignored"][0].startswith("R__user_view.sql") and res["warnings"]
    assert "user_emails" not in target.schema() and "orders" in target.schema()
    engine_api.run(target, "revert", migrations_dir=str(migrations), version="0")
    assert target.schema() == empty


# each migration reads the table of the one before it: applied out of numeric order, one fails
FLYWAY_DOTTED = {
    "V1__users.sql": "CREATE TABLE users (id INTEGER PRIMARY KEY);\n", "U1__users.sql": "DROP TABLE users;\n",
    "V1_2__c.sql": "CREATE TABLE c12 AS SELECT id FROM users;\n", "U1_2__c.sql": "DROP TABLE c12;\n",
    "V1.2.3__d.sql": "CREATE TABLE d123 AS SELECT id FROM c12;\n", "U1.2.3__d.sql": "DROP TABLE d123;\n",
    "V1.9__a.sql": "CREATE TABLE a19 AS SELECT id FROM d123;\n", "U1.9__a.sql": "DROP TABLE a19;\n",
    "V1.10__b.sql": "CREATE TABLE b110 AS SELECT id FROM a19;\n", "U1.10__b.sql": "DROP TABLE b110;\n",
}


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_flyway_dotted_versions_apply_and_revert_in_numeric_order(engine, new_target, engine_api, tmp_path) -> None:
    target = new_target(engine)
    migrations = write(tmp_path / "m", FLYWAY_DOTTED)
    res = engine_api.run(target, "apply", migrations_dir=str(migrations))
    assert [m["name"] for m in res["migrations"]] == ["users", "c", "d", "a", "b"]  # 1, 1.2, 1.2.3, 1.9, 1.10
    recorded = [10 ** 12, 10 ** 12 + 2 * 10 ** 8, 10 ** 12 + 2 * 10 ** 8 + 3 * 10 ** 4, 10 ** 12 + 9 * 10 ** 8,
                10 ** 12 + 10 * 10 ** 8]  # each part a group of digits
    assert [v for v, _state in target.history()] == recorded
    tables = target.schema()
    assert all(name in tables for name in ("users", "c12", "d123", "a19", "b110"))

    res = engine_api.run(target, "revert", migrations_dir=str(migrations), version="1.2")
    assert [m["name"] for m in res["migrations"]] == ["b", "a", "d"]  # 1.10, 1.9, 1.2.3 (newest first)
    tables = target.schema()
    assert "c12" in tables and not any(name in tables for name in ("d123", "a19", "b110"))
    with pytest.raises(engine_api.errors.RollbackError, match="Flyway version 1.2.3.4.5 is out of range"):
        engine_api.run(target, "apply", migrations_dir=str(migrations), version="1.2.3.4.5")


def test_own_layout_accepts_names_with_dots(new_target, engine_api, tmp_path: Path) -> None:
    target = new_target("sqlite")
    migrations = write(tmp_path / "m", {"V0001__users.v2.up.sql": "CREATE TABLE users (id INTEGER);\n",
                                        "V0001__users.v2.down.sql": "DROP TABLE users;\n"})
    res = engine_api.run(target, "apply", migrations_dir=str(migrations))
    assert res["layout"] == "gitops" and res["migrations"][0]["name"] == "users.v2"
    assert target.sql("SELECT name FROM gitops_rollback_migrations").strip() == "users.v2"


def test_unknown_sql_file_is_refused_naming_the_layout(new_target, engine_api, tmp_path: Path) -> None:
    target = new_target("sqlite")
    migrations = write(tmp_path / "m", dict(GOLANG, **{"seed.sql": "INSERT INTO users VALUES (1, 'x');\n"}))
    with pytest.raises(engine_api.errors.RollbackError, match=r"seed\.sql .* golang-migrate layout"):
        engine_api.run(target, "apply", migrations_dir=str(migrations))
    assert "users" not in target.schema()


# ----------------------------------------------------------------------------- no-transaction
def test_postgres_create_index_concurrently_outside_a_transaction(new_target, engine_api, tmp_path: Path) -> None:
    target = new_target("postgresql")
    migrations = write(tmp_path / "m", {
        "V0001__users.up.sql": "CREATE TABLE users (id int PRIMARY KEY, email text);\n"
                               "INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 1000) g;\n",
        "V0001__users.down.sql": "DROP TABLE users;\n",
        "V0002__email_index.up.sql": "-- gitops-rollback: no-transaction\n"
                                     "CREATE INDEX CONCURRENTLY users_email ON users (email);\n",
        "V0002__email_index.down.sql": "-- gitops-rollback: no-transaction\nDROP INDEX CONCURRENTLY users_email;\n",
    })
    res = engine_api.run(target, "apply", migrations_dir=str(migrations))
    assert res["version"] == 2 and [m["transaction"] for m in res["migrations"]] == [True, False]
    assert target.sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email'::regclass") == "t"
    assert target.history() == [(1, "applied"), (2, "applied")]
    engine_api.run(target, "revert", migrations_dir=str(migrations), version="1")
    assert target.sql("SELECT to_regclass('users_email') IS NULL") == "t"

    # a failure outside a transaction leaves the row dirty, with the recovery steps
    (migrations / "V0002__email_index.up.sql").write_text(
        "-- gitops-rollback: no-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n"
        "CREATE INDEX CONCURRENTLY users_bad ON users (no_such_column);\n")
    with pytest.raises(engine_api.migrate.MigrationFailed, match="operation=status"):
        engine_api.run(target, "apply", migrations_dir=str(migrations))
    assert target.history() == [(1, "applied"), (2, "dirty")]
    with pytest.raises(engine_api.plan.DirtyError, match="no-transaction"):
        engine_api.run(target, "apply", migrations_dir=str(migrations))
    target.sql("DROP INDEX users_email")
    engine_api.run(target, "resolve", version="2", resolve_as="reverted")
    assert target.history() == [(1, "applied")]


# ----------------------------------------------------------------------------- baseline, repair, drift
@pytest.mark.parametrize("engine", ["sqlite", "mysql"])
def test_baseline_adopts_a_database_without_running_scripts(engine, new_target, engine_api, tmp_path: Path) -> None:
    target = new_target(engine)
    chain = {name: text.replace("DROP INDEX users_email;", "DROP INDEX users_email ON users;")
             if engine == "mysql" else text for name, text in CHAIN.items()}
    migrations = write(tmp_path / "m", chain)
    empty = target.schema()
    target.sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(80))")  # made before db_migrate
    target.sql("CREATE INDEX users_email ON users (email)")
    target.sql("INSERT INTO users VALUES (1, 'kept@example.com')")
    if engine == "mysql":  # the history table as earlier versions made it: direction VARCHAR(4)
        target.sql("CREATE TABLE gitops_rollback_migrations (version BIGINT PRIMARY KEY, name VARCHAR(255) NOT NULL, "
                   "checksum CHAR(64) NOT NULL, down_checksum CHAR(64), down_sql LONGTEXT, applied_at DATETIME(6) NOT "
                   "NULL, applied_by VARCHAR(255), job_id VARCHAR(255), duration_ms BIGINT, label VARCHAR(255), "
                   "state VARCHAR(16) NOT NULL, direction VARCHAR(4) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    res = engine_api.run(target, "baseline", migrations_dir=str(migrations), version="2", label="v1.0.0")
    assert res["baselined"] == [{"version": 1, "name": "create_users"}, {"version": 2, "name": "email_index"}]
    assert target.history() == [(1, "applied"), (2, "applied")]
    assert target.sql("SELECT direction FROM gitops_rollback_migrations WHERE version = 2").strip() == "baseline"
    assert target.sql("SELECT email FROM users").strip() == "kept@example.com"  # nothing ran
    with pytest.raises(engine_api.errors.RollbackError, match="already has a migration history"):
        engine_api.run(target, "baseline", migrations_dir=str(migrations), version="1")

    res = engine_api.run(target, "apply", migrations_dir=str(migrations))
    assert res["version"] == 3 and [m["version"] for m in res["migrations"]] == [3]
    engine_api.run(target, "revert", migrations_dir=str(migrations), label="v1.0.0")
    assert target.history() == [(1, "applied"), (2, "applied")]
    engine_api.run(target, "revert", migrations_dir=str(migrations), version="0")
    assert target.schema() == empty


def test_drift_is_refused_on_apply_until_repaired(new_target, engine_api, tmp_path: Path) -> None:
    target = new_target("sqlite")
    migrations = write(tmp_path / "m", {k: v for k, v in CHAIN.items() if not k.startswith("V0003")})
    engine_api.run(target, "apply", migrations_dir=str(migrations))
    up = migrations / "V0001__create_users.up.sql"
    up.write_text("-- reviewed: comment only\n" + up.read_text())
    write(migrations, {k: v for k, v in CHAIN.items() if k.startswith("V0003")})

    with pytest.raises(engine_api.plan.DriftError, match=r"V0001__create_users\.up\.sql.*operation=repair"):
        engine_api.run(target, "apply", migrations_dir=str(migrations))
    assert [v for v, _s in target.history()] == [1, 2] and "orders" not in target.schema()

    res = engine_api.run(target, "repair", migrations_dir=str(migrations), check_mode=True)
    assert res["changed"] and target.sql("SELECT direction FROM gitops_rollback_migrations WHERE version = 1") \
        .strip() == "up"
    res = engine_api.run(target, "repair", migrations_dir=str(migrations))
    assert [d["version"] for d in res["repaired"]] == [1]
    assert target.sql("SELECT direction FROM gitops_rollback_migrations WHERE version = 1").strip() == "repair"
    res = engine_api.run(target, "apply", migrations_dir=str(migrations))
    assert res["version"] == 3 and res["drift"] == []
    assert engine_api.run(target, "repair", migrations_dir=str(migrations))["changed"] is False


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mysql"])
def test_repair_keeps_the_checksums_it_replaced_who_and_when(engine, new_target, engine_api, tmp_path: Path) -> None:
    target = new_target(engine)
    migrations = write(tmp_path / "m", {k: v for k, v in CHAIN.items() if k.startswith("V0001")})
    engine_api.run(target, "apply", migrations_dir=str(migrations))
    up, down = migrations / "V0001__create_users.up.sql", migrations / "V0001__create_users.down.sql"
    sums = [(hashlib.sha256(up.read_bytes()).hexdigest(), hashlib.sha256(down.read_bytes()).hexdigest())]
    for review in ("-- reviewed: a comment\n", "-- reviewed again\n"):
        down.write_text(review + down.read_text())
        sums.append((sums[0][0], hashlib.sha256(down.read_bytes()).hexdigest()))
        res = engine_api.run(target, "repair", migrations_dir=str(migrations), applied_by="reviewer@ci")
        assert [(d["version"], d["checksum_before"], d["checksum_after"], d["down_checksum_before"],
                 d["down_checksum_after"], d["repaired_by"]) for d in res["repaired"]] == [
            (1, sums[-2][0], sums[-1][0], sums[-2][1], sums[-1][1], "reviewer@ci")]

    out = target.sql("SELECT version, checksum_before, checksum_after, down_checksum_before, down_checksum_after, "
                     "repaired_by, repaired_at FROM gitops_rollback_repairs ORDER BY id")
    rows = [re.split(r"[|\t]", line.strip()) for line in out.splitlines() if line.strip()]
    assert [row[:6] for row in rows] == [
        ["1", sums[0][0], sums[1][0], sums[0][1], sums[1][1], "reviewer@ci"],
        ["1", sums[1][0], sums[2][0], sums[1][1], sums[2][1], "reviewer@ci"]], "every accepted change, old and new"
    assert all(row[6].startswith(time.strftime("%Y-", time.gmtime())) for row in rows), rows
    history = target.sql("SELECT down_checksum FROM gitops_rollback_migrations WHERE version = 1").strip()
    assert history == sums[-1][1]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_failed_down_script_fix_and_run_again(engine, new_target, engine_api, tmp_path: Path) -> None:
    target = new_target(engine)
    migrations = write(tmp_path / "m", dict(CHAIN, **{"V0003__orders.down.sql": "DROP TABLE order_typo;\n"}))
    engine_api.run(target, "apply", migrations_dir=str(migrations))
    at_three = target.schema()
    with pytest.raises(engine_api.migrate.MigrationFailed, match="Fix the script and run again") as failed:
        engine_api.run(target, "revert", migrations_dir=str(migrations), version="1")
    assert "rolled back" in str(failed.value)
    assert target.history() == [(1, "applied"), (2, "applied"), (3, "applied")] and target.schema() == at_three

    (migrations / "V0003__orders.down.sql").write_text("DROP TABLE orders;\n")  # fixed, as the message says
    res = engine_api.run(target, "revert", migrations_dir=str(migrations), version="1")
    assert res["version"] == 1 and target.history() == [(1, "applied")]


# ----------------------------------------------------------------------------- lock_timeout
HOLDER = """
import json, sqlite3, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.db.engines import make_engine
conn = DbConnection.from_params(json.loads(sys.argv[2]))
engine = make_engine(conn).migrations()
engine.acquire_lock("holder-test@elsewhere", 3600, 0)
if conn.engine == "sqlite":  # a migration of this run is writing
    engine.db().execute("BEGIN IMMEDIATE")
    engine.db().execute("CREATE TABLE busy (id INTEGER)")
print("locked", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mysql"])
def test_lock_timeout_is_honoured_while_another_run_migrates(engine, new_target, engine_api, collections_path,
                                                             tmp_path: Path) -> None:
    target = new_target(engine)
    migrations = write(tmp_path / "m", {k: v for k, v in CHAIN.items() if k.startswith("V0001")})
    engine_api.run(target, "apply", migrations_dir=str(migrations), version="0")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(collections_path), json.dumps(target.conn)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for timeout in (0, 1):
            started = time.monotonic()
            with pytest.raises(engine_api.errors.LockHeldError, match="locked by") as refused:
                engine_api.run(target, "apply", migrations_dir=str(migrations), lock_timeout=timeout)
            waited = time.monotonic() - started
            # well under the 10 s the engines used to wait whatever lock_timeout said (slack for a busy machine)
            assert timeout <= waited < timeout + 5, (timeout, waited)
            assert "holder-test@elsewhere" in str(refused.value)
    finally:
        holder.kill()
        holder.wait()
    # the server releases the killed holder's lock when it notices its session ended (later on a busy machine)
    assert engine_api.run(target, "apply", migrations_dir=str(migrations), lock_timeout=30)["version"] == 1
