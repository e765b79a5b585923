# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite backup and restore with Python's sqlite3 online backup API.

The backup is a consistent copy even while other processes write the database; row counts
are read from that copy, so they describe exactly what was stored. A restore builds the new
file beside the live one, checks it, then renames it into place (with its ``-wal``/``-shm``
companions moved out of the way, so a stale write-ahead log is never replayed onto it).
Processes that keep the old file open keep seeing the old content until they reopen it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from typing import Dict, List, Optional
from urllib.parse import quote

from ._db_common import DatabaseError, adopt_file
from ._fsutil import temp_name, unlink_quietly
from ._store import Store

COMPANIONS = ("-wal", "-shm", "-journal")


def ident(name: str) -> str:
    """Quote an SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


def _open(path: str, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        if not os.path.isfile(path):
            raise DatabaseError("SQLite database %s does not exist. Check the database path." % path)
        return sqlite3.connect("file:%s?mode=ro" % quote(os.path.abspath(path)), uri=True, timeout=30)
    return sqlite3.connect(path, timeout=30)


def row_counts_of(conn: sqlite3.Connection) -> Dict[str, int]:
    """Return exact row counts of every table of an open database."""
    names = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "ORDER BY name")]
    return {name: conn.execute("SELECT count(*) FROM %s" % ident(name)).fetchone()[0] for name in names}


def check_integrity(conn: sqlite3.Connection, path: str) -> None:
    """Fail unless ``PRAGMA quick_check`` finds the database sound."""
    result = conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        raise DatabaseError("SQLite database %s fails its integrity check (%s)." % (path, result))


class SqliteEngine:
    """Backs up and restores SQLite database files (``database`` is the file's path)."""

    name = "sqlite"
    formats = ("sqlite",)
    default_format = "sqlite"

    def __init__(self, conn, maintenance_db: Optional[str] = None) -> None:
        self.conn = conn

    def server_version(self) -> str:
        """Return the SQLite library version."""
        return sqlite3.sqlite_version

    def probe(self, database: str) -> tuple:
        """Return (library version, whether the file exists)."""
        return sqlite3.sqlite_version, self.exists(database)

    def recreate(self, database: str, info: dict) -> None:
        """Remove a leftover file; :meth:`load` creates the database."""
        self.drop(database)

    def databases(self) -> List[str]:
        """SQLite has no server-side list; return nothing."""
        return []

    def exists(self, database: str) -> bool:
        """Tell whether the database file exists."""
        return os.path.isfile(database)

    def size(self, database: str) -> int:
        """Return the size of the database file."""
        return os.path.getsize(database)

    def row_counts(self, database: str) -> Dict[str, int]:
        """Return exact row counts of every table."""
        try:
            with _open(database, readonly=True) as conn:
                return row_counts_of(conn)
        except sqlite3.DatabaseError as exc:
            raise DatabaseError("SQLite database %s cannot be read: %s." % (database, exc)) from exc

    def database_info(self, database: str) -> dict:
        """Return the file mode, to give the restored file the same one."""
        return {"mode": os.stat(database).st_mode & 0o7777}

    def dump(self, store: Store, database: str, fmt: str, jobs: int, compression: Optional[str] = None,
             compression_level: Optional[int] = None) -> dict:
        """Copy the database with the online backup API into the store."""
        tmp = temp_name(store.path("tmp", "sqlite"))
        try:
            try:
                source = _open(database, readonly=True)
                target = sqlite3.connect(tmp)
                try:
                    source.backup(target)
                    check_integrity(target, database)
                    counts = row_counts_of(target)
                    target.execute("PRAGMA journal_mode = DELETE")
                finally:
                    target.close()
                    source.close()
            except sqlite3.DatabaseError as exc:
                raise DatabaseError("SQLite database %s cannot be backed up: %s. Check that it is an SQLite "
                                    "database file." % (database, exc)) from exc
            sha, size = adopt_file(store, tmp)
        finally:
            unlink_quietly(tmp)
        return {"blobs": [sha], "sha256": sha, "size": size, "server_version": sqlite3.sqlite_version,
                "row_counts": counts, "database_info": self.database_info(database)}

    def prepare_source(self, store: Store, component: dict, workdir: str) -> str:
        """Return the stored copy's path (decrypted into ``workdir`` for an encrypted store)."""
        return store.readable_path(component["blobs"][0], workdir)

    def create(self, database: str, info: dict) -> None:
        """Nothing to do: the restored file is created by :meth:`load`."""

    def drop(self, database: str) -> None:
        """Remove a database file and its companions."""
        for suffix in ("",) + COMPANIONS:
            unlink_quietly(database + suffix)

    def load(self, source: str, component: dict, database: str, jobs: int) -> None:
        """Copy the stored database to ``database`` (a staging path) and check it."""
        shutil.copyfile(source, database)
        os.chmod(database, component.get("database_info", {}).get("mode", 0o600))
        with _open(database) as conn:
            check_integrity(conn, database)

    def swap(self, live: str, staged: str, old: Optional[str]) -> None:
        """Rename ``staged`` over ``live``; keep the old file as ``old`` (or drop it)."""
        if os.path.exists(live):
            try:
                with _open(live) as conn:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.DatabaseError:
                pass  # a damaged live file is replaced all the same
            keep = old or temp_name(live)
            for suffix in COMPANIONS:
                if os.path.exists(live + suffix):
                    os.rename(live + suffix, keep + suffix)
            os.link(live, keep)
        else:
            keep = None
        os.rename(staged, live)
        if old is None and keep:
            self.drop(keep)

    def staging_name(self, live: str, suffix: str) -> str:
        """Return a path beside the live file for a staged or kept copy."""
        return "%s%s" % (live, suffix)

    def describe_restore(self, component: dict, source: str, database: str, jobs: int) -> List[str]:
        """Return the steps a restore takes."""
        return ["copy <backup> to a staging file beside %s, PRAGMA quick_check, rename into place" % database]
