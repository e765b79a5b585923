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
    assert "roles/rollback_database/tasks/backup.yml" in files, files


def _module_tasks(module: str) -> Iterator[Tuple[str, dict]]:
    for path in sorted(TOP.glob("roles/*/tasks/*.yml")) + sorted(TOP.glob("playbooks/**/*.yml")):
        for task in _tasks(yaml.safe_load(path.read_text(encoding="utf-8"))):
            if module in task or module.replace("gitops.rollback.", "") in task:
                yield str(path.relative_to(TOP)), task


def test_a_database_entry_is_backed_up_by_one_task_file_which_the_checkpoint_role_includes():
    """One way to back up an entry: a second copy (the checkpoint role had one) took another password than the
    rollback_database role (only the entry's login_password) and labelled migrations where the role did not."""
    backups = sorted({path for path, _task in _module_tasks("gitops.rollback.db_backup")})
    assert backups == ["roles/rollback_database/tasks/backup.yml"], backups
    labels = sorted({path for path, task in _module_tasks("gitops.rollback.db_migrate")
                     if task["gitops.rollback.db_migrate"].get("operation") == "label"})
    assert labels == ["roles/rollback_database/tasks/backup.yml"], labels
    includes = [task for path, task in _module_tasks("ansible.builtin.include_role")
                if path == "roles/checkpoint/tasks/main.yml"
                and task["ansible.builtin.include_role"].get("name") == "gitops.rollback.rollback_database"]
    assert [task["ansible.builtin.include_role"].get("tasks_from") for task in includes] == ["backup"], includes
    passed = includes[0]["vars"]
    assert "rollback_database_passwords" not in passed, "the checkpoint takes the role's passwords as they are"
    assert {"rollback_database_databases", "rollback_database_checkpoint"} <= set(passed), passed


@pytest.mark.parametrize("path,name,args,entry", CALLS, ids=["%s: %s" % (call[0], call[1]) for call in CALLS])
def test_every_connection_key_of_the_entry_is_passed(path, name, args, entry):
    missing = [key for key in CONNECTION_KEYS if key not in args]
    assert not missing, "%s, task %r: the entry's %s not passed to the module" % (path, name, ", ".join(missing))
    wrong = [key for key in CONNECTION_KEYS
             if not re.search(r"%s\.%s\b" % (re.escape(entry), key), str(args[key]))]
    assert not wrong, "%s, task %r: %s not read from %s" % (path, name, ", ".join(wrong), entry)
