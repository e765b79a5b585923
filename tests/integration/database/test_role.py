"""The rollback_database role backs up a host's databases and restores them on rollback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from harness import MariaDbServer, PgServer

pytestmark = pytest.mark.slow

PLAY = """
- name: Databases
  hosts: db
  gather_facts: false
  roles:
    - role: gitops.rollback.rollback_database
"""


def test_role_backs_up_and_rolls_back_three_engines(postgres: PgServer, mariadb: MariaDbServer, run_playbook,
                                                    local_inventory: Path, store_path: Path, tmp_path: Path,
                                                    unique_name) -> None:
    pg_db, my_db = unique_name("rolepg"), unique_name("rolemy")
    postgres.create_database(pg_db)
    postgres.psql("CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'v' || g "
                  "FROM generate_series(1, 30) g", db=pg_db)
    mariadb.create_database(my_db)
    mariadb.sql("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT); INSERT INTO t (v) "
                "SELECT CONCAT('v', seq) FROM seq_1_to_30", db=my_db)
    lite = tmp_path / "app.db"
    with sqlite3.connect(lite) as conn:
        conn.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
                           "INSERT INTO t (v) VALUES ('a'), ('b'), ('c');")
    variables = {
        "rollback_database_checkpoint": "v1",
        "rollback_database_store_path": str(store_path),
        "rollback_database_databases": [
            {"engine": "postgresql", "database": pg_db, "login_host": postgres.host, "login_port": postgres.port,
             "login_user": postgres.user},
            {"engine": "mysql", "database": my_db, "name": "shop", "login_host": mariadb.host,
             "login_port": mariadb.port, "login_user": "root"},
            {"engine": "sqlite", "database": str(lite)},
        ],
        "rollback_database_passwords": {"shop": mariadb.password},
    }
    result = run_playbook(PLAY, inventory=local_inventory, extra_vars=variables)
    assert result.rc == 0, str(result)
    assert mariadb.password not in result.stdout
    manifests = list((store_path / "checkpoints").iterdir())
    assert len(manifests) == 1, "three databases, one checkpoint"

    postgres.psql("DELETE FROM t", db=pg_db)
    mariadb.sql("DELETE FROM t WHERE id > 3", db=my_db)
    with sqlite3.connect(lite) as conn:
        conn.execute("DELETE FROM t")
    result = run_playbook(PLAY, inventory=local_inventory, extra_vars=dict(variables, rollback_database_action="restore"))
    assert result.rc == 0, str(result)
    assert postgres.psql("SELECT count(*), max(v) FROM t", db=pg_db) == "30|v9"
    assert mariadb.sql("SELECT COUNT(*) FROM t", db=my_db) == "30"
    with sqlite3.connect(lite) as conn:
        assert conn.execute("SELECT v FROM t ORDER BY id").fetchall() == [("a",), ("b",), ("c",)]

    bad = dict(variables, rollback_database_action="restore", rollback_database_checkpoint="")
    result = run_playbook(PLAY, inventory=local_inventory, extra_vars=bad)
    assert result.rc != 0 and "rollback_database needs" in result.stdout
