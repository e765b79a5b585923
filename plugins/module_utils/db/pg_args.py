# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Extra pg_dump / pg_restore arguments, refused where they would break the backup's checks.

A backup is only worth keeping when it restores into an empty database and every table's row
count comes back; options that write elsewhere, leave tables out or take over what the modules
set are refused with the reason and the option to use instead. Long options that take a value
are written ``--name=value``; both tools accept unambiguous abbreviations of long options, so an
abbreviation of a refused option is refused too.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from ..common.errors import RollbackError

_CONNECTION = "the connection is set by login_host, login_port, login_user, login_password and database"
_PARTIAL = "a partial {tool} leaves tables out, and every table's row count is recorded and checked after a restore"
_VERSION = "it prints and exits without a {tool}"

PG_DUMP: Dict[str, str] = {
    "file": "the dump goes into the checkpoint store, where it is hashed and checked (set store_path)",
    "format": "set the format option", "jobs": "set the jobs option",
    "compress": "set the compression_level option",
    "snapshot": "the backup exports its own snapshot, so that the recorded row counts match the dump",
    "dbname": _CONNECTION, "host": _CONNECTION, "port": _CONNECTION, "username": _CONNECTION,
    "no-password": _CONNECTION, "password": _CONNECTION,
    "data-only": "a dump without the schema cannot be restored into the new, empty database",
    "schema-only": "a dump without the rows cannot bring back the row counts the restore checks",
    "section": "a dump of some sections cannot be restored into an empty database and checked",
    "table": _PARTIAL, "exclude-table": _PARTIAL, "table-and-children": _PARTIAL,
    "exclude-table-and-children": _PARTIAL, "schema": _PARTIAL, "exclude-schema": _PARTIAL,
    "exclude-table-data": _PARTIAL, "exclude-table-data-and-children": _PARTIAL,
    "no-unlogged-table-data": _PARTIAL,
    "create": "the restore creates the database itself, with its recorded properties",
    "clean": "the restore fills a new, empty database", "if-exists": "the restore fills a new, empty database",
    "version": _VERSION, "help": _VERSION,
}
PG_DUMP_SHORT = {"f": "file", "F": "format", "j": "jobs", "Z": "compress", "d": "dbname", "h": "host", "p": "port",
                 "U": "username", "w": "no-password", "W": "password", "a": "data-only", "s": "schema-only",
                 "t": "table", "T": "exclude-table", "n": "schema", "N": "exclude-schema", "C": "create",
                 "c": "clean", "V": "version", "?": "help"}
PG_DUMP_VALUES = "dfFhjnNpStTUZe"

PG_RESTORE: Dict[str, str] = {
    "file": "it would write a script instead of restoring into the database",
    "format": "the format is read from the archive", "jobs": "set the jobs option",
    "single-transaction": "the restore uses one transaction when jobs is 1 (set jobs)",
    "dbname": _CONNECTION, "host": _CONNECTION, "port": _CONNECTION, "username": _CONNECTION,
    "no-password": _CONNECTION, "password": _CONNECTION,
    "create": "the restore creates the database itself, with its recorded properties",
    "clean": "the restore fills a new, empty database",
    "data-only": "the restore fills a new, empty database, which needs the schema",
    "schema-only": "without the rows the row counts the restore checks cannot come back",
    "section": "the restore must bring back the whole database to check it",
    "table": _PARTIAL, "index": _PARTIAL, "function": _PARTIAL, "trigger": _PARTIAL, "schema": _PARTIAL,
    "exclude-schema": _PARTIAL, "use-list": _PARTIAL, "list": "it lists the archive instead of restoring it",
    "version": _VERSION, "help": _VERSION,
}
PG_RESTORE_SHORT = {"f": "file", "F": "format", "j": "jobs", "1": "single-transaction", "d": "dbname", "h": "host",
                    "p": "port", "U": "username", "w": "no-password", "W": "password", "C": "create", "c": "clean",
                    "a": "data-only", "s": "schema-only", "t": "table", "I": "index", "P": "function",
                    "T": "trigger", "n": "schema", "N": "exclude-schema", "L": "use-list", "l": "list",
                    "V": "version", "?": "help"}
PG_RESTORE_VALUES = "dfFhIjLnNpPStTU"

TOOLS = {"pg_dump": (PG_DUMP, PG_DUMP_SHORT, PG_DUMP_VALUES),
         "pg_restore": (PG_RESTORE, PG_RESTORE_SHORT, PG_RESTORE_VALUES)}


def _refused_long(name: str, refused: Dict[str, str]) -> Optional[str]:
    """Return the refused option ``--name`` is, or abbreviates; None when it is allowed."""
    if name in refused:
        return name
    for option in sorted(refused):
        if option.startswith(name):
            return option
    return None


def _problems(args: Sequence[str], tool: str) -> List[str]:
    refused, short, with_value = TOOLS[tool]
    what = "dump" if tool == "pg_dump" else "restore"
    problems = []
    pending_value = False
    for arg in args:
        if pending_value:
            pending_value = False
            continue
        if arg.startswith("--") and len(arg) > 2:
            name = arg[2:].split("=", 1)[0]
            option = _refused_long(name, refused)
            if option:
                shown = "--%s" % name + ("" if option == name else " (--%s)" % option)
                problems.append("%s: %s" % (shown, refused[option].format(tool=what)))
        elif arg.startswith("-") and len(arg) > 1:
            for index, letter in enumerate(arg[1:]):
                if letter in short:
                    problems.append("-%s (--%s): %s" % (letter, short[letter], refused[short[letter]].format(tool=what)))
                if letter in with_value:
                    pending_value = index == len(arg) - 2  # -Fd holds its value; -F takes the next one
                    break
        else:
            problems.append("%r is not an option: the database and the %s are given by the module (write long "
                            "options with a value as --name=value)" % (arg, what))
    return problems


def check_extra_args(args: Optional[Sequence[str]], tool: str, option: str) -> List[str]:
    """Return ``args`` as a list, or raise naming every refused argument and why it is refused."""
    args = list(args or [])
    problems = _problems(args, tool)
    if problems:
        raise RollbackError("%s cannot be used as given to %s: %s. Nothing was changed." % (
            option, tool, "; ".join(problems)), problems=problems)
    return args
