# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL's adapter: backup and restore with the server's own clients (psql, pg_dump, pg_restore); its
migration side is ``db.pg_migrations.PgMigrations`` (``PgEngine.migrations()``).

The dump and the recorded row counts see the same data: a psql session opens a repeatable-read
transaction, exports its snapshot, and pg_dump runs with ``--snapshot`` while that session
counts every table's rows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from typing import Dict, List, Optional

from .streams import DatabaseError, DumpStream, adopt_file, hash_files, safe_relpath
from .connection import DbConnection
from .pg_migrations import PgMigrations
from .pg_args import check_extra_args
from .pg_props import (
    CLIENT_SESSION, create_sql, ident, info_sql, literal, may_be_a_killed_run, privileges_sql, property_statements,
    recorded_roles, restore_problems, untemplate_sql,
)
from ..common.errors import CommandError, RollbackError
from ..common.fsutil import temp_name
from ..common.process import command_error, run
from ..store.store import Store

FORMATS = {"custom": "c", "directory": "d", "plain": "p"}
END_MARK = "__gitops_rollback_end__"
DROPPED_MARK = "__gitops_rollback_dropped__"  # printed by a swap's psql call after it dropped a leftover copy
SWAPPED_MARK = "__gitops_rollback_swapped__"  # ... after the swap committed
SESSION_GRACE = 5.0  # seconds a killed run's sessions on the live database get to end before a restore is refused
PLAIN_TRAILER = b"PostgreSQL database dump complete"

TABLES_SQL = (
    "SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
)


def _row_counts_sql() -> str:
    # regclass::text depends on search_path; an empty one makes every name schema-qualified.
    return ("SELECT coalesce(json_object_agg(t.name, (xpath('/row/n/text()', query_to_xml("
            "format('SELECT count(*) AS n FROM %%s', t.name), false, true, '')))[1]::text::bigint), '{}') "
            "FROM (%s) t" % TABLES_SQL)


class PgSession:
    """A long-lived psql process fed statements on stdin (holds a transaction open)."""

    def __init__(self, conn: DbConnection, psql: str) -> None:
        self.conn = conn
        argv = [psql, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", *conn.pg_args()]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=dict(os.environ, LC_ALL="C", PGCONNECT_TIMEOUT="10", **conn.pg_env()))

    def query(self, sql: str) -> List[str]:
        """Run ``sql``; return its output lines."""
        try:
            self.proc.stdin.write(("%s;\n\\echo %s\n" % (sql.rstrip().rstrip(";"), END_MARK)).encode("utf-8"))
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        lines = []
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8").rstrip("\n")
            if line == END_MARK:
                return lines
            lines.append(line)
        self.proc.wait()
        raise connection_error(self.conn, self.proc.stderr.read().decode("utf-8", "replace").strip())

    def close(self) -> None:
        """End the session (rolls back the read-only transaction)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def connection_error(conn: DbConnection, stderr: str) -> DatabaseError:
    """Explain a failed psql call, naming the likely way out."""
    for secret in conn.secrets():
        stderr = stderr.replace(secret, "********")
    hint = "Check the statement and the server log."
    if "password authentication failed" in stderr or "no password supplied" in stderr:
        hint = "Check login_user and login_password."
    elif "does not exist" in stderr and "database" in stderr:
        hint = "Check the database name (gitops.rollback.db_backup_info lists backed-up ones)."
    elif "connection" in stderr or "could not" in stderr:
        hint = "Check login_host, login_port or login_unix_socket, and that the server is running."
    return DatabaseError("PostgreSQL at %s: %s. %s" % (conn.describe(), stderr or "psql failed", hint), stderr=stderr)


def psql_steps(conn: DbConnection, argv: List[str]) -> List[str]:
    """Run a psql call of ``PgEngine.sql_steps``; return its output lines (a failure: in the error's ``output``)."""
    try:
        done = run(argv, "psql", env=dict(conn.pg_env(), PGCONNECT_TIMEOUT="10"), secrets=conn.secrets(), check=False)
    except CommandError as exc:
        raise connection_error(conn, str(exc.details.get("stderr") or exc)) from exc
    output = done.stdout.decode("utf-8", "replace").splitlines()
    if done.rc != 0:
        exc = command_error(argv, done.rc, done.stderr, "psql", conn.secrets())
        error = connection_error(conn, str(exc.details.get("stderr") or exc))
        error.details["output"] = output
        raise error from exc
    return output


class PgEngine:
    """Backs up and restores one PostgreSQL server's databases."""

    name = "postgresql"
    formats = tuple(FORMATS)
    default_format = "custom"

    def __init__(self, conn: DbConnection, maintenance_db: str = "postgres",
                 extra_args: Optional[Dict[str, List[str]]] = None) -> None:
        self.conn = conn
        self.maintenance = conn.with_database(maintenance_db)
        self.extra_args = {tool: check_extra_args(args, tool, option)
                           for tool, option, args in (("pg_dump", "dump_extra_args", (extra_args or {}).get("pg_dump")),
                                                      ("pg_restore", "restore_extra_args",
                                                       (extra_args or {}).get("pg_restore")))}

    def _bin(self, name: str) -> str:
        return self.conn.binary(name)

    def migrations(self) -> PgMigrations:
        """Return the migration side (history, lock, scratch copy) of the connection's database."""
        return PgMigrations(self.conn)

    # ------------------------------------------------------------------ queries
    def sql(self, sql: str, database: Optional[str] = None) -> List[str]:
        """Run SQL with psql on ``database`` (default: the maintenance database); return output lines."""
        target = self.conn.with_database(database) if database else self.maintenance
        argv = [self._bin("psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", *target.pg_args(), "-c", sql]
        try:
            done = run(argv, "psql", env=dict(target.pg_env(), PGCONNECT_TIMEOUT="10"), secrets=target.secrets())
        except CommandError as exc:
            raise connection_error(target, str(exc.details.get("stderr") or exc)) from exc
        return [line for line in done.stdout.decode("utf-8").split("\n") if line != ""]

    def server_version(self) -> str:
        """Return the server version (and prove the connection works)."""
        return self.sql("SHOW server_version")[0].strip()

    def probe(self, database: str) -> tuple:
        """Return (server version, whether ``database`` exists) in one round trip."""
        line = self.sql("SELECT current_setting('server_version') || '|' || EXISTS (SELECT 1 FROM pg_database "
                        "WHERE datname = %s)::text" % literal(database))[0]
        version, exists = line.rsplit("|", 1)
        return version.strip(), exists == "true"

    def databases(self) -> List[str]:
        """Return the databases that accept connections."""
        return self.sql("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")

    def exists(self, database: str) -> bool:
        """Tell whether a database exists."""
        return bool(self.sql("SELECT 1 FROM pg_database WHERE datname = %s" % literal(database)))

    def size(self, database: str) -> int:
        """Return the size on disk of a database in bytes."""
        return int(self.sql("SELECT pg_database_size(%s)" % literal(database))[0])

    def row_counts(self, database: str) -> Dict[str, int]:
        """Return exact row counts of every table, keyed by schema-qualified name."""
        lines = self.sql("SET search_path = ''; " + _row_counts_sql(), database)
        return {key: int(value) for key, value in json.loads(lines[-1]).items()}

    def database_info(self, database: str) -> dict:
        """Return the database itself as a backup records it (encoding, locale, owner, privileges, settings)."""
        return json.loads(self.sql(info_sql(database))[0])

    # --------------------------------------------------------------------- dump
    def dump(self, store: Store, database: str, fmt: str, jobs: int, compression: Optional[str] = None,
             compression_level: Optional[int] = None) -> dict:
        """Dump ``database`` into the store; return the component fields (blobs, hashes, counts)."""
        if compression:
            raise RollbackError("compression=%s applies to mysql dumps; PostgreSQL custom and directory dumps "
                                "are compressed by pg_dump (set compression_level)." % compression)
        session = PgSession(self.conn, self._bin("psql"))
        try:
            version = session.query("SHOW server_version")[0].strip()
            info = json.loads(session.query(info_sql(database))[0])
            session.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = session.query("SELECT pg_export_snapshot()")[0].strip()
            counts: Dict[str, int] = {}
            failure: List[BaseException] = []

            def count() -> None:
                try:
                    lines = session.query("SET LOCAL search_path = ''; " + _row_counts_sql())
                    counts.update({k: int(v) for k, v in json.loads(lines[-1]).items()})
                except BaseException as exc:  # pylint: disable=broad-except
                    failure.append(exc)

            counter = threading.Thread(target=count)
            counter.start()
            try:
                fields = self._run_dump(store, database, fmt, jobs, snapshot, compression_level)
            finally:
                counter.join()
            if failure:
                raise failure[0]
        finally:
            session.close()
        fields.update(server_version=version, row_counts=counts, database_info=info)
        if self.extra_args["pg_dump"]:
            fields["dump_extra_args"] = self.extra_args["pg_dump"]
        return fields

    def _dump_argv(self, database: str, fmt: str, jobs: int, snapshot: str, level: Optional[int]) -> List[str]:
        argv = [self._bin("pg_dump"), "--format=%s" % FORMATS[fmt], "--snapshot=%s" % snapshot,
                *self.extra_args["pg_dump"], *self.conn.with_database(database).pg_args()]
        if fmt == "directory" and jobs > 1:
            argv.append("--jobs=%d" % jobs)
        if level is not None and fmt != "plain":
            argv.append("--compress=%d" % level)
        return argv

    def _run_dump(self, store: Store, database: str, fmt: str, jobs: int, snapshot: str,
                  level: Optional[int]) -> dict:
        argv = self._dump_argv(database, fmt, jobs, snapshot, level)
        env = self.conn.pg_env()
        if fmt != "directory":
            stream = DumpStream(store, argv, "pg_dump of %s" % database, env=env, secrets=self.conn.secrets())
            sha, size = stream.run()
            if fmt == "plain" and PLAIN_TRAILER not in bytes(stream.tail):
                raise DatabaseError("pg_dump of %s exited 0 but the dump lacks its end marker; it is incomplete. "
                                    "Check the server log and free space, then back up again." % database)
            if fmt == "custom":
                workdir = temp_name(store.path("tmp", "pgcheck"))
                os.makedirs(workdir, mode=0o700)
                try:
                    self.check_archive(store.readable_path(sha, workdir))
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
            return {"blobs": [sha], "sha256": sha, "size": size}
        workdir = temp_name(store.path("tmp", "pgdir"))
        try:
            run(argv + ["--file=%s" % workdir], "pg_dump of %s" % database, env=env, secrets=self.conn.secrets())
            self.check_archive(workdir)
            files = hash_files(workdir, jobs)
            size = 0
            for rel, sha in files.items():
                files[rel], file_size = adopt_file(store, os.path.join(workdir, rel), sha)
                size += file_size
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        listing = json.dumps(files, sort_keys=True).encode("utf-8")
        listing_sha = store.put_bytes(listing)
        return {"blobs": sorted(set(files.values())) + [listing_sha], "sha256": listing_sha, "size": size,
                "files": files}

    def check_archive(self, path: str) -> None:
        """Read an archive's table of contents with ``pg_restore --list`` (fails on a broken archive)."""
        try:
            run([self._bin("pg_restore"), "--list", path], "pg_restore --list")
        except CommandError as exc:
            raise DatabaseError("The PostgreSQL archive %s is unreadable (%s). It cannot be restored; use "
                                "another checkpoint." % (path, exc.details.get("stderr"))) from exc

    # ------------------------------------------------------------------ restore
    def prepare_source(self, store: Store, component: dict, workdir: str) -> str:
        """Return a path pg_restore/psql can read: the blob itself, or a directory rebuilt from blobs."""
        if component["format"] != "directory":
            path = store.readable_path(component["blobs"][0], workdir)
        else:
            path = os.path.join(workdir, "dump")
            os.makedirs(path, mode=0o700)
            for rel, sha in sorted(component.get("files", {}).items()):
                target = os.path.join(path, safe_relpath(rel))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                store.export_blob(sha, target)
        if component["format"] != "plain":
            self.check_archive(path)
        return path

    def recreate(self, database: str, info: dict, force: bool = True) -> None:
        """Drop ``database`` if it exists (ending its sessions when ``force``) and create it empty."""
        drop = "DROP DATABASE IF EXISTS %s%s" % (ident(database), " WITH (FORCE)" if force else "")
        self.sql_steps([untemplate_sql(database), drop, create_sql(database, info)])

    def sql_steps(self, statements: List[str]) -> List[str]:
        """Run statements (or psql commands such as ``\\echo``) one after the other, each in its own transaction, in
        one psql call; return the output lines. The first that fails ends the call: the error's ``output``
        detail holds the lines printed before it."""
        argv = [self._bin("psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", *self.maintenance.pg_args()]
        for statement in statements:
            argv += ["-c", statement]
        return psql_steps(self.maintenance, argv)

    def create(self, database: str, info: dict) -> None:
        """Create an empty database with the recorded encoding, locale, tablespace and owner."""
        self.sql(create_sql(database, info))

    def drop(self, database: str) -> None:
        """Drop a database (a template one too), ending its sessions first."""
        self.sql_steps([untemplate_sql(database), "DROP DATABASE IF EXISTS %s WITH (FORCE)" % ident(database)])

    # ------------------------------------------------------------ the database itself
    def check_restore(self, database: str, info: dict, live: bool, terminate_sessions: bool, version: str) -> None:
        """Refuse a restore the login role cannot finish, naming what it lacks, before anything changes.

        Then, when the live database exists, apply the recorded properties to it in a transaction
        that is rolled back: the server itself proves every statement will pass on the copy.
        """
        major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 13
        query = privileges_sql(database, recorded_roles(info), info.get("tablespace"), major)
        facts = json.loads(self.sql(query)[0])
        deadline = time.monotonic() + SESSION_GRACE
        while (facts["sessions"] and not terminate_sessions and may_be_a_killed_run(facts["sessions"])
               and time.monotonic() < deadline):
            time.sleep(0.2)  # a killed run's backends end within moments of their client
            facts = json.loads(self.sql(query)[0])
        problems = restore_problems(database, info, facts, live, terminate_sessions)
        if problems:
            raise DatabaseError("Role %s cannot restore %s on %s: %s. Nothing was changed."
                                % (facts["user"], database, self.conn.describe(), "; ".join(problems)),
                                problems=problems)
        statements = property_statements(database, info)
        if live and statements:
            try:
                self.sql("BEGIN; %s; ROLLBACK" % "; ".join(statements))
            except DatabaseError as exc:
                raise DatabaseError("Role %s could not give %s the backed-up database properties (tried in a "
                                    "transaction that was rolled back): %s Nothing was changed."
                                    % (facts["user"], database, exc.details.get("stderr") or exc)) from exc

    def apply_properties(self, database: str, info: dict) -> None:
        """Give ``database`` the recorded properties (owner, limit, privileges, comment, settings, template)."""
        statements = property_statements(database, info)
        if statements:
            self.sql("BEGIN; %s; COMMIT" % "; ".join(statements))

    def load(self, source: str, component: dict, database: str, jobs: int) -> None:
        """Restore a prepared dump into an existing empty database."""
        target = self.conn.with_database(database)
        if component["format"] == "plain":
            argv = [self._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                    *target.pg_args(), "--file", source]
            what = "psql restore of %s" % database
        else:
            argv = [self._bin("pg_restore"), "--exit-on-error", *self.extra_args["pg_restore"], *target.pg_args()]
            argv += ["--jobs=%d" % jobs] if jobs > 1 else ["--single-transaction"]
            argv.append(source)
            what = "pg_restore of %s" % database
        run(argv, what, env=target.pg_env(), secrets=target.secrets())

    def swap(self, live: str, staged: str, old: Optional[str], terminate_sessions: bool = True) -> None:
        """Put ``staged`` in the place of ``live`` (kept as ``old``, or dropped when ``old`` is None).

        Other sessions of ``live`` are ended when ``terminate_sessions``; otherwise the swap waits
        up to 5 s for them to leave and then fails, naming them (the live database unchanged).
        """
        keep = old or live + "__gr_drop"
        # Without a kept copy, one psql call: drop the pre-restore copy a run killed between its swap and its drop
        # left, swap, drop the pre-restore copy. The markers tell which part failed; each fails as on its own.
        drop = [untemplate_sql(keep), "DROP DATABASE IF EXISTS %s WITH (FORCE)" % ident(keep)] if old is None else []
        first = drop + ["\\echo " + DROPPED_MARK] if drop else []
        terminate = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                     "pg_backend_pid(); " % literal(live)) if terminate_sessions else ""
        for attempt in range(50):
            try:
                self.sql_steps(first + [
                    "ALTER DATABASE %s ALLOW_CONNECTIONS false; %sBEGIN; "
                    "ALTER DATABASE %s RENAME TO %s; ALTER DATABASE %s RENAME TO %s; COMMIT; "
                    "ALTER DATABASE %s ALLOW_CONNECTIONS true"
                    % (ident(live), terminate, ident(live), ident(keep), ident(staged), ident(live), ident(keep)),
                    "\\echo " + SWAPPED_MARK] + drop)
                break
            except DatabaseError as exc:
                output = exc.details.get("output") or []
                if (first and DROPPED_MARK not in output) or SWAPPED_MARK in output:
                    raise  # dropping the pre-restore copy failed (before the swap, or after it)
                first = []
                if "being accessed by other users" not in str(exc) or attempt == 49:
                    self.sql("ALTER DATABASE %s ALLOW_CONNECTIONS true" % ident(live))
                    if "being accessed by other users" in str(exc) and not terminate_sessions:
                        sessions = self.sql("SELECT string_agg(format('pid %%s (user %%s, application %%s)', pid, "
                                            "usename, application_name), ', ') FROM pg_stat_activity WHERE "
                                            "datname = %s AND %s" % (literal(live), CLIENT_SESSION))
                        raise DatabaseError("Other sessions stayed connected to %s: %s. Stop them, or set "
                                            "terminate_sessions=true." % (live, "".join(sessions))) from exc
                    raise
                time.sleep(0.1)

    def check_restore_args(self, component: dict) -> None:
        """Refuse restore_extra_args for a plain dump, which psql restores, not pg_restore."""
        if component["format"] == "plain" and self.extra_args["pg_restore"]:
            raise RollbackError("restore_extra_args are pg_restore options, but this backup is a plain SQL dump, "
                                "which psql restores. Leave restore_extra_args out for it. Nothing was changed.")

    def describe_restore(self, component: dict, source: str, database: str, jobs: int) -> List[str]:
        """Return the commands a restore runs (for check mode and the result)."""
        if component["format"] == "plain":
            return ["psql --single-transaction -v ON_ERROR_STOP=1 --dbname %s --file <dump>" % database]
        return ["pg_restore --exit-on-error %s%s --dbname %s <dump>"
                % ("".join(arg + " " for arg in self.extra_args["pg_restore"]),
                   "--jobs=%d" % jobs if jobs > 1 else "--single-transaction", database)]
