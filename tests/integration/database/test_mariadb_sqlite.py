"""MariaDB and SQLite backup and restore through ansible-playbook against real servers and files."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from harness import MariaDbServer

pytestmark = pytest.mark.slow

SCHEMA = r"""
CREATE TABLE customer (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL,
                       mood ENUM('happy', 'sad') NOT NULL, avatar VARBINARY(64))
  DEFAULT CHARSET = utf8mb4;
CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL, note TEXT,
                     payload LONGBLOB, FOREIGN KEY (customer_id) REFERENCES customer (id))
  DEFAULT CHARSET = utf8mb4;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100)) DEFAULT CHARSET = utf8mb4;
CREATE SEQUENCE invoice_no START WITH 1000 NOCACHE;
CREATE VIEW customer_orders AS
  SELECT c.name, COUNT(o.id) AS n FROM customer c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.name;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW
  INSERT INTO audit (what) VALUES (CONCAT('order ', NEW.id));
DELIMITER ;;
CREATE FUNCTION order_count(cid INT) RETURNS INT READS SQL DATA
BEGIN
  DECLARE n INT;
  SELECT COUNT(*) INTO n FROM orders WHERE customer_id = cid;
  RETURN n;
END;;
DELIMITER ;
INSERT INTO customer (name, mood, avatar)
  SELECT CONCAT('Kunde ', seq, ' Ünïcødé ✓ 客户'), IF(seq % 2, 'happy', 'sad'), RANDOM_BYTES(32) FROM seq_1_to_40;
INSERT INTO orders (customer_id, note, payload)
  SELECT 1 + seq % 40, CONCAT('note ', seq, ' ß'), RANDOM_BYTES(200) FROM seq_1_to_250;
SELECT NEXTVAL(invoice_no) FROM seq_1_to_5;
"""

DAMAGE = """
UPDATE orders SET note = 'changed' WHERE id % 2 = 0;
DELETE FROM orders WHERE id > 200;
INSERT INTO customer (name, mood) VALUES ('intruder', 'sad');
SELECT NEXTVAL(invoice_no) FROM seq_1_to_20;
DROP VIEW customer_orders;
DROP TABLE audit;
ALTER TABLE customer ADD COLUMN extra INT;
"""

TABLES = {"customer": "id, name, mood, HEX(avatar)", "orders": "id, customer_id, note, HEX(payload)",
          "audit": "id, what"}


def my_conn(server: MariaDbServer, db: str, **extra: object) -> dict:
    args = {"engine": "mysql", "database": db, "login_host": server.host, "login_port": server.port,
            "login_user": server.user, "login_password": server.password}
    args.update(extra)
    return args


def my_snapshot(server: MariaDbServer, db: str) -> dict:
    state = {t: server.sql("SELECT %s FROM %s ORDER BY id" % (cols, t), db=db) for t, cols in TABLES.items()}
    state["view"] = server.sql("SELECT * FROM customer_orders ORDER BY name", db=db)
    return state


def make_my_db(server: MariaDbServer, name: str) -> str:
    server.create_database(name)
    server.sql(SCHEMA, db=name)
    return name


@pytest.mark.parametrize("mode,compression", [("replace", "gzip"), ("swap", None)])
def test_mariadb_restore_brings_back_every_row(mariadb: MariaDbServer, run_task, store_path: Path, unique_name,
                                               mode: str, compression: str | None) -> None:
    db = make_my_db(mariadb, unique_name("my"))
    before = my_snapshot(mariadb, db)
    next_order = mariadb.sql("SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = '%s' "
                             "AND TABLE_NAME = 'orders'" % db)
    args = my_conn(mariadb, db, store_path=str(store_path), checkpoint="v1")
    if compression:
        args["compression"] = compression
    result, backup = run_task("gitops.rollback.db_backup", args)
    assert result.rc == 0, str(result)
    assert backup["backup"]["row_counts"] == {"customer": 40, "orders": 250, "audit": 250}
    assert backup["backup"]["row_counts_exact"] is True

    mariadb.sql(DAMAGE, db=db)
    result, restored = run_task("gitops.rollback.db_restore", my_conn(mariadb, db, store_path=str(store_path),
                                                                      checkpoint="v1", mode=mode))
    assert result.rc == 0, str(result)
    assert my_snapshot(mariadb, db) == before
    assert mariadb.sql("SELECT NEXTVAL(invoice_no)", db=db) == "1005"
    assert mariadb.sql("INSERT INTO orders (customer_id) VALUES (3); SELECT LAST_INSERT_ID()", db=db) == next_order
    assert mariadb.sql("SELECT what FROM audit ORDER BY id DESC LIMIT 1", db=db) == "order " + next_order
    assert mariadb.sql("SELECT order_count(3)", db=db) == mariadb.sql(
        "SELECT COUNT(*) FROM orders WHERE customer_id = 3", db=db) != "0"
    assert mariadb.password not in result.stdout + result.stderr
    if mode == "swap":
        old = restored["restore"]["old_database"]
        assert mariadb.sql("SELECT COUNT(*) FROM customer WHERE name = 'intruder'", db=old) == "1"
        assert not [d for d in mariadb.sql("SHOW DATABASES").split() if "__gr_restore_" in d]


def test_sqlite_backup_while_written_and_swap_restore(run_task, store_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript("""
        CREATE TABLE item (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, blob BLOB);
        CREATE VIEW named AS SELECT name FROM item;
        CREATE TRIGGER upper_name AFTER INSERT ON item BEGIN UPDATE item SET name = upper(name) WHERE id = NEW.id; END;
    """)
    conn.executemany("INSERT INTO item (name, blob) VALUES (?, ?)", [("ü%d" % i, os.urandom(64)) for i in range(500)])
    conn.commit()
    stop = threading.Event()

    def writer() -> None:
        other = sqlite3.connect(path, timeout=30)
        while not stop.is_set():
            other.execute("INSERT INTO item (name) VALUES ('during')")
            other.commit()
            time.sleep(0.005)
        other.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result, backup = run_task("gitops.rollback.db_backup", {"engine": "sqlite", "database": str(path),
                                                                "store_path": str(store_path), "checkpoint": "v1"})
    finally:
        stop.set()
        thread.join()
    assert result.rc == 0, str(result)
    recorded = backup["backup"]["row_counts"]["item"]
    assert recorded >= 500
    expected = conn.execute("SELECT id, name, blob FROM item WHERE id <= ? ORDER BY id", (recorded,)).fetchall()
    assert [r[0] for r in expected] == list(range(1, recorded + 1))
    conn.execute("DELETE FROM item WHERE id % 3 = 0")
    conn.execute("DROP VIEW named")
    conn.commit()
    conn.close()

    result, restored = run_task("gitops.rollback.db_restore", {"engine": "sqlite", "database": str(path),
                                                               "store_path": str(store_path), "checkpoint": "v1",
                                                               "mode": "swap"})
    assert result.rc == 0, str(result)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT id, name, blob FROM item ORDER BY id").fetchall() == expected
    assert conn.execute("SELECT count(*) FROM named").fetchone()[0] == recorded
    conn.execute("INSERT INTO item (name) VALUES ('next')")
    assert conn.execute("SELECT max(id), name FROM item WHERE name = 'NEXT'").fetchone()[0] > recorded
    conn.close()
    old = Path(restored["restore"]["old_database"])
    assert old.exists() and old.name.startswith("app.db__gr_old_")
    assert sqlite3.connect(old).execute("SELECT count(*) FROM sqlite_master WHERE name = 'named'").fetchone()[0] == 0
