"""The rollback_database role backs up a host's databases and restores them on rollback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
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


def _hold_session(postgres: PgServer, db: str) -> subprocess.Popen:
    """Another client connected to ``db`` (as an application would be), once it shows in pg_stat_activity."""
    sleeper = subprocess.Popen(
        [postgres.bin("psql"), "-X", "-h", postgres.host, "-p", str(postgres.port), "-U", postgres.user, "-d", db,
         "-c", "SELECT pg_sleep(600)"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, PGAPPNAME="shop-worker"))
    deadline = time.monotonic() + 30
    while postgres.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shop-worker'") != "1":
        assert time.monotonic() < deadline and sleeper.poll() is None, "the session did not connect"
        time.sleep(0.1)
    return sleeper


def test_role_backs_up_and_rolls_back_three_engines_ending_sessions_only_when_the_item_says_so(
        postgres: PgServer, mariadb: MariaDbServer, run_playbook, local_inventory: Path, store_path: Path,
        tmp_path: Path, unique_name) -> None:
    """One checkpoint of four databases (PostgreSQL, MariaDB, SQLite, and a PostgreSQL one an application
    is connected to): the restore is refused while the application's session is open and the item does not
    say terminate_sessions; with it, the session is ended and every database comes back. A restore
    without a checkpoint is refused."""
    pg_db, my_db, sess_db = unique_name("rolepg"), unique_name("rolemy"), unique_name("rolesess")
    postgres.create_database(pg_db)
    postgres.psql("CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'v' || g "
                  "FROM generate_series(1, 30) g", db=pg_db)
    postgres.create_database(sess_db)
    postgres.psql("CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'v' || g "
                  "FROM generate_series(1, 20) g", db=sess_db)
    mariadb.create_database(my_db)
    mariadb.sql("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT); INSERT INTO t (v) "
                "SELECT CONCAT('v', seq) FROM seq_1_to_30", db=my_db)
    lite = tmp_path / "app.db"
    with sqlite3.connect(lite) as conn:
        conn.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
                           "INSERT INTO t (v) VALUES ('a'), ('b'), ('c');")
    session_item = {"engine": "postgresql", "database": sess_db, "login_host": postgres.host,
                    "login_port": postgres.port, "login_user": postgres.user}
    variables = {
        "rollback_database_checkpoint": "v1",
        "gitops_rollback_store_path": str(store_path),
        "rollback_database_databases": [
            {"engine": "postgresql", "database": pg_db, "login_host": postgres.host, "login_port": postgres.port,
             "login_user": postgres.user},
            # "mariadb", as the example inventory writes it: the mysql engine under its other name
            {"engine": "mariadb", "database": my_db, "name": "shop", "login_host": mariadb.host,
             "login_port": mariadb.port, "login_user": "root"},
            {"engine": "sqlite", "database": str(lite)},
            session_item,
        ],
        "rollback_database_passwords": {"shop": mariadb.password},
    }
    # The backup, then (a second play of the same run, so the variables are play vars, not -e) a restore
    # without a checkpoint, which the role refuses.
    bad = dict(variables, rollback_database_action="restore", rollback_database_checkpoint="")
    result = run_playbook([{"name": "Databases", "hosts": "db", "gather_facts": False, "vars": variables,
                            "roles": [{"role": "gitops.rollback.rollback_database"}]},
                           {"name": "A restore without a checkpoint", "hosts": "db", "gather_facts": False, "vars": bad,
                            "roles": [{"role": "gitops.rollback.rollback_database"}]}], inventory=local_inventory)
    backed_up = [e for e in result.events if e["play"] == "Databases"]
    assert backed_up and all(e["status"] in ("ok", "skipped") for e in backed_up), str(result)
    refusal = [e for e in result.events if e["play"] == "A restore without a checkpoint" and e["status"] == "failed"]
    assert result.rc != 0 and len(refusal) == 1 and "rollback_database needs" in refusal[0]["result"]["msg"], str(result)
    assert mariadb.password not in result.stdout
    manifests = list((store_path / "checkpoints").iterdir())
    assert len(manifests) == 1, "four databases, one checkpoint"

    postgres.psql("DELETE FROM t", db=pg_db)
    postgres.psql("DELETE FROM t", db=sess_db)
    mariadb.sql("DELETE FROM t WHERE id > 3", db=my_db)
    with sqlite3.connect(lite) as conn:
        conn.execute("DELETE FROM t")
    restore = dict(variables, rollback_database_action="restore")
    ending = dict(restore, rollback_database_databases=variables["rollback_database_databases"][:3] + [
        dict(session_item, terminate_sessions=True)])
    # One run: the restore without terminate_sessions (refused; its play ignores the error, so the host goes on),
    # a play that reads what the refusal left, then the restore with terminate_sessions on the session's item.
    psql = [postgres.bin("psql"), "-X", "-A", "-t", "-h", postgres.host, "-p", str(postgres.port), "-U",
            postgres.user, "-d", sess_db, "-c"]
    observe = {"name": "After the refusal", "hosts": "db", "gather_facts": False, "tasks": [
        {"name": "Count the rows", "ansible.builtin.command": {"argv": psql + ["SELECT count(*) FROM t"]},
         "changed_when": False},
        {"name": "Count the sessions", "ansible.builtin.command": {"argv": psql + [
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shop-worker'"]}, "changed_when": False}]}
    sleeper = _hold_session(postgres, sess_db)
    try:
        result = run_playbook([{"name": "Refused", "hosts": "db", "gather_facts": False, "vars": restore,
                                "ignore_errors": True, "roles": [{"role": "gitops.rollback.rollback_database"}]},
                               observe,
                               {"name": "Ending", "hosts": "db", "gather_facts": False, "vars": ending,
                                "roles": [{"role": "gitops.rollback.rollback_database"}]}],
                              inventory=local_inventory)
        assert result.rc == 0, str(result)
        read = (result.result("Count the rows", "db")["stdout"], result.result("Count the sessions", "db")["stdout"])
        assert read == ("0", "1"), "the refused restore changed nothing and left the application's session alone"
        refused = [e for e in result.events if e["play"] == "Refused" and e["status"] == "ignored"
                   and e["action"] == "gitops.rollback.rollback_database"]
        assert refused and "shop-worker" in refused[0]["result"]["msg"], str(result)
        assert "terminate_sessions" in refused[0]["result"]["msg"] and not refused[0]["changed"], refused[0]
        assert sleeper.wait(timeout=30) != 0, "the session was ended"
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    assert postgres.psql("SELECT count(*) FROM t", db=sess_db) == "20"
    assert postgres.psql("SELECT count(*), max(v) FROM t", db=pg_db) == "30|v9"
    assert mariadb.sql("SELECT COUNT(*) FROM t", db=my_db) == "30"
    with sqlite3.connect(lite) as conn:
        assert conn.execute("SELECT v FROM t ORDER BY id").fetchall() == [("a",), ("b",), ("c",)]
    assert mariadb.password not in result.stdout


# The checkpoint.yml / rollback.yml test of a password given only by name (backs up, restores, stays out of a
# verbose rollback) runs with the named Terraform project's: terraform/test_named_project.py.
