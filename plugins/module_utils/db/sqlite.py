# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite's adapter: backup and restore with Python's sqlite3 online backup API; its migration side is
``db.sqlite_migrations.SqliteMigrations`` (``SqliteEngine.migrations()``).

The backup checkpoints the write-ahead log (best effort), then takes a consistent copy even
while other processes write the database; row counts are read from that copy, so they describe
exactly what was stored. It records the file's owner, group and mode and the database's
``journal_mode``, ``page_size``, ``user_version`` and ``application_id``.

A restore builds the new file beside the live one (created exclusively, never through a link),
checks it, gives it the recorded owner, group, mode and journal mode, then renames it into place.
The live file's ``-wal``/``-shm``/``-journal`` companions are moved out of the way first, even
when the database file itself is gone, so a stale write-ahead log is never replayed onto the
restored file. Processes that keep the old file open keep seeing the old content until they
reopen it.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing
from typing import Dict, List, Optional
from urllib.parse import quote

from .streams import DatabaseError, adopt_file
from .sqlite_migrations import SqliteMigrations
from ..common.errors import UnsafePathError
from ..common.fsutil import temp_name, unlink_quietly
from ..common.nofollow import CREATE_FLAGS, READ_FLAGS, open_parent, plain_file_problem
from ..store.store import Store
from ..store.tree import gid_for, group_name, uid_for, user_name

COMPANIONS = ("-wal", "-shm", "-journal")
# Header values a restore gives back: PRAGMA name -> settable after the copy.
HEADER_PRAGMAS = ("page_size", "user_version", "application_id")
_COPY_CHUNK = 1 << 20


def ident(name: str) -> str:
    """Quote an SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


def check_database_path(path: str) -> None:
    """Refuse a database file that is a symlink, not a regular file, or below a symlinked directory.

    SQLite opens files by path; the file is checked just before, so a link planted in a directory the
    application can write makes the module stop instead of reading or writing what the link names.
    """
    problem = plain_file_problem(path)
    if problem:
        raise UnsafePathError("Refusing the SQLite database %s: %s. Nothing was read or changed through it. "
                              "Name the real database file (no symlink on its path)." % (path, problem), path=path)


def _open(path: str, readonly: bool = False) -> sqlite3.Connection:
    check_database_path(path)
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


def header_values(conn: sqlite3.Connection) -> Dict[str, int]:
    """Return the page size, user_version and application_id of an open database."""
    return {name: int(conn.execute("PRAGMA %s" % name).fetchone()[0]) for name in HEADER_PRAGMAS}


def checkpoint_wal(path: str) -> None:
    """Fold the write-ahead log into the database file, best effort (a busy reader only delays it).

    As root SQLite gives any ``-wal``/``-shm`` file it creates the database file's owner.
    """
    try:
        with closing(_open(path)) as conn:
            conn.execute("PRAGMA busy_timeout = 2000")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.DatabaseError:
        pass  # the online backup still copies the committed WAL content


def copy_new(source: str, dest: str, mode: int) -> None:
    """Copy ``source`` to a new file ``dest`` (never through an existing file or link), ``mode`` set."""
    dir_fd, name = open_parent(dest)
    try:
        fd = os.open(name, CREATE_FLAGS, 0o600, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        with open(source, "rb") as src:
            for chunk in iter(lambda: src.read(_COPY_CHUNK), b""):
                os.write(fd, chunk)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def give_owner(path: str, info: dict) -> None:
    """Give the file the recorded owner and group (names first, then the recorded ids) and mode."""
    if "uid" not in info:
        return
    uid, gid = uid_for(info.get("owner"), info["uid"]), gid_for(info.get("group"), info["gid"])
    dir_fd, name = open_parent(path)
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError("The staged SQLite file %s is no longer a regular file; nothing was changed "
                                  "through it." % path, path=path)
        if (st.st_uid, st.st_gid) != (uid, gid):
            try:
                os.fchown(fd, uid, gid)
            except PermissionError as exc:
                raise DatabaseError(
                    "The restored SQLite file %s cannot be given its owner %s:%s (uid %d, gid %d) as this user; "
                    "run the restore as root (become: true) or as that user." % (
                        path, info.get("owner") or uid, info.get("group") or gid, uid, gid)) from exc
        os.fchmod(fd, info.get("mode", 0o600))
    finally:
        os.close(fd)


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

    def migrations(self) -> SqliteMigrations:
        """Return the migration side (history, lock, scratch copy) of the database file."""
        return SqliteMigrations(self.conn)

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
        """Return the file's mode, owner and group and the database's journal mode and header values."""
        check_database_path(database)
        st = os.stat(database, follow_symlinks=False)
        info = {"mode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid,
                "owner": user_name(st.st_uid), "group": group_name(st.st_gid)}
        try:
            with closing(_open(database, readonly=True)) as conn:
                info["journal_mode"] = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                info.update(header_values(conn))
        except sqlite3.DatabaseError as exc:
            raise DatabaseError("SQLite database %s cannot be read: %s." % (database, exc)) from exc
        return {key: value for key, value in info.items() if value is not None}

    def dump(self, store: Store, database: str, fmt: str, jobs: int, compression: Optional[str] = None,
             compression_level: Optional[int] = None) -> dict:
        """Copy the database with the online backup API into the store."""
        tmp = temp_name(store.path("tmp", "sqlite"))
        if os.path.isfile(database):
            checkpoint_wal(database)
        try:
            try:
                info = self.database_info(database)
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
                "row_counts": counts, "database_info": info}

    def prepare_source(self, store: Store, component: dict, workdir: str) -> str:
        """Return the stored copy's path (decrypted into ``workdir`` for an encrypted store)."""
        return store.readable_path(component["blobs"][0], workdir)

    def create(self, database: str, info: dict) -> None:
        """Nothing to do: the restored file is created by :meth:`load`."""

    def drop(self, database: str) -> None:
        """Remove a database file and its companions."""
        try:
            dir_fd, name = open_parent(database)
        except FileNotFoundError:
            return
        try:
            for suffix in ("",) + COMPANIONS:
                try:
                    os.unlink(name + suffix, dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
        finally:
            os.close(dir_fd)

    def load(self, source: str, component: dict, database: str, jobs: int) -> None:
        """Copy the stored database to ``database`` (a new staging file) and check it."""
        copy_new(source, database, component.get("database_info", {}).get("mode", 0o600))
        with closing(_open(database)) as conn:
            check_integrity(conn, database)

    def apply_properties(self, database: str, info: dict) -> None:
        """Give the staged file the backed-up owner, group, mode, journal mode and header values."""
        give_owner(database, info)
        try:
            with closing(_open(database)) as conn:
                for name in ("user_version", "application_id"):
                    if name in info and int(conn.execute("PRAGMA %s" % name).fetchone()[0]) != int(info[name]):
                        conn.execute("PRAGMA %s = %d" % (name, int(info[name])))
                if str(info.get("journal_mode", "")).lower() == "wal":  # the one mode the file itself keeps
                    conn.execute("PRAGMA journal_mode = WAL").fetchone()
                got = header_values(conn)
        except sqlite3.DatabaseError as exc:
            raise DatabaseError("SQLite database %s cannot be given its journal mode and header values: %s."
                                % (database, exc)) from exc
        wrong = ["%s %s instead of %s" % (name, got[name], info[name]) for name in HEADER_PRAGMAS
                 if name in info and got[name] != int(info[name])]
        if wrong:
            raise DatabaseError("The restored SQLite database %s has %s." % (database, ", ".join(wrong)))
        for suffix in COMPANIONS:  # a clean close leaves none; never rename the file away from its log
            if os.path.exists(database + suffix):
                raise DatabaseError("The staged SQLite database %s kept a %s file after it was closed."
                                    % (database, suffix))

    def swap(self, live: str, staged: str, old: Optional[str]) -> None:
        """Rename ``staged`` over ``live``; keep the old file as ``old`` (or drop it).

        The live file's companions go with the old file, and leftover companions of a file that
        is gone are removed, so the restored file never meets another database's log.
        """
        check_database_path(live)
        exists = os.path.exists(live)
        if exists:
            checkpoint_wal(live)  # a damaged live file is replaced all the same
        keep = old or temp_name(live)
        dir_fd, name = open_parent(live)  # the staged and kept names are beside it: one directory, no link
        try:
            for suffix in COMPANIONS:
                try:
                    os.rename(name + suffix, os.path.basename(keep) + suffix, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
            if exists:
                os.link(name, os.path.basename(keep), src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            os.rename(os.path.basename(staged), name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        if old is None or not exists:
            self.drop(keep)

    def staging_name(self, live: str, suffix: str) -> str:
        """Return a path beside the live file for a staged or kept copy."""
        return "%s%s" % (live, suffix)

    def describe_restore(self, component: dict, source: str, database: str, jobs: int) -> List[str]:
        """Return the steps a restore takes."""
        info = component.get("database_info", {})
        owner = "%s:%s" % (info.get("owner", info.get("uid", "?")), info.get("group", info.get("gid", "?")))
        return ["copy <backup> to a new staging file beside %s, PRAGMA quick_check" % database,
                "give it owner %s, mode %04o, journal_mode %s" % (owner, info.get("mode", 0o600),
                                                                  info.get("journal_mode", "delete")),
                "move the live file's -wal/-shm/-journal aside, rename the staging file into place"]
