# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MariaDB/MySQL views, routines, events and triggers as the server stores them, and the client
scripts that re-create them exactly.

A stored program keeps the session it was created in: its ``sql_mode``, ``character_set_client``,
``collation_connection``, the database's collation at the time and, for an event, the time zone.
Its text is kept in that client character set. So each object is read with ``SHOW CREATE`` while
``character_set_results = binary`` (the bytes as stored) and re-created in a session set to those
values first, as mariadb-dump writes it; ``information_schema`` then shows the same values. A view
keeps no ``sql_mode``: it is read and re-created under an empty one (``SHOW CREATE VIEW`` then
quotes every identifier with backquotes).

Scripts are bytes fed to the client as they are (``--default-character-set=binary
--binary-mode --comments``); each CREATE ends with a delimiter that appears in no definition.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence

from ..common.errors import RollbackError

# SHOW CREATE <kind> columns: where the statement, sql_mode, client character set, connection
# collation, database collation and time zone are (None: the kind has no such column)
COLUMNS = {
    "VIEW": (1, None, 2, 3, None, None),
    "PROCEDURE": (2, 1, 3, 4, 5, None),
    "FUNCTION": (2, 1, 3, 4, 5, None),
    "TRIGGER": (2, 1, 3, 4, 5, None),
    "EVENT": (3, 1, 4, 5, 6, 2),
}
ORDER = {"FUNCTION": 0, "PROCEDURE": 1, "EVENT": 2, "VIEW": 3, "TRIGGER": 4}  # a view may call a function
_ESCAPES = {b"0": b"\0", b"t": b"\t", b"n": b"\n", b"\\": b"\\"}
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z0-9_+:/-]+\Z")  # character sets, collations, sql_mode words, time zone names


@dataclass
class DbObject:
    """A view, routine, event or trigger: its CREATE statement (bytes as stored) and creation session."""

    kind: str
    name: str
    definition: bytes
    charset_client: str
    collation_connection: str
    sql_mode: str = ""
    db_collation: Optional[str] = None
    time_zone: Optional[str] = None


def ident(name: str) -> str:
    """Quote a MariaDB identifier."""
    return "`" + name.replace("`", "``") + "`"


def literal(value: str) -> str:
    """Quote a MariaDB string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def unescape_bytes(field: bytes) -> bytes:
    """Undo the escaping of the client's batch output (``\\0 \\t \\n \\\\``)."""
    return _ESCAPE.sub(lambda match: _ESCAPES.get(match.group(1), match.group(0)), field)


def read_script(database: str, objects: Sequence[tuple]) -> bytes:
    """Return the script that prints ``SHOW CREATE`` of each (kind, name), one row each, as stored."""
    lines = ["SET NAMES utf8mb4", "SET character_set_results = binary", "SET SESSION sql_mode = ''",
             "USE %s" % ident(database)]
    lines += ["SHOW CREATE %s %s" % (kind, ident(name)) for kind, name in objects]
    return "".join(line + ";\n" for line in lines).encode("utf-8")


def parse_objects(objects: Sequence[tuple], rows: List[List[bytes]], database: str) -> List[DbObject]:
    """Return the objects read by ``read_script`` (its output rows, one per object, in order)."""
    if len(rows) != len(objects):
        raise RollbackError("Reading the definitions of the views, routines, events and triggers of %s returned "
                            "%d rows for %d objects; an object changed while it was read. Run the restore again."
                            % (database, len(rows), len(objects)))
    found = []
    for (kind, name), row in zip(objects, rows):
        where = COLUMNS[kind]
        fields = [unescape_bytes(row[i]).decode("utf-8", "replace") if i is not None and i < len(row) else None
                  for i in where[1:]]
        statement = unescape_bytes(row[where[0]]) if where[0] < len(row) else b""
        if not statement.startswith(b"CREATE"):
            raise RollbackError("The definition of %s %s in %s cannot be read (SHOW CREATE gave none): the login "
                                "user needs the privileges to see it (for a routine: be its definer, or have SELECT "
                                "on mysql.proc or the SHOW CREATE ROUTINE privilege)." % (kind.lower(), name, database))
        mode, client, connection, db_collation, zone = fields
        for value in (mode, client, connection, db_collation, zone):
            if value and not all(_NAME.match(word) for word in value.split(",")):
                raise RollbackError("%s %s in %s has an unexpected session setting %r."
                                    % (kind.lower(), name, database, value))
        found.append(DbObject(kind, name, statement, client or "utf8mb4", connection or "utf8mb4_general_ci",
                              mode or "", db_collation, zone))
    return found


def quoted_names(name: str) -> List[bytes]:
    """Return how ``name`` may appear, backquoted, in a definition (in the character sets it may be kept in)."""
    names = {ident(name).encode("utf-8")}
    try:
        names.add(ident(name).encode("cp1252"))
    except UnicodeEncodeError:
        pass
    return sorted(names)


def ordered(objects: Iterable[DbObject]) -> List[DbObject]:
    """Return functions, procedures, events, views (each after the views it names), triggers.

    A view that names another view (a backquoted name in its definition) comes after it; names
    that merely look alike only change the order. Triggers keep the order given (the order they
    fire in); the other objects come in name order.
    """
    objects = list(objects)
    position = {id(o): index for index, o in enumerate(objects)}
    objects.sort(key=lambda o: (ORDER[o.kind], position[id(o)] if o.kind == "TRIGGER" else 0, o.name))
    views = [o for o in objects if o.kind == "VIEW"]
    needs: Dict[str, set] = {}
    for view in views:
        needs[view.name] = {other.name for other in views if other.name != view.name
                            and any(token in view.definition for token in quoted_names(other.name))}
    placed: List[DbObject] = []
    pending = list(views)
    while pending:
        done = {v.name for v in placed}
        ready = [v for v in pending if needs[v.name] <= done] or pending[:1]  # a look-alike cycle: name order
        placed += ready
        pending = [v for v in pending if v not in ready]
    return [o for o in objects if ORDER[o.kind] < ORDER["VIEW"]] + placed + [o for o in objects if o.kind == "TRIGGER"]


def delimiter_for(objects: Sequence[DbObject]) -> bytes:
    """Return a statement delimiter that appears in no definition (the client splits nowhere else).

    The client keeps at most 15 bytes of a delimiter (it cuts a longer one, silently).
    """
    while True:
        token = b"$$" + os.urandom(5).hex().encode("ascii") + b"$$"
        if not any(token in o.definition for o in objects):
            return token


def creation_script(database: str, objects: Sequence[DbObject], final_info: Optional[dict] = None) -> bytes:
    """Return the client script that creates ``objects`` in ``database``, each in its own session settings.

    The database's collation is switched to each object's recorded one while it is created (the
    object keeps it), then set to ``final_info`` (charset, collation), or put back.
    """
    delimiter = delimiter_for(objects)
    db = ident(database)
    out = [b"SET NAMES utf8mb4;\n", ("USE %s;\n" % db).encode("utf-8")]
    for obj in ordered(objects):
        settings = "SET SESSION sql_mode = %s" % literal(obj.sql_mode)
        if obj.time_zone:
            settings += ", time_zone = %s" % literal(obj.time_zone)
        out.append((settings + ";\n").encode("utf-8"))
        if obj.db_collation:
            out.append(("ALTER DATABASE %s COLLATE %s;\n" % (db, ident(obj.db_collation))).encode("utf-8"))
        out.append(("SET character_set_client = %s, collation_connection = %s;\n"
                    % (ident(obj.charset_client), ident(obj.collation_connection))).encode("utf-8"))
        out += [b"DELIMITER ", delimiter, b"\n", obj.definition, delimiter, b"\nDELIMITER ;\n", b"SET NAMES utf8mb4;\n"]
    out.append(b"SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT;\n")
    if final_info and final_info.get("charset"):
        out.append(("ALTER DATABASE %s CHARACTER SET %s COLLATE %s;\n"
                    % (db, ident(final_info["charset"]), ident(final_info["collation"]))).encode("utf-8"))
    return b"".join(out)


def drop_statements(database: str, objects: Iterable[tuple], triggers: bool = True, others: bool = True) -> List[str]:
    """Return the DROP statements of (kind, name) objects of ``database`` (triggers and/or the other kinds)."""
    return ["DROP %s IF EXISTS %s.%s" % (kind, ident(database), ident(name)) for kind, name in objects
            if (kind == "TRIGGER" and triggers) or (kind != "TRIGGER" and others)]
