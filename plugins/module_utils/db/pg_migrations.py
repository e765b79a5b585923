# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL's migration side: psql fed on standard input, an advisory lock held by a psql session."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from typing import Dict, List, Optional, Tuple

from .connection import DbConnection
from .migrations import (
    HISTORY, LABELS, LOCK_NAME, LOCKS, OWN_TABLES, MigrationFailed, Migrations, Row, end_lock_session, send_to_session,
    terminated, wait_for_lock)
from ..common.errors import CommandError, RollbackError
from ..common.process import command_env, run


class PgMigrations(Migrations):
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
        if not self.schema_ready:
            self.query(self.schema_sql(), "Creating the migration history tables")
            self.schema_ready = True

    @staticmethod
    def _if_schema(sql: str) -> str:
        """Return a psql script running ``sql`` only when the history table exists (one client run)."""
        return ("SELECT to_regclass('%s') IS NOT NULL AS gr_history \\gset\n\\if :gr_history\n%s\n\\endif\n"
                % (HISTORY, sql))

    def read_state_if_exists(self) -> Optional[dict]:
        out = self.query(self._if_schema(self._state_sql()), "Reading the migration history")
        return json.loads(out) if out.strip() else None

    def read_state(self) -> dict:
        return json.loads(self.query(self._state_sql(), "Reading the migration history"))

    @staticmethod
    def _state_sql() -> str:
        return (
            "SELECT json_build_object('history', coalesce((SELECT json_agg(json_build_object("
            "'version', version, 'name', name, 'checksum', checksum, 'down_checksum', down_checksum, "
            "'down_sql', down_sql, 'applied_at', to_char(applied_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'applied_by', applied_by, 'job_id', job_id, "
            "'duration_ms', duration_ms, 'label', label, 'state', state, 'direction', direction) ORDER BY version) "
            "FROM %s), '[]'::json), 'labels', coalesce((SELECT json_agg(json_build_object('label', label, "
            "'version', version, 'labelled_at', to_char(labelled_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'labelled_by', labelled_by) ORDER BY labelled_at) FROM %s), '[]'::json));"
            % (HISTORY, LABELS))

    def run_scripts(self, scripts: List[str]) -> None:
        if not scripts:
            return
        self.schema_ready = False  # a migration may drop or alter anything
        argv = self._psql_argv(["-v", "gitops_rollback=migrate", "-f", "-"])
        try:
            run(argv, "Running migrations on %s" % self.conn.describe(), env=self._env("gitops-rollback-migrate"),
                stdin="".join(scripts).encode("utf-8"), secrets=self.conn.secrets())
        except CommandError as exc:
            raise MigrationFailed(str(exc), **exc.details) from exc

    # -- lock
    @staticmethod
    def _holder_sql() -> str:
        return "SELECT row_to_json(l) FROM %s l WHERE name = '%s';" % (LOCKS, LOCK_NAME)

    def _holder(self) -> Optional[dict]:
        out = self.query(self._if_schema(self._holder_sql()), "Reading the migration lock owner").strip()
        return json.loads(out) if out else None

    def _replace_owner(self, row_sql: str) -> Optional[dict]:
        out = self.query(self.schema_sql() + self._holder_sql() + "\n" + row_sql, "Recording the migration lock owner")
        self.schema_ready = True
        return json.loads(out) if out.strip() else None

    def acquire_lock(self, owner: str, ttl: float, timeout: float) -> None:
        argv = [self.conn.binary("psql"), "-X", "-q", "-A", "-t"] + self.conn.pg_args()
        self._session = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=command_env(self._env("gitops-rollback-lock")))
        key = self.lock_key()

        def try_lock() -> Tuple[bool, str]:
            got, backend = send_to_session(self, "SELECT pg_try_advisory_lock(%d), pg_backend_pid();" % key).split("|")
            return got == "t", backend

        def end_expired(holder: dict) -> bool:
            if not holder.get("session_id"):
                return False
            self.query("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                       "AND pid = %d;" % int(holder["session_id"]), "Ending the expired lock holder's session")
            return True

        backend = wait_for_lock(self, timeout, try_lock, end_expired)
        columns = ("owner", "host", "pid", "session_id", "token", "acquired_at", "expires_epoch", "expires_at")
        updates = ", ".join("%s = EXCLUDED.%s" % (column, column) for column in columns)
        self._record_owner(owner, ttl, int(backend), "INSERT", " ON CONFLICT (name) DO UPDATE SET " + updates)

    def release_lock(self) -> None:
        end_lock_session(self, "SELECT pg_advisory_unlock_all(), 1;")

    # -- scratch
    def scratch_copy(self) -> "PgMigrations":
        name = ("gr_scratch_%s_%s" % (re.sub(r"[^a-z0-9_]", "", self.conn.database.lower())[:30], secrets.token_hex(4)))
        self.query('CREATE DATABASE "%s";' % name, "Creating the scratch database %s" % name)
        scratch = PgMigrations(self.conn.with_database(name))
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
        admin = PgMigrations(self.conn.with_database(self.origin or "postgres"))
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
