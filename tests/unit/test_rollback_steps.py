# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback role's layer steps (roles/rollback/tasks/step_<layer>.yml) run a layer role's module without the
role: every setting of that role they read falls back to the role's own default, and each step runs the same
module as the layer role's planned entry point."""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

ROLES = pathlib.Path(__file__).resolve().parents[2] / "roles"
STEPS = {"release": "rollback_release", "config": "rollback_host", "database": "rollback_database",
         "infrastructure": "rollback_infrastructure"}
FALLBACK = re.compile(r"\b((rollback_(?:release|host|database|infrastructure))_\w+) \| default\(([^()]*)\)")


def _tasks(path: pathlib.Path) -> list:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _modules(tasks: list) -> set:
    return {key for task in tasks for key in task if key.startswith("gitops.rollback.")}


@pytest.mark.parametrize("layer", sorted(STEPS))
def test_a_layer_step_falls_back_to_the_layer_role_defaults(layer):
    text = (ROLES / "rollback" / "tasks" / ("step_%s.yml" % layer)).read_text(encoding="utf-8")
    found = FALLBACK.findall(text)
    assert found, "step_%s.yml reads no setting of its layer role" % layer
    for name, role, fallback in found:
        defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text(encoding="utf-8"))
        assert name in defaults, "%s: %s is no setting of %s" % (layer, name, role)
        assert yaml.safe_load(fallback) == defaults[name], "%s: %s falls back to %s, %s's default is %r" % (
            layer, name, fallback, role, defaults[name])


@pytest.mark.parametrize("layer", sorted(STEPS))
def test_a_layer_step_runs_the_module_of_the_layer_role_planned_entry_point(layer):
    role_tasks = ROLES / STEPS[layer] / "tasks"
    planned = _tasks(role_tasks / "planned.yml")
    imported = [task["ansible.builtin.import_tasks"] for task in planned if "ansible.builtin.import_tasks" in task]
    role_modules = _modules(planned) | {m for name in imported for m in _modules(_tasks(role_tasks / name))}
    assert _modules(_tasks(ROLES / "rollback" / "tasks" / ("step_%s.yml" % layer))) == role_modules
