# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the database backup logic that needs no server."""

from __future__ import annotations

import os
import sys
import time

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.db import backup as db
from ansible_collections.gitops.rollback.plugins.module_utils.db.streams import (
    DumpStream, compare_counts, feed_pipeline, safe_relpath,
)
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.db.mysql import literal, unescape
from ansible_collections.gitops.rollback.plugins.module_utils.db.pg import PgEngine
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import (
    CheckpointNotFound, CommandError, IntegrityError, LockHeldError, RollbackError,
)
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


@pytest.fixture
def store(tmp_path):
    st = Store(str(tmp_path / "store"))
    st.init()
    return st


def attach(store, label, engine="postgresql", database="shop", created="2026-01-01T00:00:00Z", data=b"x"):
    sha = store.put_bytes(data + label.encode())
    manifest = store.find_optional(label) or store.new_manifest(label=label)
    store.attach_component(manifest, {"type": "database", "name": "%s/%s" % (engine, database), "engine": engine,
                                      "database": database, "blobs": [sha], "sha256": sha, "created": created,
                                      "format": "custom", "row_counts": {"t": 1}})
    return manifest


@pytest.mark.parametrize("text,seconds", [("30", 30), ("90m", 5400), ("12h", 43200), ("7d", 604800),
                                          ("2w", 1209600), (None, None), ("", None)])
def test_parse_duration(text, seconds):
    assert db.parse_duration(text) == seconds


def test_parse_duration_refuses_garbage():
    with pytest.raises(RollbackError, match="not a duration"):
        db.parse_duration("a week")


def test_compare_counts_names_every_difference():
    assert compare_counts({"a": 1, "b": 2}, {"a": 1, "b": 2}) == []
    assert compare_counts({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 0}) == [
        {"table": "b", "expected": 2, "actual": 3}, {"table": "c", "expected": None, "actual": 0}]


@pytest.mark.parametrize("rel", ["../etc/passwd", "/etc/passwd", "a/../../b", "."])
def test_safe_relpath_refuses_escapes(rel):
    with pytest.raises(IntegrityError):
        safe_relpath(rel)


def test_safe_relpath_accepts_plain_names():
    assert safe_relpath("toc.dat") == "toc.dat"
    assert safe_relpath("sub/3001.dat.gz") == "sub/3001.dat.gz"


def test_staging_names_refuse_names_the_server_would_truncate():
    manifest = "20261121T220657.696Z-42d293"  # the checkpoint id
    staged, old = db.staging_names("postgresql", "shop", manifest)
    assert staged == "shop__gr_restore_42d293" and old.startswith("shop__gr_old_")
    with pytest.raises(RollbackError, match="too long for swap mode"):
        db.staging_names("postgresql", "x" * 50, manifest)
    db.staging_names("sqlite", "/srv/" + "x" * 80 + ".db", manifest)


class _Named:
    """An engine that knows which databases exist."""

    def __init__(self, name: str, existing: set) -> None:
        self.name, self.existing = name, existing

    def exists(self, database: str) -> bool:
        return database in self.existing


def test_a_second_swap_in_the_same_second_keeps_the_first_ones_old_database():
    """Two swap restores within one second got the same kept-old name: the second failed on it (PostgreSQL,
    MariaDB) or would have replaced the first one's kept file (SQLite)."""
    taken = {"shop__gr_old_20261204T121416", "shop__gr_old_20261204T121416_2"}
    engine = _Named("postgresql", taken)
    assert db.unused_old_name(engine, "shop", "shop__gr_old_20261204T121416") == "shop__gr_old_20261204T121416_3"
    assert db.unused_old_name(engine, "shop", "shop__gr_old_20261204T121417") == "shop__gr_old_20261204T121417"
    longest = "d" * (63 - len("__gr_old_20261204T121416"))
    engine.existing = {longest + "__gr_old_20261204T121416"}
    with pytest.raises(RollbackError, match="too long for swap mode"):
        db.unused_old_name(engine, longest, longest + "__gr_old_20261204T121416")


def test_a_kept_sqlite_file_or_link_is_never_replaced(tmp_path):
    live = tmp_path / "app.db"
    (tmp_path / "app.db__gr_old_20261204T121416").write_bytes(b"first kept")
    os.symlink("/nonexistent", str(tmp_path / "app.db__gr_old_20261204T121416_2"))
    name = db.unused_old_name(_Named("sqlite", set()), str(live), str(live) + "__gr_old_20261204T121416")
    assert name == str(live) + "__gr_old_20261204T121416_3"


def test_prune_keeps_the_newest_and_collects_objects(store):
    for label in ("r1", "r2", "r3", "r4"):
        attach(store, label)
    removed = db.prune_backups(store, "postgresql/shop", keep=2, older_than=None)
    assert len(removed) == 2
    assert [b["label"] for b in db.list_backups(store)] == ["r3", "r4"]
    assert len(store.ids()) == 2, "checkpoints left empty are deleted"
    assert store.collect_garbage() == (0, 0)


def test_prune_by_age_never_drops_the_newest(store):
    attach(store, "old1", created="2020-01-01T00:00:00Z")
    attach(store, "old2", created="2020-01-02T00:00:00Z")
    assert len(db.prune_backups(store, "postgresql/shop", keep=None, older_than=86400)) == 1
    assert [b["label"] for b in db.list_backups(store)] == ["old2"]


def test_locate_backup_explains_engine_mismatch_and_absence(store):
    attach(store, "v1", engine="postgresql", database="shop")
    with pytest.raises(RollbackError, match="holds a postgresql dump of 'shop'.*cannot be restored into mysql"):
        db.locate_backup(store, "v1", "mysql", "shop")
    with pytest.raises(CheckpointNotFound, match="has no backup of postgresql/other.*postgresql/shop"):
        db.locate_backup(store, "v1", "postgresql", "other")
    with pytest.raises(CheckpointNotFound, match="'v9' is not in"):
        db.locate_backup(store, "v9", "postgresql", "shop")


def test_verify_backup_refuses_a_corrupted_blob(store):
    manifest = attach(store, "v1")
    component = manifest["components"][0]
    path = store.blob_path(component["sha256"])
    with open(path, "wb") as handle:
        handle.write(b"tampered")
    with pytest.raises(IntegrityError, match="is damaged.*hash mismatch.*Nothing was changed"):
        db.verify_backup(store, component, 2)


def test_restore_lock_refuses_a_second_holder(store):
    with db.restore_lock(store, "postgresql", "shop", "alice", 0):
        with pytest.raises(LockHeldError, match="locked by alice"):
            db.restore_lock(store, "postgresql", "shop", "bob", 0)
        db.restore_lock(store, "postgresql", "other", "bob", 0).release()


def test_dump_stream_fails_when_any_stage_fails(store):
    producer = [sys.executable, "-c", "import sys; sys.stdout.write('data' * 1000)"]
    sha, size = DumpStream(store, producer, "dump").run()
    assert size == 4000 and store.read_blob(sha) == b"data" * 1000
    failing = [sys.executable, "-c", "import sys; sys.stdout.write('partial'); sys.stderr.write('boom'); sys.exit(3)"]
    with pytest.raises(CommandError, match="rc=3.*boom"):
        DumpStream(store, failing, "dump").run()
    with pytest.raises(CommandError, match="rc=4"):
        DumpStream(store, producer, "dump", compressor=[sys.executable, "-c", "import sys; sys.exit(4)"]).run()
    assert not os.listdir(store.path("tmp"))


def test_feed_pipeline_checks_the_first_stage_too(tmp_path):
    source = tmp_path / "in"
    source.write_bytes(b"abc")
    cat = [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())"]
    assert feed_pipeline([cat, cat], str(source), "feed") == b"abc"
    with pytest.raises(CommandError, match="rc=2"):
        feed_pipeline([[sys.executable, "-c", "import sys; sys.exit(2)"], cat], str(source), "feed")


def test_feed_pipeline_names_the_stage_that_failed_not_the_one_that_lost_its_reader(tmp_path):
    source = tmp_path / "in"
    source.write_bytes(b"x" * (8 * 1024 * 1024))  # more than a pipe holds: the first stage still writes
    gone = [sys.executable, "-c", "import sys; sys.stdin.buffer.read(1); sys.stderr.write('lost the server'); "
                                  "sys.exit(3)"]
    with pytest.raises(CommandError, match="rc=3.*lost the server"):
        feed_pipeline([["cat"], gone], str(source), "feed")


def test_feed_pipeline_names_a_missing_program_and_leaves_no_stage_running(tmp_path):
    source, marker = tmp_path / "in", tmp_path / "still-running"
    source.write_bytes(b"abc")
    first = [sys.executable, "-c", "import sys, time; time.sleep(2); open(sys.argv[1], 'w').close()", str(marker)]
    with pytest.raises(CommandError, match="feed: the program gzip-that-is-not-there is not installed or not on PATH"):
        feed_pipeline([first, ["gzip-that-is-not-there", "-d"]], str(source), "feed")
    time.sleep(2.5)
    assert not marker.exists(), "the first stage kept running after the pipeline failed"


def test_pg_dump_argv_keeps_the_password_out():
    conn = DbConnection("postgresql", "shop", host="db1", port=5433, user="app", password="s3cret")
    argv = PgEngine(conn)._dump_argv("shop", "directory", 4, "00000003-1", 6)
    assert "s3cret" not in " ".join(argv)
    assert argv[1:3] == ["--format=d", "--snapshot=00000003-1"]
    assert "--jobs=4" in argv and "--compress=6" in argv and argv[argv.index("--dbname") + 1] == "shop"
    assert "--jobs=4" not in PgEngine(conn)._dump_argv("shop", "custom", 4, "s", None)


def test_mysql_quoting():
    assert literal("it's \\") == "'it''s \\\\'"
    assert unescape("a\\tb\\nc\\\\d") == "a\tb\nc\\d"
