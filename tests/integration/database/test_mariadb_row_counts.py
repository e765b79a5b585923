"""MariaDB row counts read from the dump itself: tricky values, and a database written during the backup."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harness import MariaDbServer

pytestmark = pytest.mark.slow

TRICKY = r"""
CREATE TABLE t (id INT PRIMARY KEY, s TEXT, b BLOB, j JSON, bits BIT(8), g INT AS (id * 2) VIRTUAL,
                hidden INT INVISIBLE DEFAULT 5) DEFAULT CHARSET = utf8mb4;
CREATE TABLE empty_one (id INT) DEFAULT CHARSET = utf8mb4;
CREATE TABLE `we``ird (x;` (a INT, note VARCHAR(50)) DEFAULT CHARSET = utf8mb4;
CREATE TABLE history (a INT) WITH SYSTEM VERSIONING;
CREATE SEQUENCE seq_no;
CREATE VIEW v AS SELECT 'x
INSERT INTO `t` VALUES (1);' AS a;
CREATE TRIGGER tr AFTER INSERT ON empty_one FOR EACH ROW
INSERT INTO `we``ird (x;` VALUES (NEW.id, '),(');
INSERT INTO t (id, s, b, j, bits) VALUES
  (1, 'it''s', 'a\\b', '{"a": "(,)"}', b'101'), (2, '),(', 0x00FF27, NULL, NULL),
  (3, 'Ünïcødé ✓ 客户\n\r\Z\0', '', '[]', 0), (4, '\\', NULL, NULL, NULL), (5, ');\nINSERT INTO t VALUES (9);', NULL, NULL, 1),
  (6, '', RANDOM_BYTES(255), NULL, NULL), (7, NULL, CONCAT('(', CHAR(0), ')', CHAR(39), ';'), NULL, NULL);
INSERT INTO t (id, s, b) SELECT 100 + seq, REPEAT(CONCAT(CHAR(39), '\\', '),(', CHAR(10)), seq), RANDOM_BYTES(seq % 256)
  FROM seq_1_to_500;
INSERT INTO `we``ird (x;` VALUES (1, 'a'), (2, NULL);
INSERT INTO history VALUES (1), (2);
UPDATE history SET a = 3 WHERE a = 2;
"""


def my_conn(server: MariaDbServer, db: str, **extra: object) -> dict:
    args = {"engine": "mysql", "database": db, "login_host": server.host, "login_port": server.port,
            "login_user": server.user, "login_password": server.password}
    args.update(extra)
    return args


def server_counts(server: MariaDbServer, db: str, tables) -> dict:
    return {t: int(server.sql("SELECT COUNT(*) FROM `%s`" % t.replace("`", "``"), db=db)) for t in tables}


def test_counts_from_the_dump_match_the_server_for_tricky_values(mariadb: MariaDbServer, run_task,
                                                                 store_path: Path, unique_name) -> None:
    db = mariadb.create_database(unique_name("mytricky"))
    mariadb.sql(TRICKY, db=db)
    expected = {"t": 507, "empty_one": 0, "we`ird (x;": 2}
    assert server_counts(mariadb, db, expected) == expected
    checksum = mariadb.sql("CHECKSUM TABLE t, `we``ird (x;`", db=db)

    result, backup = run_task("gitops.rollback.db_backup", my_conn(mariadb, db, store_path=str(store_path),
                                                                   checkpoint="tricky"))
    assert result.rc == 0, str(result)
    assert backup["backup"]["row_counts"] == expected  # base tables only, as the restore counts them
    assert backup["backup"]["row_counts_exact"] is True

    mariadb.sql("DELETE FROM t WHERE id > 200; INSERT INTO empty_one VALUES (1)", db=db)
    result, restored = run_task("gitops.rollback.db_restore", my_conn(mariadb, db, store_path=str(store_path),
                                                                      checkpoint="tricky"))
    assert result.rc == 0, str(result)
    verification = restored["restore"]["verification"]
    assert verification["matched"] is True and verification["differences"] == []
    assert mariadb.sql("CHECKSUM TABLE t, `we``ird (x;`", db=db) == checksum
    assert server_counts(mariadb, db, expected) == expected


def test_counts_are_what_the_dump_holds_while_rows_are_written(mariadb: MariaDbServer, run_task,
                                                               store_path: Path, unique_name) -> None:
    db = mariadb.create_database(unique_name("mybusy"))
    mariadb.sql("CREATE TABLE busy (id INT AUTO_INCREMENT PRIMARY KEY, data MEDIUMBLOB); "
                "INSERT INTO busy (data) SELECT RANDOM_BYTES(1024) FROM seq_1_to_20000", db=db)
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            mariadb.sql("INSERT INTO busy (data) SELECT RANDOM_BYTES(64) FROM seq_1_to_50", db=db)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result, backup = run_task("gitops.rollback.db_backup", my_conn(mariadb, db, store_path=str(store_path),
                                                                       checkpoint="busy"))
    finally:
        stop.set()
        writer.join()
    assert result.rc == 0, str(result)
    recorded = backup["backup"]["row_counts"]["busy"]
    assert backup["backup"]["row_counts_exact"] is True
    assert 20000 <= recorded < int(mariadb.sql("SELECT COUNT(*) FROM busy", db=db))

    result, restored = run_task("gitops.rollback.db_restore", my_conn(mariadb, db, store_path=str(store_path),
                                                                      checkpoint="busy"))
    assert result.rc == 0, str(result)
    assert restored["restore"]["verification"]["matched"] is True
    assert int(mariadb.sql("SELECT COUNT(*) FROM busy", db=db)) == recorded
