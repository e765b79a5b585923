# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MariaDB/MySQL's adapter: backup and restore with the server's own clients (mariadb-dump/mysqldump,
mariadb/mysql).

Row counts are read from the dump itself as it streams into the store (``db.sqlrows``): they
are what the dump holds, in its own snapshot, without a second scan of the tables. They are
marked inexact (a restore then reports, but does not enforce, them) when a table appeared or
went during the dump, or when the dump could not be read (then the server counts afterwards).

A restore's swap of the staged copy into the live database is ``db.mysql_swap``; the migration
side (history, lock, scratch copy) is ``db.mysql_migrations.MysqlMigrations``
(``MysqlEngine.migrations()``).
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional

from .streams import COMPRESSORS, DatabaseError, DumpStream, feed_pipeline, output_buffer_launcher
from .connection import DbConnection
from .mysql_migrations import MysqlMigrations
from .mysql_objects import DbObject, ident, literal, parse_objects, read_script
from .mysql_swap import swap
from .sqlrows import RowCounter
from ..common.errors import CommandError
from ..common.process import run
from ..store.store import Store

DUMP_TRAILER = b"-- Dump completed"
NO_DATA_ENGINES = ("MRG_MYISAM", "MRG_ISAM", "FEDERATED")  # mariadb-dump writes no rows for these


def unescape(field: str) -> str:
    """Undo the escaping of the client's batch output."""
    return field.replace("\\t", "\t").replace("\\n", "\n").replace("\\0", "\0").replace("\\\\", "\\")


def connection_error(conn: DbConnection, stderr: str) -> DatabaseError:
    """Explain a failed client call, naming the likely way out."""
    for secret in conn.secrets():
        stderr = stderr.replace(secret, "********")
    hint = "Check the statement and the server log."
    if "Access denied" in stderr:
        hint = "Check login_user and login_password."
    elif "Unknown database" in stderr:
        hint = "Check the database name (gitops.rollback.db_backup_info lists backed-up ones)."
    elif "Can't connect" in stderr or "Lost connection" in stderr:
        hint = "Check login_host, login_port or login_unix_socket, and that the server is running."
    return DatabaseError("MariaDB/MySQL at %s: %s. %s" % (conn.describe(), stderr or "client failed", hint),
                         stderr=stderr)


def retarget_collation_switches(dumped: str, target: str) -> str:
    """Return the sed expression making mariadb-dump's ``ALTER DATABASE`` lines of ``dumped`` name ``target``."""
    def pattern(text: str) -> str:
        return re.sub(r"([\\.*\[\]^$/])", r"\\\1", text)

    def replacement(text: str) -> str:
        return re.sub(r"([\\&/])", r"\\\1", text)

    words = r" CHARACTER SET \([A-Za-z0-9_]*\) COLLATE \([A-Za-z0-9_]*\) ;$"
    return "s/^ALTER DATABASE %s%s/ALTER DATABASE %s CHARACTER SET \\1 COLLATE \\2 ;/" % (
        pattern(ident(dumped)), words, replacement(ident(target)))


class MysqlEngine:
    """Backs up and restores one MariaDB/MySQL server's databases."""

    name = "mysql"
    formats = ("sql",)
    default_format = "sql"

    def __init__(self, conn: DbConnection, maintenance_db: Optional[str] = None) -> None:
        self.conn = conn

    def migrations(self) -> MysqlMigrations:
        """Return the migration side (history, lock, scratch copy) of the connection's database."""
        return MysqlMigrations(self.conn)

    def _client(self) -> str:
        return self.conn.binary("mariadb", "mysql")

    def _dumper(self) -> str:
        return self.conn.binary("mariadb-dump", "mysqldump")

    # ------------------------------------------------------------------ queries
    def sql(self, sql: str, database: Optional[str] = None) -> List[List[str]]:
        """Run SQL in one session; return the rows of its output (tab-separated fields)."""
        with self.conn.mysql_args() as args:
            argv = [self._client(), *args, "--batch", "--skip-column-names", "--connect-timeout=10",
                    "--default-character-set=utf8mb4", "--execute", sql]
            if database:
                argv.append(database)
            try:
                done = run(argv, "mariadb client", secrets=self.conn.secrets())
            except CommandError as exc:
                raise connection_error(self.conn, str(exc.details.get("stderr") or exc)) from exc
        lines = done.stdout.decode("utf-8").split("\n")
        return [[unescape(field) for field in line.split("\t")] for line in lines if line != ""]

    def server_version(self) -> str:
        """Return the server version (and prove the connection works)."""
        return self.sql("SELECT VERSION()")[0][0]

    def probe(self, database: str) -> tuple:
        """Return (server version, whether ``database`` exists) in one round trip."""
        row = self.sql("SELECT VERSION(), EXISTS (SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s)"
                       % literal(database))[0]
        return row[0], row[1] == "1"

    def recreate(self, database: str, info: dict) -> None:
        """Drop ``database`` if it exists and create it empty (one round trip)."""
        self.sql("DROP DATABASE IF EXISTS %s; %s" % (ident(database), self.create_sql(database, info)))

    def databases(self) -> List[str]:
        """Return the databases."""
        return [row[0] for row in self.sql("SHOW DATABASES")]

    def exists(self, database: str) -> bool:
        """Tell whether a database exists."""
        return bool(self.sql("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s" % literal(database)))

    def size(self, database: str) -> int:
        """Return the approximate size of a database's tables in bytes."""
        rows = self.sql("SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES "
                        "WHERE TABLE_SCHEMA = %s" % literal(database))
        return int(rows[0][0])

    def tables(self, database: str, kinds: tuple = ("BASE TABLE",)) -> List[str]:
        """Return the tables of a database (base tables, or the given TABLE_TYPEs)."""
        return [row[0] for row in self.sql(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN (%s) "
            "ORDER BY TABLE_NAME" % (literal(database), ", ".join(literal(kind) for kind in kinds)))]

    def row_counts(self, database: str) -> Dict[str, int]:
        """Return exact row counts of every base table, read in one consistent snapshot (one round trip).

        The statement counting every table is built and run server-side, so the table list and the
        counts come from the same session.
        """
        build = (
            "SET SESSION group_concat_max_len = 16777216; "
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY; "
            "SELECT COALESCE(GROUP_CONCAT(CONCAT('SELECT ', QUOTE(TABLE_NAME), ', COUNT(*) FROM ', "
            "QUOTE_IDENT_SCHEMA, '.`', REPLACE(TABLE_NAME, '`', '``'), '`') SEPARATOR ' UNION ALL '), "
            "'SELECT NULL, NULL FROM DUAL WHERE FALSE') INTO @gr_counts FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'; "
            "PREPARE gr_counts FROM @gr_counts; EXECUTE gr_counts; DEALLOCATE PREPARE gr_counts; COMMIT"
        ) % literal(database)
        build = build.replace("QUOTE_IDENT_SCHEMA", literal(ident(database)))
        return {row[0]: int(row[1]) for row in self.sql(build)}

    def database_info(self, database: str) -> dict:
        """Return what re-creating the database needs (character set, collation)."""
        rows = self.sql("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                        "WHERE SCHEMA_NAME = %s" % literal(database))
        return {"charset": rows[0][0], "collation": rows[0][1]} if rows else {}

    # --------------------------------------------------------------------- dump
    def dump(self, store: Store, database: str, fmt: str, jobs: int, compression: Optional[str] = None,
             compression_level: Optional[int] = None) -> dict:
        """Dump ``database`` into the store; return the component fields.

        The row counts are read from the dump as it streams by (no second scan of the tables), so
        they are exactly what the dump holds.
        """
        version, info, before = self._dump_context(database)
        counter = RowCounter()
        with self.conn.mysql_args() as args:
            argv = [self._dumper(), *args, "--single-transaction", "--quick", "--routines", "--triggers",
                    "--events", "--hex-blob", "--default-character-set=utf8mb4", "--add-drop-table",
                    "--skip-add-locks", database]
            compressor = COMPRESSORS[compression][0] if compression else None
            if compressor and compression_level is not None:
                compressor = compressor[:-1] + ["-%d" % compression_level]
            stream = DumpStream(store, argv, "%s of %s" % (argv[0].rsplit("/", 1)[-1], database),
                                compressor=compressor, secrets=self.conn.secrets(), observer=counter.feed,
                                into_file=True, launcher=output_buffer_launcher())
            try:
                sha, size = stream.run()
            except CommandError as exc:
                raise connection_error(self.conn, str(exc)) from exc
        if DUMP_TRAILER not in bytes(stream.tail):
            raise DatabaseError("The dump of %s ended without its completion line; it is incomplete. Check "
                                "the server log and free space, then back up again." % database)
        fields = {"blobs": [sha], "sha256": sha, "size": size, "server_version": version,
                  "compression": compression, "database_info": info}
        fields.update(self._dumped_counts(database, before, counter))
        return fields

    def _dump_context(self, database: str) -> tuple:
        """Return the server version, the database's character set and collation, and its tables (one round trip)."""
        db = literal(database)
        rows = self.sql("SELECT 'db', VERSION(), DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
                        "information_schema.SCHEMATA WHERE SCHEMA_NAME = %s; %s" % (db, self._tables_sql(database)))
        head = [row for row in rows if row[0] == "db"]
        if not head:
            raise DatabaseError("Database %r vanished from %s before its dump started." % (database, self.conn.describe()))
        return head[0][1], {"charset": head[0][2], "collation": head[0][3]}, self._parse_tables(rows)

    @staticmethod
    def _tables_sql(database: str) -> str:
        return ("SELECT 'table', TABLE_NAME, TABLE_TYPE, COALESCE(ENGINE, '') FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME" % literal(database))

    @staticmethod
    def _parse_tables(rows: List[List[str]]) -> Dict[str, tuple]:
        """Return {table: (TABLE_TYPE, ENGINE)} from rows tagged 'table'."""
        return {row[1]: (row[2], row[3].upper()) for row in rows if row[0] == "table"}

    def _dumped_counts(self, database: str, before: Dict[str, tuple], counter: RowCounter) -> dict:
        """Return the row counts of every base table as the dump holds them, and whether they are exact.

        They are exact when the dump could be read and no table appeared or went while it ran.
        Tables whose data mariadb-dump does not write (MERGE, FEDERATED) are counted by the server.
        """
        after = self._parse_tables(self.sql(self._tables_sql(database)))
        counted = counter.finish()
        base = sorted(name for name, (kind, _engine) in after.items() if kind == "BASE TABLE")
        if counted is None:
            return {"row_counts": self.row_counts(database), "row_counts_exact": False,
                    "row_counts_note": "counted after the dump: the dump could not be read (%s)" % counter.failed}
        unread = [name for name in base if after[name][1] in NO_DATA_ENGINES]
        counts = {name: counted.get(name, 0) for name in base if name not in unread}
        counts.update(self._count_tables(database, unread))
        exact = before == after and set(counted) <= set(after)
        return {"row_counts": counts, "row_counts_exact": exact}

    def _count_tables(self, database: str, tables: List[str]) -> Dict[str, int]:
        """Return exact row counts of the given tables (one round trip)."""
        if not tables:
            return {}
        sql = " UNION ALL ".join("SELECT %s, COUNT(*) FROM %s.%s" % (literal(t), ident(database), ident(t))
                                 for t in tables)
        return {row[0]: int(row[1]) for row in self.sql(sql)}

    # ------------------------------------------------------------------ restore
    def prepare_source(self, store: Store, component: dict, workdir: str) -> str:
        """Return the stored dump's path (read through a decompressor when compressed)."""
        return store.readable_path(component["blobs"][0], workdir)

    def create(self, database: str, info: dict) -> None:
        """Create an empty database with the recorded character set."""
        self.sql(self.create_sql(database, info))

    @staticmethod
    def create_sql(database: str, info: dict) -> str:
        sql = "CREATE DATABASE %s" % ident(database)
        if info.get("charset"):
            sql += " CHARACTER SET %s COLLATE %s" % (ident(info["charset"]), ident(info["collation"]))
        return sql

    def drop(self, database: str) -> None:
        """Drop a database."""
        self.sql("DROP DATABASE IF EXISTS %s" % ident(database))

    def load(self, source: str, component: dict, database: str, jobs: int) -> None:
        """Load a stored dump into an existing empty database (``--comments``: routine bodies keep theirs).

        mariadb-dump switches the dumped database's collation around each routine, trigger or event
        created under another one (``ALTER DATABASE `<dumped name>` ...`` lines): loading into
        another name, those lines are rewritten (``sed``) to name the target, so the objects keep
        their collation and the database of the dumped name is never altered.

        The client splits the dump into statements byte by byte; with a multi-byte character set
        it also decodes every character, about a quarter of its CPU time. The dump is UTF-8
        (``--default-character-set=utf8mb4``), whose multi-byte characters never hold an ASCII
        byte (quotes, backslash, delimiter), so splitting it as ``binary`` finds the same
        statements; the dump's own ``SET NAMES utf8mb4`` sets how the server reads them.
        """
        stages = []
        if component.get("compression"):
            stages.append(COMPRESSORS[component["compression"]][1])
        if component.get("database") and component["database"] != database:
            stages.append(["sed", "-e", retarget_collation_switches(component["database"], database)])
        with self.conn.mysql_args() as args:
            stages.append([self._client(), *args, "--batch", "--default-character-set=binary", "--binary-mode",
                           "--comments", database])
            try:
                feed_pipeline(stages, source, "restore of %s" % database, secrets=self.conn.secrets())
            except CommandError as exc:
                raise connection_error(self.conn, str(exc)) from exc

    def run_script(self, script: bytes, database: Optional[str] = None) -> List[List[bytes]]:
        """Run a script (bytes, given to the server as they are) in one session; return its output rows as bytes."""
        with self.conn.mysql_args() as args:
            argv = [self._client(), *args, "--batch", "--skip-column-names", "--connect-timeout=10",
                    "--default-character-set=binary", "--binary-mode", "--comments"]
            if database:
                argv.append(database)
            try:
                done = run(argv, "mariadb client", stdin=script, secrets=self.conn.secrets())
            except CommandError as exc:
                raise connection_error(self.conn, str(exc.details.get("stderr") or exc)) from exc
        return [line.split(b"\t") for line in done.stdout.split(b"\n") if line]

    def list_objects(self, database: str) -> List[tuple]:
        """Return (kind, name) of the views, routines, events and triggers of a database.

        Triggers come in the order they fire (per table, timing and event): they are re-created in it.
        """
        return [(row[0], row[1]) for row in self.sql(self.list_objects_sql(database))]

    @staticmethod
    def list_objects_sql(database: str, tag: str = "") -> str:
        """Return the query of ``list_objects`` (rows: kind, name, ...); with ``tag``, each row starts with it."""
        db, first = literal(database), literal(tag) + ", " if tag else ""
        order = "1, 3, 4, 5, 6, 2" if not tag else "2, 4, 5, 6, 7, 3"
        return (
            "SELECT %s'VIEW', TABLE_NAME, '', '', '', 0 FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s UNION ALL "
            "SELECT %sROUTINE_TYPE, ROUTINE_NAME, '', '', '', 0 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA "
            "= %s UNION ALL SELECT %s'EVENT', EVENT_NAME, '', '', '', 0 FROM information_schema.EVENTS WHERE "
            "EVENT_SCHEMA = %s UNION ALL SELECT %s'TRIGGER', TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, "
            "EVENT_MANIPULATION, ACTION_ORDER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s ORDER BY %s"
            % (first, db, first, db, first, db, first, db, order))

    def read_objects(self, database: str) -> List[DbObject]:
        """Return the views, routines, events and triggers of a database as stored, with their creation sessions."""
        return self.read_listed_objects({database: self.list_objects(database)})[database]

    def read_listed_objects(self, listed: Dict[str, List[tuple]]) -> Dict[str, List[DbObject]]:
        """Return the objects of each database as stored, from their (kind, name) lists (``list_objects``): one
        client run for all of them (none when there are none)."""
        wanted = [database for database, objects in listed.items() if objects]
        found: Dict[str, List[DbObject]] = {database: [] for database in listed}
        if not wanted:
            return found
        rows = self.run_script(b"".join(read_script(database, listed[database]) for database in wanted))
        if len(rows) != sum(len(listed[database]) for database in wanted):  # an object changed while it was read
            parse_objects([o for database in wanted for o in listed[database]], rows, " and ".join(wanted))
        for database in wanted:
            found[database] = parse_objects(listed[database], rows[:len(listed[database])], database)
            rows = rows[len(listed[database]):]
        return found

    def swap(self, live: str, staged: str, old: Optional[str]) -> None:
        """Move the staged tables into ``live`` (its tables go to ``old``, or are dropped): ``db.mysql_swap``."""
        swap(self, live, staged, old)

    def describe_restore(self, component: dict, source: str, database: str, jobs: int) -> List[str]:
        """Return the commands a restore runs (for check mode and the result)."""
        head = "%s -d -c <dump> | " % COMPRESSORS[component["compression"]][1][0] if component.get("compression") else ""
        return [head + "mariadb --batch --binary-mode --comments %s < <dump>" % database]
