# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' argument specs: ansible-core templates a spec when a role validates its arguments, so a spec
that holds a template fails every run of the role on an undefined variable. Every variable a role reads is
documented there, the inventory settings (gitops_rollback_*) alike in every role."""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

from ansible_collections.gitops.rollback.plugins.module_utils.controller import namespace as ns

ROLES = pathlib.Path(__file__).resolve().parents[2] / "roles"


@pytest.mark.parametrize("spec", sorted(ROLES.glob("*/meta/argument_specs.yml")), ids=lambda path: path.parts[-3])
def test_no_argument_spec_holds_a_template(spec):
    text = spec.read_text(encoding="utf-8")
    yaml.safe_load(text)
    templated = [number for number, line in enumerate(text.splitlines(), 1) if "{{" in line or "{%" in line]
    assert not templated, "%s: lines %s hold a template" % (spec, templated)


SETTING_READ = re.compile(r"lookup\('gitops\.rollback\.setting', '(gitops_rollback_\w+)'\)")


def _spec(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))["argument_specs"]


def _settings_read_by(role: pathlib.Path) -> set:
    return {name for path in role.glob("*/*.yml") if path.parts[-2] in ("tasks", "vars", "defaults")
            for name in SETTING_READ.findall(path.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("role", sorted(path.parent.parent for path in ROLES.glob("*/meta/argument_specs.yml")),
                         ids=lambda path: path.name)
def test_every_inventory_setting_a_role_reads_is_documented_with_its_default_and_an_example(role):
    options = _spec(role.name)["main"]["options"]
    for name in sorted(_settings_read_by(role)):
        assert name in options, "%s reads %s: document it in meta/argument_specs.yml" % (role.name, name)
        option = options[name]
        assert option.get("type") and option.get("default") == ns.setting(name).default, (role.name, name, option)
        assert any(str(line).startswith("Example") for line in option["description"]), (role.name, name)


@pytest.mark.parametrize("role", sorted(path.parent.parent for path in ROLES.glob("*/meta/argument_specs.yml")),
                         ids=lambda path: path.name)
def test_every_role_default_is_documented_with_a_type(role):
    defaults = role / "defaults" / "main.yml"
    names = list(yaml.safe_load(defaults.read_text(encoding="utf-8")) or {}) if defaults.exists() else []
    documented = {name: option for entry in _spec(role.name).values() for name, option in entry.get("options", {}).items()}
    missing = [name for name in names if name not in documented]
    assert not missing, "%s: defaults without an argument spec: %s" % (role.name, missing)
    untyped = [name for name, option in documented.items() if not option.get("type") or not option.get("description")]
    assert not untyped, "%s: options without a type or a description: %s" % (role.name, untyped)


def test_an_inventory_setting_reads_the_same_in_every_role():
    seen: dict = {}
    for path in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8"))["argument_specs"].values():
            for name, option in entry.get("options", {}).items():
                if name in ns.SETTINGS:
                    first = seen.setdefault(name, (path.parts[-3], option))
                    assert option == first[1], "%s documents %s unlike %s" % (path.parts[-3], name, first[0])
    assert set(seen) == set(ns.SETTINGS), "settings no role documents: %s" % sorted(set(ns.SETTINGS) - set(seen))
