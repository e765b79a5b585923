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


def _description(option: dict) -> list:
    description = option.get("description") or []
    return [str(line) for line in ([description] if isinstance(description, str) else description)]


# Options whose entry is being decided elsewhere (their default is in question): the example waits for that decision.
# The test fails once one has an example, so that it leaves this list.
EXAMPLE_PENDING: set = set()


@pytest.mark.parametrize("spec", sorted(ROLES.glob("*/meta/argument_specs.yml")), ids=lambda path: path.parts[-3])
def test_every_option_of_every_entry_point_has_a_type_a_description_an_example_and_a_default(spec):
    """What `ansible-doc -t role` shows a user for each option: its type, what it is, an example value, and its default
    (or that it is required). A default the role computes, or none (a deprecated name, unset), is said in words
    (a line `Default - ...`) rather than shown as `default: null`."""
    problems = []
    for entry_point, entry in yaml.safe_load(spec.read_text(encoding="utf-8"))["argument_specs"].items():
        for name, option in (entry.get("options") or {}).items():
            lines = _description(option)
            where = "%s %s" % (entry_point, name)
            if not option.get("type"):
                problems.append("%s: no type" % where)
            if not any(line.strip() for line in lines):
                problems.append("%s: no description" % where)
            has_example = any(line.startswith("Example") for line in lines)
            if (spec.parts[-3], name) in EXAMPLE_PENDING:
                if has_example:
                    problems.append("%s: has an example now - remove it from EXAMPLE_PENDING" % where)
            elif not has_example:
                problems.append("%s: no example (a description line starting with Example)" % where)
            if not option.get("required") and option.get("default") is None \
                    and not any(line.startswith("Default - ") for line in lines):
                problems.append("%s: no default (nor required, nor a line Default - ...)" % where)
            if option.get("required") and "default" in option:
                problems.append("%s: required with a default" % where)
    assert not problems, "%s:\n  %s" % (spec.parts[-3], "\n  ".join(problems))


def test_an_inventory_setting_reads_the_same_in_every_role():
    seen: dict = {}
    for path in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8"))["argument_specs"].values():
            for name, option in entry.get("options", {}).items():
                if name in ns.SETTINGS:
                    first = seen.setdefault(name, (path.parts[-3], option))
                    assert option == first[1], "%s documents %s unlike %s" % (path.parts[-3], name, first[0])
    assert set(seen) == set(ns.SETTINGS), "settings no role documents: %s" % sorted(set(ns.SETTINGS) - set(seen))


# The variables the rollback role and the rollback playbook read: every rollback_* / gitops_rollback_* name in their
# task and vars files (comments and the keys that set a variable left out; module, role and filter names are
# gitops.rollback.<name>) is documented - the role's in its argument specs, the playbook's there or in
# docs/variables.md - unless the role or a role it runs sets it (a key of vars or set_fact, a registered result).
READ = re.compile(r"(?<![\w.])((?:gitops_)?rollback_\w*[a-z0-9])\b")
KEY = re.compile(r"^\s*(?:- )?(\w+):")
REGISTERED = re.compile(r"\bregister:\s*(\w+)")
PLAYBOOKS = ROLES.parent / "playbooks"


def _code_lines(path: pathlib.Path) -> list:
    return [re.sub(r"\s+#\s.*", "", line) for line in path.read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith("#")]


def _read_and_set(paths) -> tuple:
    read, set_ = set(), set()
    for path in paths:
        for line in _code_lines(path):
            key = KEY.match(line)
            if key:
                set_.add(key.group(1))
            set_.update(REGISTERED.findall(line))
            read.update(READ.findall(line[key.end():] if key else line))
    return read, set_


def _undocumented_reads(paths, documented: set) -> list:
    read, set_ = _read_and_set(paths)
    registered = {name for path in ROLES.glob("*/tasks/*.yml") for line in _code_lines(path)
                  for name in REGISTERED.findall(line)}
    return sorted(read - set_ - registered - documented)


def _documented_options(role: str) -> set:
    return {name for entry in _spec(role).values() for name in entry.get("options", {})}


def test_every_variable_the_rollback_role_reads_is_in_its_argument_specs():
    role = ROLES / "rollback"
    paths = [path for path in role.glob("*/*.yml") if path.parts[-2] in ("tasks", "vars")]
    assert len(paths) > 20, paths
    undocumented = _undocumented_reads(paths, _documented_options("rollback"))
    assert not undocumented, "roles/rollback reads %s: document them in meta/argument_specs.yml" % undocumented


def test_every_variable_the_rollback_playbook_reads_is_documented():
    paths = [PLAYBOOKS / "rollback.yml", PLAYBOOKS / "tasks" / "awx_event.yml"]
    variables_md = (ROLES.parent / "docs" / "variables.md").read_text(encoding="utf-8")
    documented = _documented_options("rollback") | set(re.findall(r"`(\w+)`", variables_md))
    undocumented = _undocumented_reads(paths, documented)
    assert not undocumented, "playbooks/rollback.yml reads %s: document them in docs/variables.md" % undocumented


def test_a_variable_documented_by_two_roles_has_the_same_type_and_default_in_both():
    """The rollback role documents the layer roles' variables it reads (rollback_database_jobs, ...): the same
    type, choices and default as the layer role's own entry (an entry point that requires it has no default)."""
    seen: dict = {}
    shared = set()
    for path in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        role = path.parts[-3]
        for entry in yaml.safe_load(path.read_text(encoding="utf-8"))["argument_specs"].values():
            for name, option in entry.get("options", {}).items():
                kind = {key: option.get(key) for key in ("type", "elements", "choices")}
                if not option.get("required"):
                    kind["default"] = option.get("default")
                for other, other_kind in seen.setdefault(name, {}).items():
                    if other != role:
                        shared.add(name)
                        common = set(kind) & set(other_kind)
                        assert {key: kind[key] for key in common} == {key: other_kind[key] for key in common}, \
                            "%s documents %s as %s, %s as %s" % (role, name, kind, other, other_kind)
                seen[name].setdefault(role, kind)
    assert {"rollback_database_jobs", "rollback_infrastructure_mode", "rollback_dry_run"} <= shared, sorted(shared)
