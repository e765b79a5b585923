"""A migration run's lock is free the moment the run returns: the next run (the next task) takes it at once,
with no wait (lock_timeout 0), on the real servers. The server frees a closed client's locks only when its
backend ends, a moment after the client; under load the next run used to find the lock still held."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import MariaDbServer, PgServer

pytestmark = pytest.mark.slow

RUNS = 15


def engines(collections_path: Path) -> Any:
    sys.path.insert(0, str(collections_path))
    from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
    from ansible_collections.gitops.rollback.plugins.module_utils.db.mysql_migrations import MysqlMigrations
    from ansible_collections.gitops.rollback.plugins.module_utils.db.pg_migrations import PgMigrations
    return DbConnection, {"postgresql": PgMigrations, "mysql": MysqlMigrations}


def take_and_free(engine_class: Any, conn: Any) -> None:
    """Run after run, as two tasks in a row do: each takes the lock without waiting and frees it."""
    for run in range(RUNS):
        migrations = engine_class(conn)
        migrations.acquire_lock("run %d" % run, 60, 0)
        migrations.release_lock()


def test_postgresql_lock_is_free_when_a_run_returns(postgres: PgServer, collections_path: Path) -> None:
    connection, classes = engines(collections_path)
    name = postgres.create_database("lockfree_" + secrets.token_hex(4))
    conn = connection(engine="postgresql", database=name, host=postgres.host, port=postgres.port, user=postgres.user,
                      client_bin_dir=str(postgres.bin_dir))
    take_and_free(classes["postgresql"], conn)
    assert postgres.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0"


def test_mariadb_lock_is_free_when_a_run_returns(mariadb: MariaDbServer, collections_path: Path) -> None:
    connection, classes = engines(collections_path)
    name = mariadb.create_database("lockfree_" + secrets.token_hex(4))
    conn = connection(engine="mysql", database=name, host=mariadb.host, port=mariadb.port, user=mariadb.user,
                      password=mariadb.password)
    take_and_free(classes["mysql"], conn)
    assert mariadb.sql("SELECT IS_FREE_LOCK('gitops_rollback.%s')" % name).strip() == "1"
