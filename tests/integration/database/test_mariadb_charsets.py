"""MariaDB text in several character sets, and routines holding non-ASCII text, come back byte for byte.

The restore splits the dump into statements as bytes (``--default-character-set=binary``); these
values put quotes, backslashes and delimiters right beside multi-byte characters, including
Shift-JIS and GBK characters whose second byte is a backslash in those character sets.
"""

from __future__ import annotations

import subprocess

import pytest

from harness import MariaDbServer

pytestmark = pytest.mark.slow

SCHEMA = r"""
SET NAMES utf8mb4;
CREATE TABLE texts (id INT PRIMARY KEY, u VARCHAR(200) CHARACTER SET utf8mb4, l VARCHAR(200) CHARACTER SET latin1,
                    s VARCHAR(200) CHARACTER SET sjis, g VARCHAR(200) CHARACTER SET gbk, b VARBINARY(200),
                    t TEXT CHARACTER SET utf8mb4) DEFAULT CHARSET = latin1;
INSERT INTO texts VALUES
  (1, '😀 emoji ✓ 客户 ß', 'café ÿ £', '表示 ソフト 十', '中文 誠 乗', 0x5C27223B0A00FF, 'línea\nnueva\ttab'),
  (2, 'it''s \\ "q" ; -- /* not */ #', 'a\\b''c;', '\\表\\''ソ;', '誠\\''乗;', 0x27273B3B, 'DELIMITER ;;'),
  (3, '客\\', 'é\\', '表', '乗\\', 0x5C, ');\nINSERT INTO `x` VALUES (1);'),
  (4, '', NULL, '', NULL, X'', NULL);
CREATE VIEW greeting AS SELECT '客户 😀 表' AS hello, u FROM texts WHERE id = 1;
SET SESSION sql_mode = 'PIPES_AS_CONCAT,NO_BACKSLASH_ESCAPES';
DELIMITER ;;
CREATE PROCEDURE greet() BEGIN SELECT '表示 ' || '😀' || ' it''s ; \' AS g; END;;
CREATE TRIGGER texts_note BEFORE INSERT ON texts FOR EACH ROW SET NEW.t = CONCAT('ソフト ', IFNULL(NEW.t, '客'));;
DELIMITER ;
"""

SNAPSHOT = ("SET NAMES utf8mb4; SELECT id, HEX(u), HEX(l), HEX(s), HEX(g), HEX(b), HEX(t) FROM texts ORDER BY id; "
            "SELECT HEX(hello), HEX(u) FROM greeting; CALL greet(); "
            "SELECT ROUTINE_NAME, SQL_MODE, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION, "
            "HEX(ROUTINE_DEFINITION) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE(); "
            "SELECT TRIGGER_NAME, SQL_MODE, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION, "
            "HEX(ACTION_STATEMENT) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE(); "
            "SELECT TABLE_NAME, CHARACTER_SET_CLIENT, COLLATION_CONNECTION FROM information_schema.VIEWS "
            "WHERE TABLE_SCHEMA = DATABASE()")


def test_mariadb_text_of_every_character_set_comes_back_byte_for_byte(mariadb: MariaDbServer, run_task,
                                                                      store_path, unique_name) -> None:
    db = unique_name("mycs")
    mariadb.create_database(db)
    mariadb.sql(SCHEMA, db=db)
    before = mariadb.sql(SNAPSHOT, db=db)
    assert "955C" in before  # Shift-JIS 表: its second byte is a backslash
    assert "PIPES_AS_CONCAT,NO_BACKSLASH_ESCAPES" in before  # the procedure's own sql_mode, kept by the restore
    assert mariadb.sql("SET NAMES utf8mb4; SELECT s, g FROM texts WHERE id = 1", db=db) == "表示 ソフト 十\t中文 誠 乗"
    args = {"engine": "mysql", "database": db, "login_host": mariadb.host, "login_port": mariadb.port,
            "login_user": mariadb.user, "login_password": mariadb.password, "store_path": str(store_path)}
    result, backup = run_task("gitops.rollback.db_backup", dict(args, checkpoint="v1"))
    assert result.rc == 0, str(result)
    assert backup["backup"]["row_counts"] == {"texts": 4}

    mariadb.sql("DELETE FROM texts WHERE id > 1; UPDATE texts SET u = 'x'; DROP PROCEDURE greet", db=db)
    result, _restored = run_task("gitops.rollback.db_restore", dict(args, checkpoint="v1"))
    assert result.rc == 0, str(result)
    assert mariadb.sql(SNAPSHOT, db=db) == before
    assert mariadb.sql("SET NAMES utf8mb4; INSERT INTO texts (id) VALUES (5); SELECT t FROM texts WHERE id = 5",
                       db=db) == "ソフト 客"


def test_migrations_talk_utf8mb4_when_no_option_file_sets_a_character_set(mariadb: MariaDbServer, run_task,
                                                                          tmp_path, unique_name) -> None:
    printed = subprocess.run(["mariadb", "--print-defaults"], capture_output=True, text=True, check=True,
                             env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}).stdout
    assert "character-set" not in printed, "this test needs option files that set no client character set"
    db = unique_name("mymig")
    mariadb.create_database(db)
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "V1__names.up.sql").write_text(
        "CREATE TABLE names (id INT PRIMARY KEY, n VARCHAR(20) CHARACTER SET utf8mb4);\n"
        "INSERT INTO names VALUES (1, 'Ä');\n"
        "CREATE VIEW v_names AS SELECT n, 'Ö' AS o FROM names;\n", encoding="utf-8")
    (migrations / "V1__names.down.sql").write_text("DROP VIEW v_names;\nDROP TABLE names;\n", encoding="utf-8")
    args = {"engine": "mysql", "database": db, "login_host": mariadb.host, "login_port": mariadb.port,
            "login_user": mariadb.user, "login_password": mariadb.password, "store_path": str(tmp_path / "store"),
            "operation": "apply", "migrations_dir": str(migrations)}
    _result, task = run_task("gitops.rollback.db_migrate", args)
    assert task["status"] == "ok", task
    assert mariadb.sql("SELECT HEX(n) FROM names", db=db) == "C384"  # 'Ä', not 'Ã„' (C383E2809E)
    assert mariadb.sql("SELECT HEX(o) FROM v_names", db=db) == "C396"
    assert mariadb.sql("SELECT CONCAT(CHARACTER_SET_CLIENT, ' ', COLLATION_CONNECTION) FROM information_schema.VIEWS "
                       "WHERE TABLE_SCHEMA = '%s'" % db).startswith("utf8mb4 utf8mb4_")
