# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Extra pg_dump/pg_restore arguments: what passes, what is refused and why."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.db.engines import make_engine
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.db.pg_args import check_extra_args
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError


@pytest.mark.parametrize("args", [
    ["--no-comments", "--exclude-extension=postgis", "--lock-wait-timeout=5s", "-v"],
    ["--no-o", "-x", "-O", "--role=deploy", "-Sroot", "-S", "root"],
    [],
])
def test_options_that_keep_the_backup_checkable_pass(args):
    assert check_extra_args(args, "pg_dump", "dump_extra_args") == args


@pytest.mark.parametrize("tool,args,phrase", [
    ("pg_dump", ["--file=/tmp/x"], "--file: the dump goes into the checkpoint store"),
    ("pg_dump", ["-f", "/tmp/x"], "-f (--file)"),
    ("pg_dump", ["-Fp"], "-F (--format): set the format option"),
    ("pg_dump", ["-xs"], "-s (--schema-only): a dump without the rows"),
    ("pg_dump", ["--fi=/tmp/x"], "--fi (--file)"),  # getopt_long takes unambiguous abbreviations
    ("pg_dump", ["--exclude-table-data=big"], "a partial dump leaves tables out"),
    ("pg_dump", ["--no-unlogged-table-data"], "a partial dump leaves tables out"),
    ("pg_dump", ["--snapshot=1"], "exports its own snapshot"),
    ("pg_dump", ["otherdb"], "'otherdb' is not an option"),
    ("pg_dump", ["--role", "deploy"], "'deploy' is not an option"),
    ("pg_restore", ["-1"], "-1 (--single-transaction)"),
    ("pg_restore", ["--use-list=toc"], "a partial restore leaves tables out"),
    ("pg_restore", ["-d", "other"], "the connection is set by login_host"),
    ("pg_restore", ["--clean"], "fills a new, empty database"),
])
def test_options_that_would_break_the_checks_are_refused_with_the_reason(tool, args, phrase):
    with pytest.raises(RollbackError) as caught:
        check_extra_args(args, tool, "extra")
    assert phrase in str(caught.value) and "Nothing was changed" in str(caught.value)


def test_every_refused_argument_is_named_at_once():
    with pytest.raises(RollbackError) as caught:
        check_extra_args(["--data-only", "--no-owner", "-t", "orders"], "pg_dump", "dump_extra_args")
    assert len(caught.value.details["problems"]) == 2


def test_pg_dump_and_pg_restore_receive_them():
    conn = DbConnection(engine="postgresql", database="shop")
    engine = make_engine(conn, None, {"pg_dump": ["--no-comments"], "pg_restore": ["--no-owner"]})
    argv = engine._dump_argv("shop", "custom", 1, "snap", None)
    assert argv[argv.index("--snapshot=snap") + 1] == "--no-comments"
    assert engine.describe_restore({"format": "custom"}, "<dump>", "shop", 1) == [
        "pg_restore --exit-on-error --no-owner --single-transaction --dbname shop <dump>"]
    with pytest.raises(RollbackError, match="plain SQL dump, which psql restores"):
        engine.check_restore_args({"format": "plain"})


def test_other_engines_refuse_them():
    with pytest.raises(RollbackError, match="leave them out for engine=mysql"):
        make_engine(DbConnection(engine="mysql", database="shop"), None, {"pg_dump": ["--no-comments"]})
