"""MariaDB views, routines, events and triggers come back as they were stored, and a failed swap puts
the live database back.

Each object keeps the session it was created in (``sql_mode``, client character set, connection
collation, the database's collation, an event's time zone) and its text in that character set;
``information_schema`` must show the same rows after a restore, in replace and in swap mode. The
engine is called in-process against the harness's MariaDB server (no ansible-playbook run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, List

import pytest

from harness import MariaDbServer

pytestmark = pytest.mark.slow

LATIN1 = "cp1252"  # MariaDB's latin1
# the schema as a client sends it: bytes, each part in the character set the session says
SCHEMA: List[tuple] = [
    ("utf-8", """
SET NAMES utf8mb4;
CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(40) CHARACTER SET utf8mb4, note VARCHAR(40) CHARACTER SET latin1);
INSERT INTO t VALUES (1, 'Ärger 😀 客户', 'café'), (2, 'two', NULL);
SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES,PIPES_AS_CONCAT';
DELIMITER //
CREATE FUNCTION "ansi_fn"(x INT) RETURNS VARCHAR(40) CHARACTER SET utf8mb4 DETERMINISTIC
RETURN 'Ö ' || x || ' 😀'//
ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci//
CREATE PROCEDURE "ansi_proc"() COMMENT 'ünïcode'
BEGIN
  -- a comment; with ;; and 'quotes'
  SELECT "name" || '·' AS "n" FROM "t" WHERE "id" = 1; /* block */
END//
DELIMITER ;
SET SESSION sql_mode = DEFAULT;
SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE VIEW z_base AS SELECT id, name, '客户 ✓' AS label FROM t;
CREATE VIEW a_sum AS SELECT COUNT(*) AS n, MAX(label) AS l FROM z_base;
CREATE VIEW fn_view AS SELECT ansi_fn(id) AS f FROM t;
SET time_zone = '+05:30';
CREATE EVENT ev ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 03:00:00' DO UPDATE t SET note = 'ß' WHERE id = 0;
SET time_zone = SYSTEM;
SET NAMES latin1;
"""),
    (LATIN1, """
CREATE VIEW v_latin AS SELECT id, 'café £' AS c FROM t;
CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW SET NEW.note = CONCAT('é', IFNULL(NEW.note, ''));
CREATE TRIGGER a_second BEFORE INSERT ON t FOR EACH ROW FOLLOWS t_bi SET NEW.note = CONCAT(NEW.note, '¿');
"""),
]

CHANGE = """
SET NAMES utf8mb4;
DELETE FROM t WHERE id = 2; UPDATE t SET name = 'changed';
DROP PROCEDURE ansi_proc; DROP VIEW a_sum; DROP TRIGGER a_second;
CREATE OR REPLACE VIEW v_latin AS SELECT 1 AS c;
CREATE FUNCTION extra() RETURNS INT RETURN 1;
ALTER EVENT ev DISABLE;
ALTER DATABASE CHARACTER SET utf8mb3 COLLATE utf8mb3_bin;
"""


def snapshot(server: MariaDbServer, db: str) -> str:
    """The database's objects as information_schema shows them, its defaults and its rows."""
    name = "'%s'" % db
    return server.sql(
        "SELECT ROUTINE_TYPE, ROUTINE_NAME, SQL_MODE, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION, "
        "HEX(ROUTINE_DEFINITION), HEX(ROUTINE_COMMENT), DTD_IDENTIFIER, IS_DETERMINISTIC, SECURITY_TYPE, DEFINER "
        "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {0} ORDER BY 1, 2; "
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER, SQL_MODE, "
        "CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION, HEX(ACTION_STATEMENT), DEFINER "
        "FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {0} ORDER BY 1; "
        "SELECT TABLE_NAME, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, HEX(VIEW_DEFINITION), CHECK_OPTION, "
        "SECURITY_TYPE, ALGORITHM, DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {0} ORDER BY 1; "
        "SELECT EVENT_NAME, SQL_MODE, TIME_ZONE, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION, "
        "HEX(EVENT_DEFINITION), INTERVAL_VALUE, INTERVAL_FIELD, STARTS, STATUS, ON_COMPLETION, DEFINER "
        "FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {0} ORDER BY 1; "
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
        "WHERE SCHEMA_NAME = {0}; "
        "SELECT id, HEX(name), HEX(note) FROM `{1}`.t ORDER BY id".format(name, db))


def staging_databases(server: MariaDbServer, db: str) -> List[str]:
    """The databases named like the restore's staging ones of ``db``."""
    out = server.sql("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE LOCATE('%s__gr_', SCHEMA_NAME) = 1 "
                     "ORDER BY 1" % db)
    return out.split()


def send(server: MariaDbServer, db: str, script: bytes) -> bytes:
    """Run a script with the mariadb client as a user would: bytes as they are, comments kept."""
    done = subprocess.run(["mariadb", *server.client_args(), "--batch", "--skip-column-names", "--binary-mode",
                           "--comments", "--default-character-set=binary", db], input=script, capture_output=True,
                          env=dict(os.environ, MYSQL_PWD=server.password), check=False)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return done.stdout


@pytest.fixture
def engine_api(collections_path: Path):
    """The collection's database engine (and the MariaDB swap, whose scripts a test breaks), imported in-process."""
    sys.path.insert(0, str(collections_path))
    from ansible_collections.gitops.rollback.plugins.module_utils.db import backup as _db_backup
    from ansible_collections.gitops.rollback.plugins.module_utils.db import mysql_swap as _db_mysql_swap
    from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
    from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
    return _db_backup, _db_mysql_swap, DbConnection, Store


@pytest.fixture
def schema_db(mariadb: MariaDbServer, unique_name: Callable[[str], str]) -> str:
    """A database holding the schema (default character set latin1 when the function was created)."""
    db = unique_name("myobj")
    mariadb.sql("CREATE DATABASE `%s` CHARACTER SET latin1" % db)
    send(mariadb, db, b"".join(text.encode(charset) for charset, text in SCHEMA))
    return db


def requests(engine_api, server: MariaDbServer, db: str, store: Path):
    """Return functions backing up and restoring ``db`` in-process."""
    db_backup, _swap, connection, store_class = engine_api
    conn = connection(engine="mysql", database=db, host=server.host, port=server.port, user=server.user,
                      password=server.password)

    def backup(label: str) -> None:
        db_backup.backup(store_class(str(store)), db_backup.BackupRequest(conn=conn, checkpoint=label), "test", 0)

    def restore(label: str, mode: str) -> dict:
        request = db_backup.RestoreRequest(conn=conn, checkpoint=label, mode=mode, safety_backup=False)
        return db_backup.restore(store_class(str(store)), request, "test", 0)

    return backup, restore


@pytest.mark.parametrize("mode", ["replace", "swap"])
def test_objects_come_back_with_their_modes_character_sets_and_time_zone(
        mariadb: MariaDbServer, schema_db: str, engine_api, tmp_path: Path, mode: str) -> None:
    db = schema_db
    before = snapshot(mariadb, db)
    assert "PIPES_AS_CONCAT,ANSI_QUOTES,STRICT_ALL_TABLES" in before and "+05:30" in before
    assert "\tlatin1\tlatin1_swedish_ci\t" in before and "\tutf8mb4\tutf8mb4_unicode_ci\t" in before
    assert "2D2D206120636F6D6D656E74" in before  # '-- a comment' kept in the procedure's body
    backup, restore = requests(engine_api, mariadb, db, tmp_path / "store")
    backup("v1")
    send(mariadb, db, CHANGE.encode("utf-8"))
    assert snapshot(mariadb, db) != before

    result = restore("v1", mode)

    assert snapshot(mariadb, db) == before
    kept = [result["old_database"]] if mode == "swap" else []
    assert staging_databases(mariadb, db) == kept
    out = send(mariadb, db, "SET NAMES utf8mb4; CALL ansi_proc(); SELECT f FROM fn_view ORDER BY f; "
                            "SELECT HEX(c) FROM v_latin WHERE id = 1; SELECT l FROM a_sum; "
                            "INSERT INTO t (id) VALUES (3); SELECT HEX(note) FROM t WHERE id = 3".encode("utf-8"))
    assert out.decode("utf-8").split("\n")[:-1] == [
        "Ärger 😀 客户·", "Ö 1 😀", "Ö 2 😀", "636166E920A3", "客户 ✓", "E9BF"]


def test_a_failed_swap_puts_the_live_database_back_and_a_rerun_completes(
        mariadb: MariaDbServer, schema_db: str, engine_api, tmp_path: Path, monkeypatch) -> None:
    db = schema_db
    backup, restore = requests(engine_api, mariadb, db, tmp_path / "store")
    backup("v1")
    backed_up = snapshot(mariadb, db)
    send(mariadb, db, CHANGE.encode("utf-8"))
    changed = snapshot(mariadb, db)
    _db_backup, mysql_swap = engine_api[:2]
    real = mysql_swap.creation_script
    calls = []

    def failing_after_two(database, objects, final_info=None):
        """The first re-creation in the live database fails after two objects (tables already moved)."""
        calls.append(database)
        script = real(database, objects, final_info)
        if database == db and calls.count(db) == 1:
            script = real(database, objects[:2], None) + b"DROP TABLE no_such_table_forced_failure;\n"
        return script

    monkeypatch.setattr(mysql_swap, "creation_script", failing_after_two)
    with pytest.raises(mysql_swap.DatabaseError) as failed:
        restore("v1", "replace")
    message = str(failed.value)
    assert "failed while putting the staged copy %s__gr_restore_" % db in message
    assert "swap phase 'objects' (re-creating the views, routines, events and triggers in the live database)" \
        in message
    assert "no_such_table_forced_failure" in message
    assert "%s was put back as it was" % db in message and "the staged copy was dropped" in message
    assert failed.value.details["stage"] == "swap" and failed.value.details["live_database_touched"] is False
    assert snapshot(mariadb, db) == changed
    assert staging_databases(mariadb, db) == []

    monkeypatch.setattr(mysql_swap, "creation_script", real)
    mariadb.sql("CREATE DATABASE `%s__gr_restore_0ld0ne`; CREATE DATABASE `%s__gr_drop`" % (db, db))
    restore("v1", "replace")
    assert snapshot(mariadb, db) == backed_up
    assert staging_databases(mariadb, db) == []
