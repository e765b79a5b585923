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
