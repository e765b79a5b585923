# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The three database engines of db_migrate: SQL dialect, script runner, lock and scratch copy.

PostgreSQL and MariaDB/MySQL run through their own command-line clients (``psql`` with
ON_ERROR_STOP, ``mariadb --batch``) fed on standard input; SQLite runs through Python's sqlite3.
Every engine offers the same small interface (see :class:`Engine`); what a migration sends is
built by ``up_script``/``down_script`` and sent verbatim by ``run_scripts``, so the check-mode
preview and the real run are the same text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from typing import Dict, List, Optional

from ._db_conn import DbConnection
from ._errors import CommandError, LockHeldError, RollbackError
from ._lock import process_alive, process_start
from ._process import command_env, command_error, run

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


CLIENT_DELIMITER_RE = re.compile(r"^[ \t]*delimiter[ \t]+\S", re.IGNORECASE | re.MULTILINE)
_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>--(?=\s|$)[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^'\\]|\\.|'')*(?:'|\Z)|"(?:[^"\\]|\\.|"")*(?:"|\Z)|`(?:[^`]|``)*(?:`|\Z))
  | (?P<word>[A-Za-z0-9_$]+)
  | (?P<assign>:=)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
_BLOCKS = ("IF", "WHILE", "REPEAT", "LOOP", "FOR", "CASE")
_STATEMENT_START = (None, ";", ":", "BEGIN", "THEN", "ELSE", "DO", "LOOP", "REPEAT", "ROW", "ATOMIC")


def _mysql_tokens(sql: str) -> List[tuple]:
    """Return the (kind, upper-cased text, start, end) tokens of MariaDB SQL, without spaces and comments."""
    tokens = []
    for match in _TOKEN_RE.finditer(sql):
        kind = match.lastgroup or "other"
        if kind not in ("space", "comment"):
            tokens.append((kind, match.group().upper(), match.start(), match.end()))
    return tokens


def mysql_statements(sql: str) -> List[str]:
    """Split MariaDB/MySQL SQL at the ``;`` that end statements, keeping compound statements whole.

    ``BEGIN ... END``, ``CASE ... END`` and ``IF``/``WHILE``/``REPEAT``/``LOOP``/``FOR`` blocks
    of stored programs, triggers, events and ``BEGIN NOT ATOMIC`` hold their ``;`` inside, as the
    server's parser sees them. Quotes and comments are respected. When in doubt a statement is
    left longer, never cut: the server runs a longer piece as a multi-statement query anyway.
    """
    tokens = _mysql_tokens(sql)
    found, stack, start, prev, seen, skip = [], [], 0, None, False, -1
    for index, (kind, text, begin, end) in enumerate(tokens):
        following = [tok[1] for tok in tokens[index + 1:index + 3]]
        if text == ";" and kind == "other":
            if not stack:
                found.append(sql[start:begin])
                start, prev, seen = end, None, False
                continue
            prev = ";"
            continue
        seen = True
        if kind == "word" and index != skip:
            if text == "BEGIN":
                if not (prev is None and (not following or following[0] in (";", "WORK"))):
                    stack.append("BEGIN")  # not the transaction statement BEGIN [WORK]
            elif text == "CASE" or (text in _BLOCKS and prev in _STATEMENT_START):
                stack.append(text)
            elif text == "END" and following and following[0] in _BLOCKS:
                if following[0] in stack:
                    del stack[len(stack) - 1 - stack[::-1].index(following[0]):]
                skip = index + 1
            elif text == "END" and stack and (stack[-1] == "CASE" or (stack[-1] == "BEGIN" and (
                    not following or following[0] == ";" or (len(following) == 1 or following[1] == ";")))):
                stack.pop()
        prev = ":" if text == ":" else (text if kind == "word" else kind if kind == "string" else text)
    if seen:
        found.append(sql[start:])
    return [part for part in found if _mysql_tokens(part)]


def mysql_batch(body: str) -> str:
    """Return a MariaDB/MySQL migration body for the client, one statement per client delimiter.

    Each statement reaches the server as it was written, compound statements whole, so
    ``CREATE PROCEDURE``/``TRIGGER`` bodies with ``;`` inside need no ``DELIMITER`` (as with
    golang-migrate's ``multiStatements``). A file that sets ``DELIMITER`` itself was written for
    the client and is sent as it is.
    """
    if CLIENT_DELIMITER_RE.search(body):
        return terminated(body)
    mark, number = "$$gr_end$$", 0
    while mark in body:  # the client's delimiter is at most 15 characters and must not occur in the body
        number += 1
        mark = "$$gr_end%d$$" % number
    parts = "".join(part.strip("\n") + "\n" + mark + "\n" for part in mysql_statements(body))
    return "DELIMITER %s\n%sDELIMITER ;\n" % (mark, parts)


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


class Engine:
    """The interface every engine implements."""

    kind = "?"
    now_sql = "CURRENT_TIMESTAMP"

    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn
        self.lock_record: Optional[dict] = None
        self.recovered: Optional[dict] = None

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

    def run_scripts(self, scripts: List[str]) -> None:
        """Run ``scripts`` in order, stopping at the first failure (MigrationFailed)."""
        raise NotImplementedError

    def acquire_lock(self, owner: str, ttl: float, timeout: float) -> None:
        raise NotImplementedError

    def release_lock(self) -> None:
        raise NotImplementedError

    def scratch_copy(self) -> "Engine":
        """Return an engine on a new scratch copy of this database's schema."""
        raise NotImplementedError

    def drop(self) -> None:
        """Remove this (scratch) database."""
        raise NotImplementedError

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


def _lock_row_sql(literal, record: dict, upsert: str) -> str:
    cols = ("name", "owner", "host", "pid", "session_id", "token", "acquired_at", "expires_epoch", "expires_at")
    values = [literal(LOCK_NAME), literal(record["owner"]), literal(record["host"]), str(record["pid"]),
              str(record["session"] or "NULL"), literal(record["token"]), literal(record["acquired_at"]),
              repr(record["expires_epoch"]), literal(record["expires_at"])]
    return "%s INTO %s (%s) VALUES (%s)" % (upsert, LOCKS, ", ".join(cols), ", ".join(values))


def _holder_from_row(row: Optional[dict]) -> Optional[dict]:
    return dict(row) if row else None


# =========================================================================== PostgreSQL
def _end_lock_session(engine) -> None:
    """Delete the engine's owner row and end the client session that holds its server-side lock."""
    if engine.lock_record is not None:
        try:
            engine.query("DELETE FROM %s WHERE name = '%s' AND token = '%s';"
                         % (LOCKS, LOCK_NAME, engine.lock_record["token"]), "Releasing the migration lock")
        finally:
            engine.lock_record = None
    session = engine._session  # pylint: disable=protected-access
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


class PostgresEngine(Engine):
    """PostgreSQL through psql; an advisory lock held by a psql session for the whole run."""

    kind = "postgresql"
    now_sql = "now()"
    repairs_table = ("(id bigserial PRIMARY KEY, version bigint NOT NULL, name text NOT NULL, checksum_before text, "
                     "checksum_after text NOT NULL, down_checksum_before text, down_checksum_after text, "
                     "repaired_at timestamptz NOT NULL, repaired_by text)")

    def __init__(self, conn: DbConnection) -> None:
        super().__init__(conn)
        self._session: Optional[subprocess.Popen] = None
        self.origin: Optional[str] = None

    def _psql_argv(self, extra: List[str]) -> List[str]:
        return [self.conn.binary("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"] + extra + self.conn.pg_args()

    def _env(self, app: str) -> Dict[str, str]:
        env = dict(self.conn.pg_env())
        env["PGAPPNAME"] = app
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        return env

    def query(self, sql: str, what: str) -> str:
        """Run SQL (no transaction wrapping) and return psql's unaligned output."""
        done = run(self._psql_argv(["-f", "-"]), what, env=self._env("gitops-rollback"),
                   stdin=("SET client_min_messages = warning;\n" + sql).encode("utf-8"), secrets=self.conn.secrets())
        return done.stdout.decode("utf-8")

    def lock_key(self) -> int:
        """Return the advisory lock key (signed 64-bit) of this database's migrations."""
        digest = hashlib.sha256(("gitops_rollback:" + self.conn.database).encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    # -- dialect
    def literal(self, value: Optional[str]) -> str:
        if value is not None and "\n" in value and "\x00" not in value:
            tag, number = "$gr$", 0
            while tag in value or value.endswith("$"):
                number += 1
                tag = "$gr%d$" % number
                if number > 99:
                    break
            else:
                return tag + value + tag  # dollar quoting keeps a multi-line script readable
        return super().literal(value)

    def up_script(self, body: str, row: Row, transaction: bool = True) -> str:
        if not transaction:
            return self._up_outside(body, row, "(EXTRACT(EPOCH FROM clock_timestamp() - applied_at) * 1000)::bigint")
        return ("BEGIN;\n" + self.insert_values(row, "now()", "applied") + terminated(body)
                + "UPDATE %s SET duration_ms = (EXTRACT(EPOCH FROM clock_timestamp() - now()) * 1000)::bigint "
                  "WHERE version = %d;\nCOMMIT;\n" % (HISTORY, row.version))

    def down_script(self, body: str, version: int, transaction: bool = True) -> str:
        if not transaction:
            return self._down_outside(body, version)
        return "BEGIN;\n" + terminated(body) + "DELETE FROM %s WHERE version = %d;\nCOMMIT;\n" % (HISTORY, version)

    def label_script(self, label: str, version: int, by: str) -> str:
        return ("INSERT INTO %s (label, version, labelled_at, labelled_by) VALUES (%s, %d, now(), %s) "
                "ON CONFLICT (label) DO UPDATE SET version = EXCLUDED.version, labelled_at = EXCLUDED.labelled_at, "
                "labelled_by = EXCLUDED.labelled_by;\n" % (LABELS, self.literal(label), version, self.literal(by)))

    def schema_sql(self) -> str:
        return (
            "CREATE TABLE IF NOT EXISTS %s (version bigint PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, "
            "down_checksum text, down_sql text, applied_at timestamptz NOT NULL, applied_by text, job_id text, "
            "duration_ms bigint, label text, state text NOT NULL, direction text NOT NULL);\n"
            "CREATE TABLE IF NOT EXISTS %s (label text PRIMARY KEY, version bigint NOT NULL, "
            "labelled_at timestamptz NOT NULL, labelled_by text);\n"
            "CREATE TABLE IF NOT EXISTS %s (name text PRIMARY KEY, owner text, host text, pid bigint, "
            "session_id bigint, token text, acquired_at text, expires_epoch double precision, expires_at text);\n"
            % (HISTORY, LABELS, LOCKS))

    def schema_exists(self) -> bool:
        return self.query("SELECT to_regclass('%s') IS NOT NULL;" % HISTORY, "Reading the migration history").strip() == "t"

    def ensure_schema(self) -> None:
        self.query(self.schema_sql(), "Creating the migration history tables")

    def read_state(self) -> dict:
        sql = (
            "SELECT json_build_object('history', coalesce((SELECT json_agg(json_build_object("
            "'version', version, 'name', name, 'checksum', checksum, 'down_checksum', down_checksum, "
            "'down_sql', down_sql, 'applied_at', to_char(applied_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'applied_by', applied_by, 'job_id', job_id, "
            "'duration_ms', duration_ms, 'label', label, 'state', state, 'direction', direction) ORDER BY version) "
            "FROM %s), '[]'::json), 'labels', coalesce((SELECT json_agg(json_build_object('label', label, "
            "'version', version, 'labelled_at', to_char(labelled_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'labelled_by', labelled_by) ORDER BY labelled_at) FROM %s), '[]'::json));"
            % (HISTORY, LABELS))
        return json.loads(self.query(sql, "Reading the migration history"))

    def run_scripts(self, scripts: List[str]) -> None:
        if not scripts:
            return
        argv = self._psql_argv(["-v", "gitops_rollback=migrate", "-f", "-"])
        try:
            run(argv, "Running migrations on %s" % self.conn.describe(), env=self._env("gitops-rollback-migrate"),
                stdin="".join(scripts).encode("utf-8"), secrets=self.conn.secrets())
        except CommandError as exc:
            raise MigrationFailed(str(exc), **exc.details) from exc

    # -- lock
    def _send(self, sql: str) -> str:
        if self._session is None or self._session.stdin is None or self._session.stdout is None:
            raise RollbackError("The migration lock session of %s is not running." % self.conn.describe())
        self._session.stdin.write(sql.encode("utf-8") + b"\n")
        self._session.stdin.flush()
        line = self._session.stdout.readline().decode("utf-8").strip()
        if not line:
            err = self._session.stderr.read().decode("utf-8", "replace") if self._session.stderr else ""
            self._session.wait()
            raise command_error(self._session.args, self._session.returncode or 1, err.encode("utf-8"),
                                "Taking the migration lock on %s" % self.conn.describe(), self.conn.secrets())
        return line

    def _holder(self) -> Optional[dict]:
        if not self.schema_exists():
            return None
        out = self.query("SELECT row_to_json(l) FROM %s l WHERE name = '%s';" % (LOCKS, LOCK_NAME),
                         "Reading the migration lock owner").strip()
        return json.loads(out) if out else None

    def acquire_lock(self, owner: str, ttl: float, timeout: float) -> None:
        argv = [self.conn.binary("psql"), "-X", "-q", "-A", "-t"] + self.conn.pg_args()
        self._session = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=command_env(self._env("gitops-rollback-lock")))
        deadline = time.monotonic() + max(timeout, 0.0)
        key = self.lock_key()
        while True:
            got, backend = self._send("SELECT pg_try_advisory_lock(%d), pg_backend_pid();" % key).split("|")
            if got == "t":
                break
            holder = self._holder()
            if holder and time.time() > float(holder.get("expires_epoch") or 0) and holder.get("session_id"):
                self.query("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                           "AND pid = %d;" % int(holder["session_id"]), "Ending the expired lock holder's session")
                self.recovered = holder
                time.sleep(0.2)
                continue
            if time.monotonic() >= deadline:
                self.release_lock()
                raise self._lock_busy(holder)
            time.sleep(0.5)
        self.lock_record = self._lock_record(owner, ttl, int(backend))
        self.ensure_schema()
        holder = self._holder()
        if holder and not self.recovered:
            self.recovered = holder  # a crashed run left its record; the server had already freed its lock
        columns = ("owner", "host", "pid", "session_id", "token", "acquired_at", "expires_epoch", "expires_at")
        updates = ", ".join("%s = EXCLUDED.%s" % (column, column) for column in columns)
        self.query(_lock_row_sql(self.literal, self.lock_record, "INSERT") + " ON CONFLICT (name) DO UPDATE SET "
                   + updates + ";", "Recording the migration lock owner")

    def release_lock(self) -> None:
        _end_lock_session(self)

    # -- scratch
    def scratch_copy(self) -> "PostgresEngine":
        name = ("gr_scratch_%s_%s" % (re.sub(r"[^a-z0-9_]", "", self.conn.database.lower())[:30], secrets.token_hex(4)))
        self.query('CREATE DATABASE "%s";' % name, "Creating the scratch database %s" % name)
        scratch = PostgresEngine(self.conn.with_database(name))
        scratch.origin = self.conn.database
        tmpdir = tempfile.mkdtemp(prefix="gitops-rollback-scratch-")
        try:
            dump = os.path.join(tmpdir, "schema.sql")
            run([self.conn.binary("pg_dump"), "--schema-only", "--no-owner", "--no-privileges", "--file", dump]
                + self.conn.pg_args(), "Dumping the schema of %s" % self.conn.describe(), env=self.conn.pg_env(),
                secrets=self.conn.secrets())
            with open(dump, "rb") as handle:
                run(scratch._psql_argv(["-f", "-"]), "Loading the schema into %s" % name, env=self.conn.pg_env(),
                    stdin=handle.read(), secrets=self.conn.secrets())
        except RollbackError:
            scratch.drop()
            raise
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return scratch

    def drop(self) -> None:
        admin = PostgresEngine(self.conn.with_database(self.origin or "postgres"))
        admin.query('DROP DATABASE IF EXISTS "%s" WITH (FORCE);' % self.conn.database,
                    "Dropping the scratch database %s" % self.conn.database)

    def catalogue(self) -> str:
        argv = [self.conn.binary("pg_dump"), "--schema-only", "--no-owner", "--no-privileges"]
        for table in OWN_TABLES:
            argv += ["--exclude-table", table]
        out = run(argv + self.conn.pg_args(), "Dumping the schema of %s" % self.conn.describe(),
                  env=self.conn.pg_env(), secrets=self.conn.secrets()).stdout.decode("utf-8")
        keep = [line for line in out.splitlines()
                if line.strip() and not line.startswith("--") and not line.startswith("SET ")
                and not line.startswith("SELECT pg_catalog.set_config")
                and not line.startswith(("\\restrict ", "\\unrestrict "))]  # random per-dump keys
        return "\n".join(keep) + "\n"


# =========================================================================== MariaDB / MySQL
class MysqlEngine(Engine):
    """MariaDB/MySQL through the mariadb (or mysql) client; GET_LOCK held by a client session."""

    kind = "mysql"
    now_sql = "UTC_TIMESTAMP(6)"
    begin_sql = "START TRANSACTION;\n"
    repairs_table = ("(id BIGINT AUTO_INCREMENT PRIMARY KEY, version BIGINT NOT NULL, name VARCHAR(255) NOT NULL, "
                     "checksum_before CHAR(64), checksum_after CHAR(64) NOT NULL, down_checksum_before CHAR(64), "
                     "down_checksum_after CHAR(64), repaired_at DATETIME(6) NOT NULL, repaired_by VARCHAR(255)) "
                     "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")

    def __init__(self, conn: DbConnection) -> None:
        super().__init__(conn)
        self._session: Optional[subprocess.Popen] = None
        self._session_args = None

    def _client(self) -> str:
        return self.conn.binary("mariadb", "mysql")

    def _dump(self) -> str:
        return self.conn.binary("mariadb-dump", "mysqldump")

    def literal(self, value: Optional[str]) -> str:
        if value is None:
            return "NULL"
        if "\x00" in value:
            raise RollbackError("A value for the history table contains a NUL character: %r." % value[:40])
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"

    def _run(self, argv_tail: List[str], sql: str, what: str, database: bool = True) -> str:
        with self.conn.mysql_args() as args:
            argv = [self._client()] + args + ["--batch", "--raw", "--skip-column-names"] + argv_tail
            if database:
                argv.append(self.conn.database)
            return run(argv, what, stdin=sql.encode("utf-8"), secrets=self.conn.secrets()).stdout.decode("utf-8")

    def query(self, sql: str, what: str) -> str:
        return self._run([], sql, what)

    def lock_name(self) -> str:
        return ("gitops_rollback." + self.conn.database)[:64]

    def body_sql(self, body: str) -> str:
        return mysql_batch(body)

    def up_script(self, body: str, row: Row, transaction: bool = True) -> str:
        duration = "TIMESTAMPDIFF(MICROSECOND, applied_at, UTC_TIMESTAMP(6)) DIV 1000"
        if not transaction:
            return self._up_outside(body, row, duration)
        return (self.insert_values(row, self.now_sql, "dirty") + "START TRANSACTION;\n" + mysql_batch(body)
                + "UPDATE %s SET state = 'applied', duration_ms = %s WHERE version = %d;\nCOMMIT;\n"
                % (HISTORY, duration, row.version))

    def down_script(self, body: str, version: int, transaction: bool = True) -> str:
        if not transaction:
            return self._down_outside(body, version)
        return ("UPDATE %s SET state = 'dirty', direction = 'down' WHERE version = %d;\nSTART TRANSACTION;\n"
                % (HISTORY, version) + mysql_batch(body) + "DELETE FROM %s WHERE version = %d;\nCOMMIT;\n"
                % (HISTORY, version))

    def label_script(self, label: str, version: int, by: str) -> str:
        return ("INSERT INTO %s (label, version, labelled_at, labelled_by) VALUES (%s, %d, UTC_TIMESTAMP(6), %s) "
                "ON DUPLICATE KEY UPDATE version = VALUES(version), labelled_at = VALUES(labelled_at), "
                "labelled_by = VALUES(labelled_by);\n" % (LABELS, self.literal(label), version, self.literal(by)))

    def schema_exists(self) -> bool:
        out = self.query("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
                         "AND table_name = '%s';" % HISTORY, "Reading the migration history")
        return out.strip() == "1"

    def ensure_schema(self) -> None:
        self.query(
            "CREATE TABLE IF NOT EXISTS %s (version BIGINT PRIMARY KEY, name VARCHAR(255) NOT NULL, "
            "checksum CHAR(64) NOT NULL, down_checksum CHAR(64), down_sql LONGTEXT, applied_at DATETIME(6) NOT NULL, "
            "applied_by VARCHAR(255), job_id VARCHAR(255), duration_ms BIGINT, label VARCHAR(255), "
            "state VARCHAR(16) NOT NULL, direction VARCHAR(16) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
            "CREATE TABLE IF NOT EXISTS %s (label VARCHAR(255) PRIMARY KEY, version BIGINT NOT NULL, "
            "labelled_at DATETIME(6) NOT NULL, labelled_by VARCHAR(255)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
            "CREATE TABLE IF NOT EXISTS %s (name VARCHAR(64) PRIMARY KEY, owner VARCHAR(255), host VARCHAR(255), "
            "pid BIGINT, session_id BIGINT, token VARCHAR(64), acquired_at VARCHAR(32), expires_epoch DOUBLE, "
            "expires_at VARCHAR(32)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
            # tables made by earlier versions had direction VARCHAR(4): too short for 'baseline'
            "SET @gr_widen = IF((SELECT CHARACTER_MAXIMUM_LENGTH FROM information_schema.columns WHERE "
            "table_schema = DATABASE() AND table_name = '%s' AND column_name = 'direction') < 16, "
            "'ALTER TABLE %s MODIFY direction VARCHAR(16) NOT NULL', 'DO 0');\n"
            "PREPARE gr_widen FROM @gr_widen;\nEXECUTE gr_widen;\nDEALLOCATE PREPARE gr_widen;\n"
            % (HISTORY, LABELS, LOCKS, HISTORY, HISTORY), "Creating the migration history tables")

    def read_state(self) -> dict:
        sql = (
            "SELECT JSON_OBJECT('history', COALESCE((SELECT JSON_ARRAYAGG(JSON_OBJECT('version', version, 'name', name, "
            "'checksum', checksum, 'down_checksum', down_checksum, 'down_sql', down_sql, 'applied_at', "
            "DATE_FORMAT(applied_at, '%%Y-%%m-%%dT%%H:%%i:%%s.%%fZ'), 'applied_by', applied_by, 'job_id', job_id, "
            "'duration_ms', duration_ms, 'label', label, 'state', state, 'direction', direction) ORDER BY version) "
            "FROM %s), JSON_ARRAY()), 'labels', COALESCE((SELECT JSON_ARRAYAGG(JSON_OBJECT('label', label, 'version', "
            "version, 'labelled_at', DATE_FORMAT(labelled_at, '%%Y-%%m-%%dT%%H:%%i:%%sZ'), 'labelled_by', labelled_by) "
            "ORDER BY labelled_at) FROM %s), JSON_ARRAY()));" % (HISTORY, LABELS))
        return json.loads(self.query(sql, "Reading the migration history"))

    def run_scripts(self, scripts: List[str]) -> None:
        if not scripts:
            return
        try:
            self._run([], "".join(scripts), "Running migrations on %s" % self.conn.describe())
        except CommandError as exc:
            raise MigrationFailed(str(exc), **exc.details) from exc

    # -- lock
    def _send(self, sql: str) -> str:
        if self._session is None or self._session.stdin is None or self._session.stdout is None:
            raise RollbackError("The migration lock session of %s is not running." % self.conn.describe())
        self._session.stdin.write(sql.encode("utf-8") + b"\n")
        self._session.stdin.flush()
        line = self._session.stdout.readline().decode("utf-8").strip()
        if not line:
            err = self._session.stderr.read() if self._session.stderr else b""
            self._session.wait()
            raise command_error(self._session.args, self._session.returncode or 1, err,
                                "Taking the migration lock on %s" % self.conn.describe(), self.conn.secrets())
        return line

    def _holder(self) -> Optional[dict]:
        if not self.schema_exists():
            return None
        out = self.query("SELECT JSON_OBJECT('owner', owner, 'host', host, 'pid', pid, 'session_id', session_id, "
                         "'acquired_at', acquired_at, 'expires_epoch', expires_epoch, 'expires_at', expires_at) "
                         "FROM %s WHERE name = '%s';" % (LOCKS, LOCK_NAME), "Reading the migration lock owner").strip()
        return json.loads(out) if out else None

    def acquire_lock(self, owner: str, ttl: float, timeout: float) -> None:
        self._session_args = self.conn.mysql_args()
        args = self._session_args.__enter__()
        argv = [self._client()] + args + ["--batch", "--raw", "--skip-column-names", "--unbuffered", self.conn.database]
        self._session = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=command_env(None))
        deadline = time.monotonic() + max(timeout, 0.0)
        name = self.literal(self.lock_name())
        while True:
            got, session = self._send("SELECT GET_LOCK(%s, 0), CONNECTION_ID();" % name).split("\t")
            if got == "1":
                break
            holder = self._holder()
            if holder and time.time() > float(holder.get("expires_epoch") or 0):
                self.query("SELECT IS_USED_LOCK(%s) INTO @gr_holder;\n"
                           "SET @gr_kill = IF(@gr_holder = %d, CONCAT('KILL ', @gr_holder), 'DO 0');\n"
                           "PREPARE gr_stmt FROM @gr_kill;\nEXECUTE gr_stmt;\n"
                           % (name, int(holder.get("session_id") or -1)), "Ending the expired lock holder's session")
                self.recovered = holder
                time.sleep(0.2)
                continue
            if time.monotonic() >= deadline:
                self.release_lock()
                raise self._lock_busy(holder)
            time.sleep(0.5)
        self.lock_record = self._lock_record(owner, ttl, int(session))
        self.ensure_schema()
        holder = self._holder()
        if holder and not self.recovered:
            self.recovered = holder
        self.query(_lock_row_sql(self.literal, self.lock_record, "REPLACE") + ";", "Recording the migration lock owner")

    def release_lock(self) -> None:
        _end_lock_session(self)
        if self._session_args is not None:
            self._session_args.__exit__(None, None, None)
            self._session_args = None

    # -- scratch
    def _dump_schema(self, extra: List[str]) -> str:
        with self.conn.mysql_args() as args:
            argv = [self._dump()] + args + ["--no-data", "--skip-comments", "--skip-dump-date", "--routines",
                                            "--triggers", "--skip-add-drop-table"] + extra + [self.conn.database]
            return run(argv, "Dumping the schema of %s" % self.conn.describe(),
                       secrets=self.conn.secrets()).stdout.decode("utf-8")

    def scratch_copy(self) -> "MysqlEngine":
        name = "gr_scratch_%s_%s" % (re.sub(r"[^a-z0-9_]", "", self.conn.database.lower())[:30], secrets.token_hex(4))
        schema = self._dump_schema([])
        self.query("CREATE DATABASE `%s`;" % name, "Creating the scratch database %s" % name)
        scratch = MysqlEngine(self.conn.with_database(name))
        try:
            scratch.query(schema, "Loading the schema into %s" % name)
        except RollbackError:
            scratch.drop()
            raise
        return scratch

    def drop(self) -> None:
        self._run([], "DROP DATABASE IF EXISTS `%s`;" % self.conn.database,
                  "Dropping the scratch database %s" % self.conn.database, database=False)

    def catalogue(self) -> str:
        ignore = ["--ignore-table=%s.%s" % (self.conn.database, table) for table in OWN_TABLES]
        out = self._dump_schema(ignore)
        out = re.sub(r" AUTO_INCREMENT=\d+", "", out)
        keep = [line for line in out.splitlines() if line.strip() and not line.startswith("/*!40")]
        return "\n".join(keep) + "\n"


# =========================================================================== SQLite
BUSY_TIMEOUT = 10.0  # seconds a statement waits for another writer (the lock waits lock_timeout)


class SqliteEngine(Engine):
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
                    db.execute(_lock_row_sql(self.literal, record, "INSERT OR REPLACE"))
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
    def scratch_copy(self) -> "SqliteEngine":
        tmpdir = tempfile.mkdtemp(prefix="gitops-rollback-scratch-")
        path = os.path.join(tmpdir, "scratch.sqlite")
        target = sqlite3.connect(path)
        try:
            self.db().backup(target)
        finally:
            target.close()
        return SqliteEngine(self.conn.with_database(path))

    def drop(self) -> None:
        self.close()
        shutil.rmtree(os.path.dirname(self.conn.database), ignore_errors=True)

    def catalogue(self) -> str:
        rows = self.db().execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
            "AND tbl_name NOT IN (?, ?, ?) ORDER BY type, name", OWN_TABLES).fetchall()
        return "".join("%s %s ON %s: %s\n" % row for row in rows)


ENGINE_CLASSES = {"postgresql": PostgresEngine, "mysql": MysqlEngine, "sqlite": SqliteEngine}


def make_engine(conn: DbConnection) -> Engine:
    """Return the engine for a connection."""
    return ENGINE_CLASSES[conn.engine](conn)
