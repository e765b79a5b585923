# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MariaDB/MySQL's migration side: the mariadb (or mysql) client fed on standard input, GET_LOCK held by
a client session, and the statement splitter that keeps compound statements whole."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from typing import List, Optional, Tuple

from .connection import DbConnection
from .migrations import (
    HISTORY, LABELS, LOCK_NAME, LOCKS, OWN_TABLES, MigrationFailed, Migrations, Row, end_lock_session, send_to_session,
    terminated, wait_for_lock)
from ..common.errors import CommandError, RollbackError
from ..common.process import command_env, run

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


class MysqlMigrations(Migrations):
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
        if not self.schema_ready:
            self.query(self._schema_sql(), "Creating the migration history tables")
            self.schema_ready = True

    @staticmethod
    def _schema_sql() -> str:
        return (
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
            % (HISTORY, LABELS, LOCKS, HISTORY, HISTORY))

    def _if_schema(self, sql: str) -> str:
        """Return a script running ``sql`` only when the history table exists (else it prints NULL; one client run)."""
        return ("SET @gr_read = IF((SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
                "AND table_name = '%s') = 1, %s, 'SELECT NULL');\nPREPARE gr_read FROM @gr_read;\nEXECUTE gr_read;\n"
                "DEALLOCATE PREPARE gr_read;\n" % (HISTORY, self.literal(sql.rstrip().rstrip(";"))))

    @staticmethod
    def _json_or_none(out: str) -> Optional[dict]:
        out = out.strip()
        return json.loads(out) if out and out != "NULL" else None

    def read_state_if_exists(self) -> Optional[dict]:
        return self._json_or_none(self.query(self._if_schema(self._state_sql()), "Reading the migration history"))

    def read_state(self) -> dict:
        return json.loads(self.query(self._state_sql(), "Reading the migration history"))

    @staticmethod
    def _state_sql() -> str:
        return (
            "SELECT JSON_OBJECT('history', COALESCE((SELECT JSON_ARRAYAGG(JSON_OBJECT('version', version, 'name', name, "
            "'checksum', checksum, 'down_checksum', down_checksum, 'down_sql', down_sql, 'applied_at', "
            "DATE_FORMAT(applied_at, '%%Y-%%m-%%dT%%H:%%i:%%s.%%fZ'), 'applied_by', applied_by, 'job_id', job_id, "
            "'duration_ms', duration_ms, 'label', label, 'state', state, 'direction', direction) ORDER BY version) "
            "FROM %s), JSON_ARRAY()), 'labels', COALESCE((SELECT JSON_ARRAYAGG(JSON_OBJECT('label', label, 'version', "
            "version, 'labelled_at', DATE_FORMAT(labelled_at, '%%Y-%%m-%%dT%%H:%%i:%%sZ'), 'labelled_by', labelled_by) "
            "ORDER BY labelled_at) FROM %s), JSON_ARRAY()));" % (HISTORY, LABELS))

    def run_scripts(self, scripts: List[str]) -> None:
        if not scripts:
            return
        self.schema_ready = False  # a migration may drop or alter anything
        try:
            self._run([], "".join(scripts), "Running migrations on %s" % self.conn.describe())
        except CommandError as exc:
            raise MigrationFailed(str(exc), **exc.details) from exc

    # -- lock
    @staticmethod
    def _holder_sql() -> str:
        return ("SELECT JSON_OBJECT('owner', owner, 'host', host, 'pid', pid, 'session_id', session_id, "
                "'acquired_at', acquired_at, 'expires_epoch', expires_epoch, 'expires_at', expires_at) "
                "FROM %s WHERE name = '%s';\n" % (LOCKS, LOCK_NAME))

    def _holder(self) -> Optional[dict]:
        return self._json_or_none(self.query(self._if_schema(self._holder_sql()), "Reading the migration lock owner"))

    def _replace_owner(self, row_sql: str) -> Optional[dict]:
        out = self.query(self._schema_sql() + self._holder_sql() + row_sql, "Recording the migration lock owner")
        self.schema_ready = True
        return self._json_or_none(out)

    def acquire_lock(self, owner: str, ttl: float, timeout: float) -> None:
        self._session_args = self.conn.mysql_args()
        args = self._session_args.__enter__()
        argv = [self._client()] + args + ["--batch", "--raw", "--skip-column-names", "--unbuffered", self.conn.database]
        self._session = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=command_env(None))
        name = self.literal(self.lock_name())

        def try_lock() -> Tuple[bool, str]:
            got, session = send_to_session(self, "SELECT GET_LOCK(%s, 0), CONNECTION_ID();" % name).split("\t")
            return got == "1", session

        def end_expired(holder: dict) -> bool:
            self.query("SELECT IS_USED_LOCK(%s) INTO @gr_holder;\n"
                       "SET @gr_kill = IF(@gr_holder = %d, CONCAT('KILL ', @gr_holder), 'DO 0');\n"
                       "PREPARE gr_stmt FROM @gr_kill;\nEXECUTE gr_stmt;\n"
                       % (name, int(holder.get("session_id") or -1)), "Ending the expired lock holder's session")
            return True

        session = wait_for_lock(self, timeout, try_lock, end_expired)
        self._record_owner(owner, ttl, int(session), "REPLACE")

    def release_lock(self) -> None:
        end_lock_session(self, "SELECT RELEASE_ALL_LOCKS(), 1;")
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

    def scratch_copy(self) -> "MysqlMigrations":
        name = "gr_scratch_%s_%s" % (re.sub(r"[^a-z0-9_]", "", self.conn.database.lower())[:30], secrets.token_hex(4))
        schema = self._dump_schema([])
        self.query("CREATE DATABASE `%s`;" % name, "Creating the scratch database %s" % name)
        scratch = MysqlMigrations(self.conn.with_database(name))
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
