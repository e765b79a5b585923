# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database connection options and credential handling shared by the database modules.

Passwords never appear in an argument list or a log line: PostgreSQL clients get PGPASSWORD
in their environment; MariaDB/MySQL clients get a defaults file written 0600 in a private
temporary directory and removed afterwards; SQLite needs none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

from ..common.errors import RollbackError

ENGINES = ("postgresql", "mysql", "sqlite")
ENGINE_ALIASES = {"mariadb": "mysql"}
"""Other names an ``engine`` option takes: MariaDB is served by the mysql engine (its clients, its dumps)."""
ENGINE_CHOICES = ENGINES + tuple(ENGINE_ALIASES)


def canonical_engine(engine: object) -> str:
    """The engine's own name (``mariadb`` -> ``mysql``): what component names, dumps and plans use."""
    return ENGINE_ALIASES.get(str(engine), str(engine))


def db_connection_argument_spec() -> dict:
    """Return the argument spec of the db_connection doc fragment (a fresh dict)."""
    return dict(
        engine=dict(type="str", required=True, choices=list(ENGINE_CHOICES)),
        database=dict(type="str", required=True, aliases=["db", "name"]),
        login_host=dict(type="str", aliases=["host"]),
        login_port=dict(type="int", aliases=["port"]),
        login_user=dict(type="str", aliases=["user"]),
        login_password=dict(type="str", no_log=True, aliases=["password"]),
        login_unix_socket=dict(type="path", aliases=["unix_socket"]),
        client_bin_dir=dict(type="path"),
        client_charset=dict(type="str", default="utf8mb4"),
    )


@dataclass
class DbConnection:
    """Where a database is and how to log in to it."""

    engine: str
    database: str
    host: Optional[str] = None
    port: Optional[int] = None
    user: Optional[str] = None
    password: Optional[str] = None
    unix_socket: Optional[str] = None
    client_bin_dir: Optional[str] = None
    charset: str = "utf8mb4"

    @classmethod
    def from_params(cls, params: dict) -> "DbConnection":
        """Build a connection from module parameters named as in the spec."""
        return cls(
            engine=canonical_engine(params["engine"]), database=params["database"], host=params.get("login_host"),
            port=params.get("login_port"), user=params.get("login_user"),
            password=params.get("login_password"), unix_socket=params.get("login_unix_socket"),
            client_bin_dir=params.get("client_bin_dir"), charset=params.get("client_charset") or "utf8mb4",
        )

    def describe(self) -> str:
        """Return a password-free description for messages."""
        if self.engine == "sqlite":
            return "sqlite:%s" % self.database
        where = self.unix_socket or "%s:%s" % (self.host or "localhost", self.port or "default")
        return "%s://%s@%s/%s" % (self.engine, self.user or "", where, self.database)

    def with_database(self, database: str) -> "DbConnection":
        """Return the same connection pointed at another database."""
        copy = DbConnection(**self.__dict__)
        copy.database = database
        return copy

    def secrets(self) -> List[str]:
        """Return the values that must be scrubbed from any output."""
        return [self.password] if self.password else []

    def binary(self, *names: str) -> str:
        """Return the first client program found among ``names`` (in client_bin_dir, then PATH)."""
        for name in names:
            if self.client_bin_dir:
                candidate = os.path.join(self.client_bin_dir, name)
                if os.access(candidate, os.X_OK):
                    return candidate
            found = shutil.which(name)
            if found:
                return found
        raise RollbackError(
            "None of %s is installed on this host (searched %s). Install the %s client package "
            "or set client_bin_dir." % (", ".join(names), self.client_bin_dir or "PATH", self.engine)
        )

    # ------------------------------------------------------------- postgresql
    def pg_args(self, with_database: bool = True) -> List[str]:
        """Return libpq connection options (no password)."""
        args = []
        host = self.unix_socket or self.host
        if host:
            args += ["--host", host]
        if self.port:
            args += ["--port", str(self.port)]
        if self.user:
            args += ["--username", self.user]
        args.append("--no-password")
        if with_database:
            args += ["--dbname", self.database]
        return args

    def pg_env(self) -> Dict[str, str]:
        """Return the environment carrying the PostgreSQL password."""
        return {"PGPASSWORD": self.password} if self.password else {}

    # ------------------------------------------------------------------ mysql
    @contextmanager
    def mysql_args(self) -> Iterator[List[str]]:
        """Yield client options for MariaDB/MySQL; the password goes into a 0600 defaults file
        (the option must come first on the command line), removed on exit.

        The character set is always given: without it the client takes the option files' or
        guesses from the locale (latin1 under LC_ALL=C), and text is stored garbled.
        """
        tmpdir = tempfile.mkdtemp(prefix="gitops-rollback-my-")
        try:
            args = []
            if self.password is not None:
                path = os.path.join(tmpdir, "client.cnf")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write("[client]\npassword=\"%s\"\n" % self.password.replace("\\", "\\\\").replace('"', '\\"'))
                args.append("--defaults-extra-file=%s" % path)
            if self.unix_socket:
                args.append("--socket=%s" % self.unix_socket)
            if self.host:
                args.append("--host=%s" % self.host)
            if self.port:
                args.append("--port=%d" % self.port)
            if self.user:
                args.append("--user=%s" % self.user)
            args.append("--default-character-set=%s" % self.charset)
            yield args
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)


def database_key(conn: DbConnection, database: Optional[str] = None) -> str:
    """Return how a database is named in components: an absolute path for SQLite."""
    name = database or conn.database
    return os.path.abspath(name) if conn.engine == "sqlite" else name


def component_name(engine: str, database: str) -> str:
    """Return the component name ``<engine>/<database>``."""
    return "%s/%s" % (engine, database)
