"""SQLite restores bring back the file, not only its rows: owner, group, mode, WAL mode, header values.

In-process against real database files; the application's user is a real other user (``nobody``)
that opens and writes the restored database in a child process.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import pytest

APP_USER = "nobody"
# The app's interpreter: the system's (a virtualenv under /root is out of the app user's reach).
APP_PYTHON = "/usr/bin/python3"


@pytest.fixture
def eng(collections_path: Path) -> SimpleNamespace:
    """The engine's backup and restore, imported from this repository."""
    if str(collections_path) not in sys.path:
        sys.path.insert(0, str(collections_path))
    from ansible_collections.gitops.rollback.plugins.module_utils.db import backup as _db_backup
    from ansible_collections.gitops.rollback.plugins.module_utils.db import connection as _db_conn
    from ansible_collections.gitops.rollback.plugins.module_utils.store import store as _store
    return SimpleNamespace(db=_db_backup, conn=_db_conn.DbConnection, Store=_store.Store)


@pytest.fixture
def app_dir():
    """A directory the application's user owns (outside pytest's root-only tmp tree)."""
    if os.geteuid() != 0:
        pytest.fail("these tests give files to another user: run them as root (the e2e harness does)", pytrace=False)
    user = pwd.getpwnam(APP_USER)
    path = Path(tempfile.mkdtemp(prefix="gr-sqlite-", dir="/tmp"))
    os.chmod(path, 0o755)
    os.chown(path, user.pw_uid, user.pw_gid)
    yield SimpleNamespace(path=path, uid=user.pw_uid, gid=user.pw_gid)
    shutil.rmtree(path, ignore_errors=True)


def as_app(app_dir: SimpleNamespace, code: str, *args: str) -> str:
    """Run Python ``code`` as the application's user; return its output (fails loudly)."""
    done = subprocess.run([APP_PYTHON, "-c", code, *args], user=app_dir.uid, group=app_dir.gid,
                          extra_groups=[], capture_output=True, text=True, cwd=str(app_dir.path), timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


APP_CREATE = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA page_size = 8192")
c.execute("PRAGMA journal_mode = WAL")
c.execute("PRAGMA user_version = 7")
c.execute("PRAGMA application_id = 1095783766")
c.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
c.executemany("INSERT INTO item (name) VALUES (?)", [("item %d" % n,) for n in range(500)])
c.commit()
c.close()
"""

APP_WRITE = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
c.execute("INSERT INTO item (name) VALUES ('written by the app after the rollback')")
c.commit()
print(c.execute("SELECT count(*) FROM item").fetchone()[0], c.execute("PRAGMA journal_mode").fetchone()[0])
c.close()
"""


def properties(path: Path) -> dict:
    st = path.stat()
    with closing(sqlite3.connect("file:%s?mode=ro" % path, uri=True)) as conn:
        pragmas = {name: conn.execute("PRAGMA %s" % name).fetchone()[0]
                   for name in ("journal_mode", "page_size", "user_version", "application_id")}
        rows = conn.execute("SELECT count(*) FROM item").fetchone()[0]
    return dict(pragmas, uid=st.st_uid, gid=st.st_gid, mode=st.st_mode & 0o7777, rows=rows)


def backup_and_damage(eng, app_dir, store, mode: int = 0o640) -> Path:
    """The app's WAL database with 500 rows backed up as v1 (with rows still in the -wal), then changed."""
    path = app_dir.path / "app.sqlite"
    as_app(app_dir, APP_CREATE, str(path))
    os.chmod(path, mode)
    holder = sqlite3.connect(str(path))  # an open reader keeps the -wal alive, with 20 rows only there
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    holder.executemany("INSERT INTO item (name) VALUES (?)", [("late %d" % n,) for n in range(20)])
    holder.commit()
    try:
        eng.db.backup(store, eng.db.BackupRequest(conn=eng.conn(engine="sqlite", database=str(path)),
                                                  checkpoint="v1"), owner="test")
    finally:
        holder.close()
    with closing(sqlite3.connect(str(path))) as conn:  # the app breaks its data; root writes too
        conn.execute("DELETE FROM item WHERE id > 100")
        conn.execute("PRAGMA user_version = 8")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.commit()
    os.chown(path, 0, 0)
    os.chmod(path, 0o600)
    return path


def restore(eng, store, path: Path, **extra):
    return eng.db.restore(store, eng.db.RestoreRequest(conn=eng.conn(engine="sqlite", database=str(path)),
                                                       checkpoint="v1", **extra), owner="test")


@pytest.mark.parametrize("mode", ["replace", "swap"])
def test_restored_sqlite_file_keeps_owner_mode_wal_and_header(eng, app_dir, tmp_path: Path, mode: str) -> None:
    store = eng.Store(str(tmp_path / "store"))
    path = backup_and_damage(eng, app_dir, store)
    result = restore(eng, store, path, mode=mode)
    assert result["verification"]["matched"]
    # no side file of the old database (nor of the staged copy) is left beside the restored one
    assert sorted(p.name for p in app_dir.path.iterdir() if p.name.startswith("app.sqlite")) == (
        ["app.sqlite"] if mode == "replace" else sorted(["app.sqlite", Path(result["old_database"]).name]))
    assert properties(path) == {"uid": app_dir.uid, "gid": app_dir.gid, "mode": 0o640, "journal_mode": "wal",
                                "page_size": 8192, "user_version": 7, "application_id": 1095783766, "rows": 520}
    # the application, as its own user, writes to its database again after the rollback
    assert as_app(app_dir, APP_WRITE, str(path)).split() == ["521", "wal"]


def test_restore_never_replays_a_stale_write_ahead_log(eng, app_dir, tmp_path: Path) -> None:
    """A -wal left beside a database file that is gone is not replayed onto the restored file."""
    store = eng.Store(str(tmp_path / "store"))
    path = backup_and_damage(eng, app_dir, store)
    # another database of the same page size, its last commits only in its -wal, becomes the leftover log
    other = app_dir.path / "other.sqlite"
    as_app(app_dir, APP_CREATE, str(other))
    writer = sqlite3.connect(str(other))
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("DELETE FROM item")
    writer.commit()
    shutil.copyfile(str(other) + "-wal", str(path) + "-wal")
    writer.close()
    path.unlink()
    restore(eng, store, path)
    assert not os.path.lexists(str(path) + "-wal") and not os.path.lexists(str(path) + "-shm")
    assert properties(path)["rows"] == 520
    assert as_app(app_dir, APP_WRITE, str(path)).split() == ["521", "wal"]


def test_backup_records_the_file_and_checkpoints_the_log(eng, app_dir, tmp_path: Path) -> None:
    store = eng.Store(str(tmp_path / "store"))
    path = app_dir.path / "app.sqlite"
    as_app(app_dir, APP_CREATE, str(path))
    holder = sqlite3.connect(str(path))
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    holder.execute("INSERT INTO item (name) VALUES ('only in the log')")
    holder.commit()
    assert os.path.getsize(str(path) + "-wal") > 0
    try:
        _manifest, component = eng.db.backup(store, eng.db.BackupRequest(
            conn=eng.conn(engine="sqlite", database=str(path)), checkpoint="v1"), owner="test")
        # the log was folded into the file before the copy, and any side file still belongs to the app
        assert os.path.getsize(str(path) + "-wal") == 0
        assert {os.stat(str(path) + s).st_uid for s in ("-wal", "-shm")} == {app_dir.uid}
    finally:
        holder.close()
    assert component.get("row_counts") == {"item": 501}
    info = component.get("database_info")
    assert {k: info[k] for k in ("uid", "gid", "owner", "journal_mode", "page_size", "user_version",
                                 "application_id")} == {
        "uid": app_dir.uid, "gid": app_dir.gid, "owner": APP_USER, "journal_mode": "wal", "page_size": 8192,
        "user_version": 7, "application_id": 1095783766}
