"""Fixtures for the db_migrate tests: one fresh database per test on each engine, a migration chain
writer, and a runner that calls the module as Ansible runs it on a host (without the controller)."""

from __future__ import annotations

import re
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from harness import run_module_process

ENGINES = ("postgresql", "mysql", "sqlite")


@dataclass
class Target:
    """A fresh database on one engine, with independent helpers to inspect it."""

    engine: str
    conn: dict[str, Any]
    sql: Callable[[str], str]
    schema: Callable[[], str]
    server: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def history(self) -> list[tuple[int, str]]:
        """(version, state) rows of the history table, read with the engine's own client."""
        out = self.sql("SELECT version, state FROM gitops_rollback_migrations ORDER BY version")
        rows = []
        for line in out.splitlines():
            version, state = re.split(r"[|\t]", line.strip())
            rows.append((int(version), state))
        return rows


def _pg_target(server: Any, name: str) -> Target:
    server.create_database(name)

    def schema() -> str:
        out = subprocess.run([server.bin("pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
                              "-T", "gitops_rollback_*", "-h", server.host, "-p", str(server.port), "-U", server.user,
                              name], capture_output=True, text=True, check=True).stdout
        return "\n".join(line for line in out.splitlines()
                         if line.strip() and not line.startswith(("--", "\\restrict", "\\unrestrict")))

    conn = dict(engine="postgresql", database=name, login_host=server.host, login_port=server.port,
                login_user=server.user)
    return Target("postgresql", conn, lambda sql: server.psql(sql, db=name), schema, server)


def _my_target(server: Any, name: str) -> Target:
    server.create_database(name)

    def schema() -> str:
        out = subprocess.run(["mariadb-dump", "--no-defaults", "--protocol=TCP", "-h", server.host, "-P", str(server.port),
                              "-u", server.user, "--no-data", "--skip-comments",
                              "--skip-dump-date", "--ignore-table=%s.gitops_rollback_migrations" % name,
                              "--ignore-table=%s.gitops_rollback_labels" % name,
                              "--ignore-table=%s.gitops_rollback_lock" % name,
                              "--ignore-table=%s.gitops_rollback_repairs" % name, name],
                             capture_output=True, text=True, check=True,
                             env={"MYSQL_PWD": server.password, "PATH": "/usr/bin:/bin"}).stdout
        return re.sub(r" AUTO_INCREMENT=\d+", "", out)

    conn = dict(engine="mysql", database=name, login_host=server.host, login_port=server.port,
                login_user=server.user, login_password=server.password)
    return Target("mysql", conn, lambda sql: server.sql(sql, db=name), schema, server)


def _sqlite_target(path: Path) -> Target:
    def run(sql: str) -> str:
        return subprocess.run(["sqlite3", str(path), sql], capture_output=True, text=True, check=True).stdout

    def schema() -> str:
        return run("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'gitops_rollback_%' "
                   "AND name NOT LIKE 'sqlite_%' ORDER BY type, name")

    return Target("sqlite", dict(engine="sqlite", database=str(path)), run, schema)


@pytest.fixture(params=ENGINES)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """A fresh, empty database on each engine in turn."""
    return make_target(request, request.param, tmp_path)


def make_target(request: pytest.FixtureRequest, engine: str, tmp_path: Path) -> Target:
    """A fresh, empty database on ``engine``."""
    name = "mig_%s" % secrets.token_hex(4)
    if engine == "postgresql":
        return _pg_target(request.getfixturevalue("postgres"), name)
    if engine == "mysql":
        return _my_target(request.getfixturevalue("mariadb"), name)
    return _sqlite_target(tmp_path / ("%s.sqlite" % name))


@pytest.fixture
def new_target(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Target]:
    """Factory for a fresh database on a named engine."""
    return lambda engine: make_target(request, engine, tmp_path)


def write_chain(directory: Path, engine: str, count: int) -> Path:
    """Write ``count`` reversible migrations of varied kinds (tables, columns, indexes, views)."""
    directory.mkdir(parents=True, exist_ok=True)
    for version in range(1, count + 1):
        up, down = chain_step(engine, version)
        (directory / ("V%04d__step_%d.up.sql" % (version, version))).write_text(up)
        (directory / ("V%04d__step_%d.down.sql" % (version, version))).write_text(down)
    return directory


def chain_step(engine: str, version: int) -> tuple[str, str]:
    """Up and down SQL of chain step ``version``: every 4th adds a column, index or view."""
    prev = version - 1
    kind = version % 4
    if version > 1 and kind == 2:
        return ("ALTER TABLE t%d ADD COLUMN c%d INTEGER;\n" % (prev, version),
                "ALTER TABLE t%d DROP COLUMN c%d;\n" % (prev, version))
    if version > 1 and kind == 3:
        drop = "DROP INDEX ix%d ON t%d;\n" % (version, prev - 1) if engine == "mysql" else "DROP INDEX ix%d;\n" % version
        return ("-- an index on the table two steps back\nCREATE INDEX ix%d ON t%d (val);\n" % (version, prev - 1), drop)
    if version > 1 and kind == 0:
        return ("CREATE VIEW v%d AS SELECT id, val FROM t%d;\n" % (version, prev - 2), "DROP VIEW v%d;\n" % version)
    return ("CREATE TABLE t%d (\n  id INTEGER PRIMARY KEY,\n  val VARCHAR(50) NOT NULL DEFAULT 'it''s %d'\n);\n"
            "INSERT INTO t%d (id) VALUES (1);\n" % (version, version, version),
            "DROP TABLE t%d;\n" % version)


@pytest.fixture
def migrate(tmp_path: Path) -> Callable[..., Any]:
    """``migrate(target, check=False, **options)`` runs db_migrate once, as Ansible runs it on a host
    but without the controller (:func:`harness.run_module_process`); returns ``(ok, module_result, run)``."""

    def call(target: Target, check: bool = False, **options: Any) -> Any:
        args = dict(target.conn)
        args.update(options)
        result = run_module_process("gitops.rollback.db_migrate", args, check=check, cwd=tmp_path)
        event = result.events[-1]
        return event["status"] == "ok", event["result"], result

    return call


@pytest.fixture(name="write_chain")
def write_chain_fixture() -> Callable[[Path, str, int], Path]:
    """The chain writer, as a fixture (test modules here are not a package)."""
    return write_chain
