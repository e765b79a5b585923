# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration side of each engine: script text and literals per dialect (no server needed)."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrations import terminated
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.db.mysql_migrations import MysqlMigrations
from ansible_collections.gitops.rollback.plugins.module_utils.db.pg_migrations import PgMigrations
from ansible_collections.gitops.rollback.plugins.module_utils.db.sqlite_migrations import SqliteMigrations


def test_terminated_adds_a_missing_semicolon_only():
    assert terminated("SELECT 1") == "SELECT 1\n;\n"
    assert terminated("SELECT 1;\n-- done\n") == "SELECT 1;\n-- done\n"


def test_literals_escape_per_dialect():
    conn = DbConnection(engine="postgresql", database="d")
    assert MysqlMigrations(conn).literal("a'b\\c") == "'a''b\\\\c'"
    assert SqliteMigrations(conn).literal("a'b") == "'a''b'"
    assert PgMigrations(conn).literal("x;\n'y'") == "$gr$x;\n'y'$gr$"
    with pytest.raises(RollbackError, match="NUL"):
        SqliteMigrations(conn).literal("a\x00")


class _LockSession:
    """A client session holding a server-side lock: records what it is sent and when its input is closed."""

    def __init__(self) -> None:
        self.events: list = []
        self.stdin = self
        self.stdout = self
        self.stderr = None
        self.args = ["client"]
        self.returncode = None

    def write(self, data: bytes) -> None:
        self.events.append(("sent", data.decode()))

    def flush(self) -> None:
        pass

    def readline(self) -> bytes:
        return b"|1\n"

    def close(self) -> None:
        self.events.append(("closed",))

    def poll(self):
        return self.returncode

    def wait(self, timeout=None) -> int:
        self.returncode = 0
        return 0


@pytest.mark.parametrize("engine,unlock", [(PgMigrations, "pg_advisory_unlock_all()"), (MysqlMigrations, "RELEASE_ALL_LOCKS()")])
def test_the_lock_is_freed_through_its_session_before_the_session_ends(engine, unlock, monkeypatch):
    """The server frees a closed client's locks only when its backend ends, a moment later: a migration run
    right after another (the next task) found the lock held. The release now frees it and awaits the answer."""
    migrations = engine(DbConnection(engine="postgresql" if engine is PgMigrations else "mysql", database="shop"))
    session = _LockSession()
    migrations._session = session  # pylint: disable=protected-access
    monkeypatch.setattr(migrations, "query", lambda sql, what: "")
    migrations.lock_record = {"token": "t"}
    migrations.release_lock()
    assert session.events[0][0] == "sent" and session.events[1:] and set(session.events[1:]) == {("closed",)}, \
        session.events
    assert unlock in session.events[0][1]
    assert migrations._session is None  # pylint: disable=protected-access
