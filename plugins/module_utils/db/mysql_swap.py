# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A MariaDB/MySQL restore's swap of the staged copy into the live database (``MysqlEngine.swap``).

Swap has no ``RENAME DATABASE`` to lean on: the dump is restored into a staging schema, then
ONE ``RENAME TABLE`` statement moves every live table into the ``__gr_old_`` schema and every
staged table into the live one (atomic for the tables). Triggers pin a table to its schema, so
they are dropped before the move, in ONE server-side block with the ``RENAME TABLE``
(``BEGIN NOT ATOMIC``): the server runs a block it received to its end even when the client is
killed. It does notice a dead client while a statement waits for a metadata lock (every second)
and fails that wait, so the block retries a failed lock wait until ``lock_wait_timeout`` from its
start has passed; the live tables therefore never lose their triggers without being moved. Views,
routines, events and triggers are then re-created in the live schema from the staging schema's
definitions, each in its own creation session (``db.mysql_objects``). Between the move and the
re-creation (one client session, milliseconds) views and triggers are absent (the state ``moved``;
the next restore completes it); the old schema keeps the tables only. A client killed while
the block waits longer than ``lock_wait_timeout``, or while it fails for another reason, leaves
the live tables in place without their triggers; the next restore completes that too. MySQL has
no anonymous blocks: there the drops and the move are separate statements.

The swap's phases (``SWAP_PHASES``): ``read`` the objects of both databases (dropping what killed
runs left: ``__gr_drop``, other ``__gr_restore_`` copies), ``rehearse`` their re-creation in the
staged copy, ``prepare`` the database receiving the live tables, ``move`` + ``objects`` (one
session), ``cleanup``. A failure up to ``prepare`` leaves the live database untouched; a failure
in ``move`` or ``objects`` puts it back as it was before the error is raised.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from .streams import DatabaseError
from .mysql_objects import DbObject, creation_script, drop_statements, ident, literal
from ..common.errors import RollbackError

MOVABLE = ("BASE TABLE", "SEQUENCE", "SYSTEM VERSIONED")

SWAP_PHASES = {
    "read": "reading the views, routines, events and triggers of the staged copy and the live database",
    "rehearse": "re-creating the views, routines, events and triggers in the staged copy",
    "prepare": "creating the database that receives the live tables",
    "move": "moving the tables (one RENAME TABLE)",
    "objects": "re-creating the views, routines, events and triggers in the live database",
    "cleanup": "dropping the emptied staged copy and the previous tables",
}


def swap_error(live: str, phase: str, cause: RollbackError, touched: bool, state: Optional[str] = None) -> DatabaseError:
    """Return the error of a failed swap phase; ``details`` say which, whether the live database changed, its state."""
    details = dict(cause.details, swap_phase=phase, live_database_touched=touched)
    if state:
        details["live_state"] = state
    return DatabaseError("swap phase '%s' (%s) of %s failed: %s" % (phase, SWAP_PHASES[phase], live, cause), **details)


def rename(moves: List[tuple]) -> str:
    """Return one RENAME TABLE statement moving each (from database, table, to database)."""
    return "RENAME TABLE " + ", ".join("%s.%s TO %s.%s" % (ident(src), ident(table), ident(dst), ident(table))
                                       for src, table, dst in moves)


def statements_script(statements: List[str]) -> bytes:
    """Return a client script (bytes) of statements whose text is UTF-8."""
    return "".join(statement + ";\n" for statement in ["SET NAMES utf8mb4"] + statements).encode("utf-8")


def swap(engine, live: str, staged: str, old: Optional[str]) -> None:
    """Move the staged tables into ``live`` (its tables go to ``old``, or are dropped); see the module docstring.

    A failure names its phase (``SWAP_PHASES``); before the move ``live`` is untouched, after it
    ``live`` is put back as it was (tables moved back, objects re-created) before the error is raised.
    """
    keep = old or live + "__gr_drop"
    phase = "read"
    try:
        found = survey(engine, live, staged)
        for leftover in found["leftovers"]:
            engine.drop(leftover)
        objects = engine.read_listed_objects(found["objects"])
        staged_objects, live_objects = objects[staged], objects[live]
        info, live_info = found["info"][staged], found["info"][live]
        mariadb = "mariadb" in found["version"].lower()
        phase = "rehearse"
        engine.run_script(rehearsal(staged, staged_objects, info))
        phase = "prepare"
        tables = tables_then_create(engine, [live, staged], keep, live_info)
    except RollbackError as exc:
        raise swap_error(live, phase, exc, touched=False) from exc
    try:  # one session: the objects are absent for milliseconds, not across client calls
        engine.run_script(move_script(live, staged, keep, tables, live_objects, staged_objects, mariadb)
                          + creation_script(live, staged_objects, info))
    except RollbackError as exc:
        raise put_back(engine, live, staged, keep, tables[staged], live_objects, live_info, exc) from exc
    phase = "cleanup"
    try:  # one client run; it stops at the first statement that fails
        engine.sql("; ".join("DROP DATABASE IF EXISTS %s" % ident(name)
                             for name in [staged] + ([keep] if old is None else [])))
    except RollbackError as exc:
        raise swap_error(live, phase, exc, touched=True, state=(
            "The live database %s holds the backup (tables and objects); %s%s could not be dropped now (the "
            "next restore drops them)." % (live, staged, "" if old else " and " + keep))) from exc


def survey(engine, live: str, staged: str) -> dict:
    """Read in one client run what the swap starts from: ``leftovers`` (the staging databases of ``live`` that
    killed runs left: ``__gr_drop``, other ``__gr_restore_``), the server ``version``, ``info`` (character set and
    collation, as ``database_info``) of both databases and, by database, its (kind, name)
    (``objects``, as ``list_objects``)."""
    pattern = (live + "__gr_").replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    queries = ["SELECT 'leftover', SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s"
               % literal(pattern + "%"), "SELECT 'version', VERSION()"]
    queries += ["SELECT %s, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                "WHERE SCHEMA_NAME = %s" % (literal("info " + tag), literal(name))
                for tag, name in (("staged", staged), ("live", live))]
    queries += [engine.list_objects_sql(name, "objects " + tag) for tag, name in (("staged", staged), ("live", live))]
    rows = engine.sql("; ".join(queries))
    found: dict = {"version": next(row[1] for row in rows if row[0] == "version"), "info": {}, "objects": {}}
    found["leftovers"] = [row[1] for row in rows if row[0] == "leftover" and row[1] != staged and (
        row[1] == live + "__gr_drop" or row[1].startswith(live + "__gr_restore_"))]
    for tag, name in (("staged", staged), ("live", live)):
        info = [row for row in rows if row[0] == "info " + tag]
        found["info"][name] = {"charset": info[0][1], "collation": info[0][2]} if info else {}
        found["objects"][name] = [(row[1], row[2]) for row in rows if row[0] == "objects " + tag]
    return found


def tables_then_create(engine, databases: List[str], keep: str, keep_info: dict) -> Dict[str, List[str]]:
    """Return the movable tables of each database (as ``engine.tables``), then create ``keep`` (one client run)."""
    queries = ["SELECT %s, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN (%s) "
               "ORDER BY TABLE_NAME" % (literal(str(index)), literal(name), ", ".join(literal(k) for k in MOVABLE))
               for index, name in enumerate(databases)]
    rows = engine.sql("; ".join(queries + [engine.create_sql(keep, keep_info)]))
    return {name: [row[1] for row in rows if row[0] == str(index)] for index, name in enumerate(databases)}


def rehearsal(staged: str, objects: List[DbObject], info: dict) -> bytes:
    """Return the script that re-creates the staged objects in the staged copy, proving they can be."""
    drops = drop_statements(staged, [(o.kind, o.name) for o in objects])
    return statements_script(drops) + creation_script(staged, objects, info)


def move_script(live: str, staged: str, keep: str, tables: Dict[str, List[str]], live_objects: List[DbObject],
                staged_objects: List[DbObject], block: bool = True) -> bytes:
    """Return the script that drops the triggers (they pin a table to its schema) and moves the tables.

    One RENAME TABLE moves every live table into ``keep`` and every staged one into ``live``:
    all or none, in one server-side block with the drops of the live triggers (``retrying_block``;
    MySQL has no anonymous blocks: with ``block`` false they are separate statements).
    The other live objects are dropped after it.
    """
    live_names = [(o.kind, o.name) for o in live_objects]
    moves = [(live, t, keep) for t in tables[live]] + [(staged, t, live) for t in tables[staged]]
    staged_drops = drop_statements(staged, [(o.kind, o.name) for o in staged_objects], others=False)
    moving = drop_statements(live, live_names, others=False) + ([rename(moves)] if moves else [])
    return (statements_script(staged_drops) + (retrying_block(moving) if block else statements_script(moving))
            + statements_script(drop_statements(live, live_names, triggers=False)))


def retrying_block(statements: List[str]) -> bytes:
    """Return a client script running ``statements`` as ONE server-side block, each retried after a lock wait
    failed (ER_LOCK_WAIT_TIMEOUT: the server fails a wait when it notices its client is gone) until
    ``lock_wait_timeout`` from the block's start has passed; see the module docstring.
    """
    if not statements:
        return b""
    body = "".join("  SET gr_retry = 1;\n  WHILE gr_retry DO\n    SET gr_retry = 0;\n    BEGIN\n"
                   "      DECLARE CONTINUE HANDLER FOR 1205 IF NOW(6) < gr_deadline THEN SET gr_retry = 1; "
                   "ELSE RESIGNAL; END IF;\n      %s;\n    END;\n  END WHILE;\n" % statement
                   for statement in statements)
    block = ("BEGIN NOT ATOMIC\n  DECLARE gr_deadline DATETIME(6) DEFAULT NOW(6) + INTERVAL @@lock_wait_timeout "
             "SECOND;\n  DECLARE gr_retry INT DEFAULT 1;\n" + body + "END")
    delimiter = "$$" + os.urandom(5).hex() + "$$"
    while delimiter in block:
        delimiter = "$$" + os.urandom(5).hex() + "$$"
    return ("SET NAMES utf8mb4;\nDELIMITER %s\n%s%s\nDELIMITER ;\n" % (delimiter, block, delimiter)).encode("utf-8")


def put_back(engine, live: str, staged: str, keep: str, backup_tables: List[str], live_objects: List[DbObject],
             live_info: dict, cause: RollbackError) -> DatabaseError:
    """Bring ``live`` back as it was after a failed move or re-creation; return the error to raise.

    The objects ``live`` holds now are dropped; if the move happened, one RENAME TABLE moves the
    backup's tables back to the staged copy and the previous ones back into ``live``; then the
    previous objects are re-created as they were, and the emptied ``keep`` is dropped.
    """
    phase = "objects"
    try:
        current = engine.list_objects(live)
        kept = engine.tables(keep, MOVABLE)
        moved = bool(kept) or bool(backup_tables and not engine.tables(staged, MOVABLE))
        phase = "objects" if moved else "move"
        moves = [(live, t, staged) for t in backup_tables] + [(keep, t, live) for t in kept] if moved else []
        statements = drop_statements(live, current, others=False) + ([rename(moves)] if moves else [])
        statements += drop_statements(live, current, triggers=False)
        engine.run_script(statements_script(statements) + creation_script(live, live_objects, live_info))
        engine.drop(keep)
    except RollbackError as exc:
        return swap_error(live, phase, cause, touched=True, state=(
            "Putting %s back failed too (%s). Its previous tables are in %s unless they are back in %s; restore "
            "the safety checkpoint, or run the restore again." % (live, exc, keep, live)))
    return swap_error(live, phase, cause, touched=False, state=(
        "%s was put back as it was (its tables moved back, its views, routines, events and triggers re-created)"
        % live))
