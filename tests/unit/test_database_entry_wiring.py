# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every task that calls a database module with an inventory entry (``gitops_rollback_databases``) passes
all of the entry's connection keys: a key left out (``client_bin_dir``, ``client_charset``) makes that one
step talk to another server or client than the others, which only shows on the host that needs it."""

from __future__ import annotations

import pathlib
import re
from typing import Iterator, Tuple

import pytest
import yaml

from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import db_connection_argument_spec

TOP = pathlib.Path(__file__).resolve().parents[2]
DATABASE_MODULES = ("gitops.rollback.db_backup", "gitops.rollback.db_restore", "gitops.rollback.db_migrate")
# The engine read from an entry: "{{ <entry>.engine }}" names the entry variable.
ENTRY_ENGINE = re.compile(r"^\{\{\s*([\w.\[\]']+?)\.engine\s*\}\}$")
# Keys chosen per module run rather than read from the entry.
NOT_FROM_ENTRY = {"engine", "database", "login_password"}
CONNECTION_KEYS = sorted(set(db_connection_argument_spec()) - NOT_FROM_ENTRY)


def _tasks(node) -> Iterator[dict]:
    """Every task of a task file, inside blocks, rescues and always sections too."""
    for task in node or []:
        if not isinstance(task, dict):
            continue
        yield task
        for section in ("block", "rescue", "always"):
            yield from _tasks(task.get(section))


def _entry_calls() -> Iterator[Tuple[str, str, dict, str]]:
    files = sorted(TOP.glob("roles/*/tasks/*.yml")) + sorted(TOP.glob("playbooks/tasks/*.yml"))
    for path in files:
        for task in _tasks(yaml.safe_load(path.read_text(encoding="utf-8"))):
            for module in DATABASE_MODULES:
                args = task.get(module)
                if not isinstance(args, dict):
                    continue
                match = ENTRY_ENGINE.match(str(args.get("engine", "")).strip())
                if match:
                    yield str(path.relative_to(TOP)), task.get("name", module), args, match.group(1)


CALLS = list(_entry_calls())


def test_the_wiring_check_finds_the_entry_calls():
    """The roles back up, restore and migrate from entries: a check that finds none checks nothing."""
    files = {call[0] for call in CALLS}
    assert len(CALLS) >= 5, CALLS
    assert {"roles/checkpoint/tasks/database.yml", "roles/rollback_database/tasks/backup.yml"} <= files, files


@pytest.mark.parametrize("path,name,args,entry", CALLS, ids=["%s: %s" % (call[0], call[1]) for call in CALLS])
def test_every_connection_key_of_the_entry_is_passed(path, name, args, entry):
    missing = [key for key in CONNECTION_KEYS if key not in args]
    assert not missing, "%s, task %r: the entry's %s not passed to the module" % (path, name, ", ".join(missing))
    wrong = [key for key in CONNECTION_KEYS
             if not re.search(r"%s\.%s\b" % (re.escape(entry), key), str(args[key]))]
    assert not wrong, "%s, task %r: %s not read from %s" % (path, name, ", ".join(wrong), entry)
