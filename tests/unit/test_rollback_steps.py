# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback role rolls each layer back through its layer role, never through a copy of it: its layer files
(roles/rollback/tasks/step_<layer>.yml, layer_<layer>.yml) call no module of a layer role's rollback, each step of
a layer with a role imports that role's planned entry point, and where the rollback role reads a layer role's
setting itself (to choose the file of a layer) it falls back to the role's own default."""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

ROLES = pathlib.Path(__file__).resolve().parents[2] / "roles"
TASKS = ROLES / "rollback" / "tasks"
LAYER_ROLES = {"release": "rollback_release", "config": "rollback_host", "database": "rollback_database",
               "infrastructure": "rollback_infrastructure"}
FALLBACK = re.compile(r"\b((rollback_(?:release|host|database|infrastructure))_\w+) \| default\(([^()]*)\)")
LAYER_FILES = sorted(TASKS.glob("step_*.yml")) + sorted(TASKS.glob("layer_*.yml"))


def _load(path: pathlib.Path) -> list:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or []


def _tasks(tasks: list):
    """Every task of a task list, also inside blocks."""
    for task in tasks:
        yield task
        for section in ("block", "rescue", "always"):
            yield from _tasks(task.get(section) or [])


def _modules(path: pathlib.Path) -> set:
    """The collection's modules a task file calls, following its import_tasks in the same directory."""
    found = set()
    for task in _tasks(_load(path)):
        found |= {key for key in task if key.startswith("gitops.rollback.")}
        imported = task.get("ansible.builtin.import_tasks")
        if imported:
            found |= _modules(path.parent / imported)
    return found


def _layer_role_modules() -> dict:
    """The modules each layer role's rollback runs (its planned entry point): what no layer file may call."""
    return {module: role for role in LAYER_ROLES.values()
            for module in _modules(ROLES / role / "tasks" / "planned.yml")}


def _registered(role: str) -> set:
    return {task["register"] for path in (ROLES / role / "tasks").glob("*.yml") for task in _tasks(_load(path))
            if "register" in task}


def test_the_layer_roles_roll_back_with_modules_this_test_can_see():
    assert set(_layer_role_modules()) >= {"gitops.rollback.release", "gitops.rollback.restore",
                                          "gitops.rollback.rollback_database", "gitops.rollback.terraform_state"}


@pytest.mark.parametrize("path", LAYER_FILES, ids=lambda path: path.name)
def test_a_layer_file_calls_no_module_of_a_layer_role(path):
    copied = {module: role for module, role in _layer_role_modules().items() if module in _modules(path)}
    assert not copied, "%s calls %s itself: run the layer role instead" % (
        path.name, ", ".join("%s (%s)" % item for item in sorted(copied.items())))


@pytest.mark.parametrize("layer", sorted(LAYER_ROLES))
def test_a_layer_step_imports_the_planned_entry_point_of_its_layer_role(layer):
    imports = [task["ansible.builtin.import_role"] for task in _tasks(_load(TASKS / ("step_%s.yml" % layer)))
               if "ansible.builtin.import_role" in task]
    assert imports == [{"name": "gitops.rollback." + LAYER_ROLES[layer], "tasks_from": "planned", "public": False}]


def test_where_the_rollback_role_reads_a_layer_role_setting_it_falls_back_to_the_role_default():
    found = [(path.name,) + match for path in sorted(TASKS.glob("*.yml")) + [ROLES / "rollback" / "vars" / "main.yml"]
             for match in FALLBACK.findall(path.read_text(encoding="utf-8"))]
    assert found  # the choice of a layer's file reads the layer roles' hook settings
    for where, name, role, fallback in found:
        if name in _registered(role):
            continue  # what the layer role registered (the outcome reads it), no setting
        defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text(encoding="utf-8"))
        assert name in defaults, "%s: %s is no setting of %s" % (where, name, role)
        assert yaml.safe_load(fallback) == defaults[name], "%s: %s falls back to %s, %s's default is %r" % (
            where, name, fallback, role, defaults[name])
