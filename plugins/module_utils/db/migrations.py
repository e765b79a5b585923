# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration side every database engine implements: the history tables, the lock row and the
narrow interface (:class:`Migrations`) db_migrate drives.

Each engine's adapter (``db.pg.PgEngine``, ``db.mysql.MysqlEngine``, ``db.sqlite.SqliteEngine``)
returns its implementation from ``migrations()``: PostgreSQL and MariaDB/MySQL run through their own
command-line clients (``psql`` with ON_ERROR_STOP, ``mariadb --batch``) fed on standard input; SQLite
runs through Python's sqlite3. What a migration sends is built by ``up_script``/``down_script`` and
sent verbatim by ``run_scripts``, so the check-mode preview and the real run are the same text.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, List, Optional, Tuple

from .connection import DbConnection
from ..common.errors import LockHeldError, RollbackError
from ..common.lock import process_start
from ..common.process import command_error

HISTORY = "gitops_rollback_migrations"
LABELS = "gitops_rollback_labels"
REPAIRS = "gitops_rollback_repairs"
LOCKS = "gitops_rollback_lock"
LOCK_NAME = "migrate"
OWN_TABLES = (HISTORY, LABELS, LOCKS)


class MigrationFailed(RollbackError):
    """A migration script failed; the database client's error is in the message."""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ends_open(sql: str) -> bool:
    """Tell whether the last statement of ``sql`` lacks its terminating semicolon."""
    for line in reversed(sql.strip().splitlines()):
        code = line.split("--", 1)[0].strip()
        if code:
            return not code.endswith(";")
    return False


def terminated(body: str) -> str:
    """Return a migration body that ends with a newline and a terminated statement."""
    text = body.rstrip() + "\n"
    return text + ";\n" if _ends_open(text) else text


class Row:
    """The values one history row is written with (all already validated)."""

    def __init__(self, version: int, name: str, checksum: str, down_checksum: Optional[str],
                 down_sql: Optional[str], applied_by: str, job_id: Optional[str], label: Optional[str]) -> None:
        self.version = version
        self.name = name
        self.checksum = checksum
        self.down_checksum = down_checksum
        self.down_sql = down_sql
        self.applied_by = applied_by
        self.job_id = job_id
        self.label = label


class Migrations:
    """The interface every engine's migration side implements."""

    kind = "?"
    now_sql = "CURRENT_TIMESTAMP"

    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn
        self.lock_record: Optional[dict] = None
        self.recovered: Optional[dict] = None
        self.schema_ready = False  # the history tables were created (or found) by this engine since its last script

    # -- dialect
    def literal(self, value: Optional[str]) -> str:
        """Return an SQL string literal (or NULL)."""
        if value is None:
            return "NULL"
        if "\x00" in value:
            raise RollbackError("A value for the history table contains a NUL character: %r." % value[:40])
        return "'" + value.replace("'", "''") + "'"

    def insert_values(self, row: Row, now: str, state: str, direction: str = "up") -> str:
        values = [str(row.version), self.literal(row.name), self.literal(row.checksum),
                  self.literal(row.down_checksum), self.literal(row.down_sql), now,
                  self.literal(row.applied_by), self.literal(row.job_id), self.literal(row.label),
                  self.literal(state), self.literal(direction)]
        return ("INSERT INTO %s (version, name, checksum, down_checksum, down_sql, applied_at, applied_by, "
                "job_id, label, state, direction) VALUES (%s);\n" % (HISTORY, ", ".join(values)))

    def baseline_script(self, row: Row) -> str:
        """Return the script that records a migration as applied without running it."""
        return self.insert_values(row, self.now_sql, "applied", "baseline")

    #: The table of accepted checksum changes (created by the first repair), and the transaction around a repair.
    repairs_table = ""
    begin_sql = "BEGIN;\n"

    def repair_script(self, row: Row, before: dict) -> str:
        """Return the script that accepts a migration's current files (checksums, down script) and records, in
        ``gitops_rollback_repairs``, the checksums it replaces, the new ones, who and when."""
        values = [str(row.version), self.literal(row.name), self.literal(before.get("checksum")),
                  self.literal(row.checksum), self.literal(before.get("down_checksum")),
                  self.literal(row.down_checksum), self.now_sql, self.literal(row.applied_by)]
        record = ("INSERT INTO %s (version, name, checksum_before, checksum_after, down_checksum_before, "
                  "down_checksum_after, repaired_at, repaired_by) VALUES (%s);\n" % (REPAIRS, ", ".join(values)))
        update = ("UPDATE %s SET checksum = %s, down_checksum = %s, down_sql = %s, direction = 'repair' "
                  "WHERE version = %d;\n" % (HISTORY, self.literal(row.checksum), self.literal(row.down_checksum),
                                             self.literal(row.down_sql), row.version))
        return ("CREATE TABLE IF NOT EXISTS %s %s;\n" % (REPAIRS, self.repairs_table) + self.begin_sql + record + update
                + "COMMIT;\n")

    def failed_down_script(self, version: int) -> str:
        """Return the script that records a revert of ``version`` that failed and was rolled back."""
        return ("UPDATE %s SET direction = 'down' WHERE version = %d AND state = 'applied';\n"
                % (HISTORY, version))

    def _up_outside(self, body: str, row: Row, duration: str) -> str:
        """An up script run outside a transaction: the row is dirty until the body has run."""
        return (self.insert_values(row, self.now_sql, "dirty") + self.body_sql(body)
                + "UPDATE %s SET state = 'applied', duration_ms = %s WHERE version = %d;\n"
                % (HISTORY, duration, row.version))

    def _down_outside(self, body: str, version: int) -> str:
        """A down script run outside a transaction: the row is dirty until the body has run."""
        return ("UPDATE %s SET state = 'dirty', direction = 'down' WHERE version = %d;\n" % (HISTORY, version)
                + self.body_sql(body) + "DELETE FROM %s WHERE version = %d;\n" % (HISTORY, version))

    def body_sql(self, body: str) -> str:
        """Return a migration body as it goes into a script."""
        return terminated(body)

    def label_script(self, label: str, version: int, by: str) -> str:
        raise NotImplementedError

    def resolve_script(self, version: int, resolve_as: str) -> str:
        """Return the script that marks a dirty version applied or reverted."""
        if resolve_as == "applied":
            return "UPDATE %s SET state = 'applied', direction = 'up' WHERE version = %d;\n" % (HISTORY, version)
        return "DELETE FROM %s WHERE version = %d;\n" % (HISTORY, version)

    # -- interface
    def up_script(self, body: str, row: Row, transaction: bool = True) -> str:
        raise NotImplementedError

    def down_script(self, body: str, version: int, transaction: bool = True) -> str:
        raise NotImplementedError

    def schema_exists(self) -> bool:
        raise NotImplementedError

    def ensure_schema(self) -> None:
        raise NotImplementedError

    def read_state(self) -> dict:
        """Return ``{"history": [row dicts by version], "labels": [label dicts]}``."""
        raise NotImplementedError

    def read_state_if_exists(self) -> Optional[dict]:
        """Return :meth:`read_state` when the history table exists, else None (the client engines: one round trip)."""
        if not self.schema_exists():
            return None
        return self.read_state()

    def run_scripts(self, scripts: List[str]) -> None:
        """Run ``scripts`` in order, stopping at the first failure (MigrationFailed)."""
        raise NotImplementedError

    def acquire_lock(self, owner: str, ttl: float, timeout: float) -> None:
        raise NotImplementedError

    def release_lock(self) -> None:
        raise NotImplementedError

    def scratch_copy(self) -> "Migrations":
        """Return an engine on a new scratch copy of this database's schema."""
        raise NotImplementedError

    def drop(self) -> None:
        """Remove this (scratch) database."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the engine keeps open between calls (SQLite's connection; nothing for the clients)."""

    def catalogue(self) -> str:
        """Return a normalised schema-only dump of this database, without our own tables."""
        raise NotImplementedError

    # -- shared
    def _lock_record(self, owner: str, ttl: float, session: Optional[int]) -> dict:
        now = time.time()
        pid = os.getpid()
        return {"owner": owner, "host": socket.gethostname(), "pid": pid, "pid_start": process_start(pid),
                "session": session, "token": secrets.token_hex(8), "acquired_at": _iso(now),
                "expires_epoch": now + ttl, "expires_at": _iso(now + ttl)}

    def _record_owner(self, owner: str, ttl: float, session: int, upsert: str, conflict: str = "") -> None:
        """Write the owner row of the server-side lock this engine's client session now holds (``upsert``: the
        statement's verb, ``conflict``: its ON CONFLICT clause); a crashed run's row found there is reported."""
        self.lock_record = self._lock_record(owner, ttl, session)
        holder = self._replace_owner(lock_row_sql(self.literal, self.lock_record, upsert) + conflict + ";")
        if holder and not self.recovered:
            self.recovered = holder  # a crashed run left its record; the server had already freed its lock

    def _replace_owner(self, row_sql: str) -> Optional[dict]:
        """Create the history tables when missing, read the lock's owner row, then run ``row_sql`` (writing ours);
        return the owner row read (None when there was none). The client engines do it in one round trip."""
        self.ensure_schema()
        holder = self._holder()
        self.query(row_sql, "Recording the migration lock owner")
        return holder

    def _holder(self) -> Optional[dict]:
        """Return the lock's owner row (None when there is none)."""
        raise NotImplementedError

    def query(self, sql: str, what: str) -> str:
        """Run SQL on the database and return the client's output."""
        raise NotImplementedError

    def _lock_busy(self, holder: Optional[dict]) -> LockHeldError:
        if holder:
            who = "%s (pid %s on %s, since %s, expires %s)" % (
                holder.get("owner"), holder.get("pid"), holder.get("host"), holder.get("acquired_at"),
                holder.get("expires_at"))
        else:
            who = "another session (no owner recorded)"
        return LockHeldError(
            "Migrations of %s are locked by %s. Wait for that run to finish (or raise lock_timeout). A "
            "crashed run's lock is released by itself: by the server when its session ends, or when its "
            "expiry passes." % (self.conn.describe(), who), holder=holder or {})


def lock_row_sql(literal, record: dict, upsert: str) -> str:
    """Return the statement (``upsert``: INSERT, REPLACE, ...) that writes a lock owner's row."""
    cols = ("name", "owner", "host", "pid", "session_id", "token", "acquired_at", "expires_epoch", "expires_at")
    values = [literal(LOCK_NAME), literal(record["owner"]), literal(record["host"]), str(record["pid"]),
              str(record["session"] or "NULL"), literal(record["token"]), literal(record["acquired_at"]),
              repr(record["expires_epoch"]), literal(record["expires_at"])]
    return "%s INTO %s (%s) VALUES (%s)" % (upsert, LOCKS, ", ".join(cols), ", ".join(values))


def wait_for_lock(engine, timeout: float, try_lock: Callable[[], Tuple[bool, str]],
                  end_expired: Callable[[dict], bool]) -> str:
    """Take the engine's migration lock in its lock session; return the session's id.

    ``try_lock`` tries once (taken?, session id); while another session holds the lock, an expired
    holder is ended by ``end_expired`` (False when it cannot be) and the lock is tried again; past
    ``timeout`` the lock session ends and LockHeldError names the holder.
    """
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        got, session = try_lock()
        if got:
            return session
        holder = engine._holder()  # pylint: disable=protected-access  # the engine's own owner row
        if holder and time.time() > float(holder.get("expires_epoch") or 0) and end_expired(holder):
            engine.recovered = holder
            time.sleep(0.2)
            continue
        if time.monotonic() >= deadline:
            engine.release_lock()
            raise engine._lock_busy(holder)  # pylint: disable=protected-access
        time.sleep(0.5)


def send_to_session(engine, sql: str) -> str:
    """Send one statement to the client session holding the engine's lock; return its one line of output."""
    session = engine._session  # pylint: disable=protected-access
    if session is None or session.stdin is None or session.stdout is None:
        raise RollbackError("The migration lock session of %s is not running." % engine.conn.describe())
    session.stdin.write(sql.encode("utf-8") + b"\n")
    session.stdin.flush()
    line = session.stdout.readline().decode("utf-8").strip()
    if not line:
        err = session.stderr.read() if session.stderr else b""
        session.wait()
        raise command_error(session.args, session.returncode or 1, err,
                            "Taking the migration lock on %s" % engine.conn.describe(), engine.conn.secrets())
    return line


def end_lock_session(engine, unlock_sql: str) -> None:
    """Delete the engine's owner row, free the server-side lock and end the client session that held it.

    The lock is freed by ``unlock_sql`` sent through the holding session, whose answer is awaited: the
    server ends a closed client's backend (and only then frees its locks) a moment later, so a run right
    after this one (the next task, the next step) would otherwise find the lock still held.
    """
    if engine.lock_record is not None:
        try:
            engine.query("DELETE FROM %s WHERE name = '%s' AND token = '%s';"
                         % (LOCKS, LOCK_NAME, engine.lock_record["token"]), "Releasing the migration lock")
        finally:
            engine.lock_record = None
    session = engine._session  # pylint: disable=protected-access
    if session is not None and session.poll() is None:
        try:
            send_to_session(engine, unlock_sql)
        except (OSError, RollbackError):
            pass  # the session is gone: the server frees its lock as its backend ends
    if session is not None:
        try:
            session.stdin.close()
            session.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            session.kill()
            session.wait()
        for stream in (session.stdout, session.stderr):
            if stream:
                stream.close()
        engine._session = None  # pylint: disable=protected-access


@dataclass
class State:
    """The history and labels read from the database."""

    history: List[dict] = field(default_factory=list)
    labels: List[dict] = field(default_factory=list)

    @property
    def applied(self) -> List[dict]:
        return [row for row in self.history if row["state"] == "applied"]

    @property
    def dirty(self) -> List[dict]:
        return [row for row in self.history if row["state"] != "applied"]

    @property
    def current(self) -> int:
        return max([int(row["version"]) for row in self.history] or [0])

    def label_version(self, label: str) -> Optional[int]:
        for entry in self.labels:
            if entry["label"] == label:
                return int(entry["version"])
        return None


def read_state(engine: Migrations, create: bool) -> State:
    """Read the history (creating the tables when ``create``; none yet reads as empty)."""
    if create:
        engine.ensure_schema()
        raw = engine.read_state()
    else:
        raw = engine.read_state_if_exists()
        if raw is None:
            return State()
    return State(history=list(raw.get("history") or []), labels=list(raw.get("labels") or []))
