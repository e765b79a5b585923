# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database layer restores a dump in one mode unless told otherwise: the rollback_database role's default.
Every place that states or applies a default (the role's argument spec, docs/variables.md, docs/databases.md,
the example inventory, the modules and the action, the rollback role's tasks) says the same one, so a restore
keeps or drops the previous database as its users were told, whichever entry point ran it."""

from __future__ import annotations

import pathlib
import re

import yaml

from ansible_collections.gitops.rollback.plugins.action import rollback_database as action
from ansible_collections.gitops.rollback.plugins.module_utils.controller.database_layer import LayerSettings
from ansible_collections.gitops.rollback.plugins.modules import db_restore, rollback_database

TOP = pathlib.Path(__file__).resolve().parents[2]
ROLE = TOP / "roles" / "rollback_database"


def _role_default() -> str:
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))["rollback_database_mode"]


def _stated(path: str, pattern: str) -> list:
    found = re.findall(pattern, (TOP / path).read_text(encoding="utf-8"))
    assert found, "%s no longer states the default restore mode (%s)" % (path, pattern)
    return found


def _tasks(node):
    for task in node or []:
        if isinstance(task, dict):
            yield task
            for section in ("block", "rescue", "always"):
                yield from _tasks(task.get(section))


def test_the_documented_restore_mode_default_is_the_role_default():
    mode = _role_default()
    assert mode in ("replace", "swap")
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    stated = {
        "argument spec": [spec["argument_specs"]["main"]["options"]["rollback_database_mode"]["default"]],
        "docs/variables.md": _stated("docs/variables.md", r"`rollback_database_mode`, default `(\w+)`"),
        "docs/databases.md": _stated("docs/databases.md", r"- `mode: (\w+)` \(default\)"),
        "example inventory": _stated("inventories/example/host_vars/db1.example.com.yml",
                                     r"# How the dump is restored: (\w+) \(default\)"),
        "db_restore": [yaml.safe_load(db_restore.DOCUMENTATION)["options"]["mode"]["default"]],
        "rollback_database module": [yaml.safe_load(rollback_database.DOCUMENTATION)["options"]["mode"]["default"]],
        "rollback_database action": [action.ARGUMENT_SPEC["mode"]["default"]],
        "LayerSettings": [LayerSettings(checkpoint="c").mode],
    }
    differ = {where: found for where, found in stated.items() if set(found) != {mode}}
    assert not differ, "the role's default restore mode is %s; these say otherwise: %s" % (mode, differ)


def test_a_role_that_sets_the_restore_mode_sets_the_role_default():
    """A task that runs the layer with a literal mode (rather than the role's default) runs the same one."""
    mode, literal = _role_default(), []
    for path in sorted(TOP.glob("roles/*/tasks/*.yml")):
        for task in _tasks(yaml.safe_load(path.read_text(encoding="utf-8"))):
            action_args = task.get("gitops.rollback.rollback_database") or {}
            include = task.get("ansible.builtin.include_role") or task.get("ansible.builtin.import_role") or {}
            values = [action_args.get("mode")]
            if include.get("name") == "gitops.rollback.rollback_database":
                values.append((task.get("vars") or {}).get("rollback_database_mode"))
            literal += [(str(path.relative_to(TOP)), value) for value in values
                        if isinstance(value, str) and "{{" not in value]
    assert all(value == mode for _path, value in literal), (mode, literal)
