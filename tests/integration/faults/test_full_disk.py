"""A store on a small tmpfs that fills up during a checkpoint and during a database backup:
a clear error, no half checkpoint, earlier checkpoints intact and restorable."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest


def files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def big_files(root: Path) -> None:
    for index in range(4):
        (root / ("big%d.bin" % index)).write_bytes(os.urandom(1_000_000))


def many_files(root: Path) -> None:
    """Enough small files that the capture hands them to worker processes, which fill the disk."""
    for index in range(400):
        (root / "many" / ("f%03d.bin" % index)).parent.mkdir(exist_ok=True)
        (root / "many" / ("f%03d.bin" % index)).write_bytes(os.urandom(12_000))


@pytest.mark.parametrize("key,filler", [(None, big_files), ("full-disk-key-0123456789", big_files),
                                        (None, many_files)], ids=["plain-big", "encrypted-big", "plain-many"])
def test_checkpoint_filling_the_disk_fails_clearly_and_keeps_earlier_ones(run_task, tmp_path, tmpfs, key, filler):
    store = tmpfs("3m") / "store"
    root = tmp_path / "app"
    root.mkdir()
    (root / "app.conf").write_text("v1\n")
    (root / "small.bin").write_bytes(os.urandom(500_000))
    base = {"store_path": str(store), **({"encryption_key": key} if key else {})}
    _result, first = run_task("gitops.rollback.checkpoint", dict(base, paths=[str(root)], label="v1"))
    assert first["status"] == "ok", first
    v1 = files(root)
    (root / "app.conf").write_text("v2\n")
    filler(root)

    _result, full = run_task("gitops.rollback.checkpoint", dict(base, paths=[str(root)], label="v2"))
    assert full["status"] == "ignored", full
    assert "full" in full["msg"].lower() or "space" in full["msg"].lower(), full["msg"]
    _result, info = run_task("gitops.rollback.checkpoint_info", base)
    assert [cp["label"] for cp in info["checkpoints"]] == ["v1"]
    assert not list((store / "tmp").iterdir()), "temporary objects are cleaned up"
    _result, verified = run_task("gitops.rollback.checkpoint", dict(base, state="verified"))
    assert verified["status"] == "ok", verified

    for path in sorted(root.rglob("*"), reverse=True):
        if path.name != "app.conf" and path.name != "small.bin":
            path.rmdir() if path.is_dir() else path.unlink()
    _result, restored = run_task("gitops.rollback.restore", dict(base, checkpoint="v1", paths=[str(root)],
                                                                 safety_checkpoint=False))
    assert restored["status"] == "ok", restored
    assert files(root) == v1


def test_database_backup_filling_the_disk_fails_clearly_and_keeps_earlier_backups(run_task, tmp_path, tmpfs):
    store = tmpfs("2m") / "store"
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (v blob)")
        conn.execute("INSERT INTO t VALUES (?)", (os.urandom(300_000),))
    args = {"engine": "sqlite", "database": str(db), "store_path": str(store)}
    _result, first = run_task("gitops.rollback.db_backup", dict(args, checkpoint="v1"))
    assert first["status"] == "ok", first
    with sqlite3.connect(db) as conn:
        original = conn.execute("SELECT v FROM t").fetchall()
        conn.executemany("INSERT INTO t VALUES (?)", [(os.urandom(500_000),) for _row in range(6)])

    _result, full = run_task("gitops.rollback.db_backup", dict(args, checkpoint="v2"))
    assert full["status"] == "ignored", full
    assert "full" in full["msg"].lower() or "space" in full["msg"].lower(), full["msg"]
    assert not list((store / "tmp").iterdir()), "no partial dump left behind"
    _result, info = run_task("gitops.rollback.checkpoint_info", {"store_path": str(store)})
    assert [cp["label"] for cp in info["checkpoints"]] == ["v1"]

    _result, restored = run_task("gitops.rollback.db_restore", dict(args, checkpoint="v1", safety_backup=False))
    assert restored["status"] == "ok", restored
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == original
