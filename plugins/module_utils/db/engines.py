# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One adapter per database engine, and the one place that picks it for a connection.

An adapter (``PgEngine``, ``MysqlEngine``, ``SqliteEngine``) holds the connection and the server's
client command lines; it dumps, restores and swaps, and ``migrations()`` returns its migration side
(history tables, lock, scratch copy: ``db.migrations.Migrations``) on the same connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Union

from .connection import DbConnection
from ..common.errors import RollbackError

if TYPE_CHECKING:
    from .mysql import MysqlEngine
    from .pg import PgEngine
    from .sqlite import SqliteEngine

Adapter = Union["PgEngine", "MysqlEngine", "SqliteEngine"]


# Each engine's code is imported when a connection of that engine is made: a module run uses one engine, and
# every file it imports is compiled at its start (Ansible sends them as source).
# pylint: disable=import-outside-toplevel
def _pg() -> Callable[..., Adapter]:
    from .pg import PgEngine
    return PgEngine


def _mysql() -> Callable[..., Adapter]:
    from .mysql import MysqlEngine
    return MysqlEngine


def _sqlite() -> Callable[..., Adapter]:
    from .sqlite import SqliteEngine
    return SqliteEngine
# pylint: enable=import-outside-toplevel


#: engine name -> the function that imports and returns its adapter class
ENGINES: Dict[str, Callable[[], Callable[..., Adapter]]] = {"postgresql": _pg, "mysql": _mysql, "sqlite": _sqlite}


def make_engine(conn: DbConnection, maintenance_db: Optional[str] = None,
                extra_args: Optional[Dict[str, List[str]]] = None) -> Adapter:
    """Return the adapter of a connection (``extra_args``: {"pg_dump"|"pg_restore": argv}, PostgreSQL only)."""
    extra_args = {tool: args for tool, args in (extra_args or {}).items() if args}
    if conn.engine != "postgresql":
        if extra_args:
            raise RollbackError("dump_extra_args and restore_extra_args are pg_dump and pg_restore options; "
                                "leave them out for engine=%s." % conn.engine)
        return ENGINES[conn.engine]()(conn, maintenance_db or "postgres")
    return _pg()(conn, maintenance_db or "postgres", extra_args)
