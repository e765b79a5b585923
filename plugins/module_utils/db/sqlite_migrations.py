# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite's migration side: Python's sqlite3, each migration in a BEGIN IMMEDIATE transaction, the lock a
row taken under BEGIN IMMEDIATE."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import tempfile
import time
from typing import List, Optional

from .connection import DbConnection
from .migrations import HISTORY, LABELS, LOCK_NAME, LOCKS, OWN_TABLES, MigrationFailed, Migrations, Row, lock_row_sql, terminated
from ..common.errors import RollbackError
from ..common.lock import process_alive

BUSY_TIMEOUT = 10.0  # seconds a statement waits for another writer (the lock waits lock_timeout)


class SqliteMigrations(Migrations):
    """SQLite through Python's sqlite3; each migration in a BEGIN IMMEDIATE transaction."""

    kind = "sqlite"
    now_sql = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    begin_sql = "BEGIN IMMEDIATE;\n"
    repairs_table = ("(id INTEGER PRIMARY KEY, version INTEGER NOT NULL, name TEXT NOT NULL, checksum_before TEXT, "
                     "checksum_after TEXT NOT NULL, down_checksum_before TEXT, down_checksum_after TEXT, "
                     "repaired_at TEXT NOT NULL, repaired_by TEXT)")

    def __init__(self, conn: DbConnection) -> None:
        super().__init__(conn)
        self._db: Optional[sqlite3.Connection] = None

    def db(self) -> sqlite3.Connection:
        """Return the open connection (autocommit mode: scripts carry their own BEGIN/COMMIT)."""
        if self._db is None:
            path = self.conn.database
            if not os.path.isfile(path) and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
                raise RollbackError("The directory of SQLite database %s does not exist. Create it or fix "
                                    "the database option." % path)
            self._db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def up_script(self, body: str, row: Row, transaction: bool = True) -> str:
        duration = "CAST((julianday('now') - julianday(applied_at)) * 86400000 AS INTEGER)"
        if not transaction:
            return self._up_outside(body, row, duration)
        return ("BEGIN IMMEDIATE;\n" + self.insert_values(row, self.now_sql, "applied") + terminated(body)
                + "UPDATE %s SET duration_ms = %s WHERE version = %d;\nCOMMIT;\n" % (HISTORY, duration, row.version))

    def down_script(self, body: str, version: int, transaction: bool = True) -> str:
        if not transaction:
            return self._down_outside(body, version)
        return "BEGIN IMMEDIATE;\n" + terminated(body) + "DELETE FROM %s WHERE version = %d;\nCOMMIT;\n" % (HISTORY, version)

    def label_script(self, label: str, version: int, by: str) -> str:
        return ("INSERT INTO %s (label, version, labelled_at, labelled_by) VALUES (%s, %d, "
                "strftime('%%Y-%%m-%%dT%%H:%%M:%%SZ', 'now'), %s) ON CONFLICT (label) DO UPDATE SET "
                "version = excluded.version, labelled_at = excluded.labelled_at, labelled_by = excluded.labelled_by;\n"
                % (LABELS, self.literal(label), version, self.literal(by)))

    def schema_exists(self) -> bool:
        if not os.path.exists(self.conn.database):
            return False
        row = self.db().execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (HISTORY,)).fetchone()
        return bool(row[0])

    @staticmethod
    def schema_statements() -> List[str]:
        """Return the statements that create the history, label and lock tables."""
        return [
            "CREATE TABLE IF NOT EXISTS %s (version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, "
            "down_checksum TEXT, down_sql TEXT, applied_at TEXT NOT NULL, applied_by TEXT, job_id TEXT, "
            "duration_ms INTEGER, label TEXT, state TEXT NOT NULL, direction TEXT NOT NULL)" % HISTORY,
            "CREATE TABLE IF NOT EXISTS %s (label TEXT PRIMARY KEY, version INTEGER NOT NULL, labelled_at TEXT NOT NULL, "
            "labelled_by TEXT)" % LABELS,
            "CREATE TABLE IF NOT EXISTS %s (name TEXT PRIMARY KEY, owner TEXT, host TEXT, pid INTEGER, "
            "session_id INTEGER, token TEXT, acquired_at TEXT, expires_epoch REAL, expires_at TEXT)" % LOCKS,
        ]

    def ensure_schema(self) -> None:
        self.db().executescript("".join(statement + ";\n" for statement in self.schema_statements()))

    def _rows(self, sql: str) -> List[dict]:
        cursor = self.db().execute(sql)
        names = [col[0] for col in cursor.description]
        return [dict(zip(names, values)) for values in cursor.fetchall()]

    def read_state(self) -> dict:
        return {
            "history": self._rows("SELECT version, name, checksum, down_checksum, down_sql, applied_at, applied_by, "
                                  "job_id, duration_ms, label, state, direction FROM %s ORDER BY version" % HISTORY),
            "labels": self._rows("SELECT label, version, labelled_at, labelled_by FROM %s ORDER BY labelled_at" % LABELS),
        }

    def query(self, sql: str, what: str) -> str:
        """Run a script (used for labels and resolve)."""
        self.run_scripts([sql])
        return ""

    def run_scripts(self, scripts: List[str]) -> None:
        db = self.db()
        for script in scripts:
            try:
                db.executescript(script)
            except sqlite3.Error as exc:
                rolled_back = db.in_transaction
                if rolled_back:
                    db.execute("ROLLBACK")
                raise MigrationFailed("Running migrations on %s failed: %s.%s" % (
                    self.conn.describe(), exc, " The failed migration was rolled back (SQLite DDL is transactional)."
                    if rolled_back else ""), stderr=str(exc)) from exc

    # -- lock: a row taken under BEGIN IMMEDIATE, stale when expired or its process is gone
    def _stale(self, holder: dict) -> bool:
        if time.time() > float(holder.get("expires_epoch") or 0):
            return True
        if holder.get("host") == socket.gethostname():
            return not process_alive(int(holder.get("pid") or 0), holder.get("pid_start"))
        return False

    def _busy_timeout(self, seconds: float) -> None:
        self.db().execute("PRAGMA busy_timeout = %d" % int(max(seconds, 0.0) * 1000))

    def _peek_holder(self) -> Optional[dict]:
        """Read the lock row without waiting (None when unreadable now or absent)."""
        try:
            rows = self._rows("SELECT * FROM %s WHERE name = '%s'" % (LOCKS, LOCK_NAME))
        except sqlite3.OperationalError:
            return None
        return rows[0] if rows else None

    def _begin_within(self, deadline: float) -> bool:
        """Open a write transaction, waiting for another writer at most until ``deadline``."""
        self._busy_timeout(deadline - time.monotonic())
        try:
            self.db().execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            return False
        finally:
            self._busy_timeout(BUSY_TIMEOUT)
        return True

    def acquire_lock(self, owner: str, ttl: float, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 0.0)
        db = self.db()
        while True:
            if not self._begin_within(deadline):  # another run is writing: it holds the lock row too
                raise self._lock_busy(self._peek_holder())
            try:
                for statement in self.schema_statements():
                    db.execute(statement)
                rows = self._rows("SELECT * FROM %s WHERE name = '%s'" % (LOCKS, LOCK_NAME))
                holder = rows[0] if rows else None
                if holder and "pid_start" not in holder:
                    holder["pid_start"] = None
                if holder is None or self._stale(holder):
                    record = self._lock_record(owner, ttl, None)
                    db.execute(lock_row_sql(self.literal, record, "INSERT OR REPLACE"))
                    db.execute("COMMIT")
                    self.lock_record = record
                    self.recovered = holder
                    return
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if time.monotonic() >= deadline:
                raise self._lock_busy(holder)
            time.sleep(0.5)

    def release_lock(self) -> None:
        if self.lock_record is not None and self._db is not None:
            self.db().execute("DELETE FROM %s WHERE name = ? AND token = ?" % LOCKS, (LOCK_NAME, self.lock_record["token"]))
            self.lock_record = None
        self.close()

    # -- scratch
    def scratch_copy(self) -> "SqliteMigrations":
        tmpdir = tempfile.mkdtemp(prefix="gitops-rollback-scratch-")
        path = os.path.join(tmpdir, "scratch.sqlite")
        target = sqlite3.connect(path)
        try:
            self.db().backup(target)
        finally:
            target.close()
        return SqliteMigrations(self.conn.with_database(path))

    def drop(self) -> None:
        self.close()
        shutil.rmtree(os.path.dirname(self.conn.database), ignore_errors=True)

    def catalogue(self) -> str:
        rows = self.db().execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
            "AND tbl_name NOT IN (?, ?, ?) ORDER BY type, name", OWN_TABLES).fetchall()
        return "".join("%s %s ON %s: %s\n" % row for row in rows)
