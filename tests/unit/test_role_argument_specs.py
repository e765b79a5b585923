# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' argument specs: ansible-core templates a spec when a role validates its arguments, so a spec
that holds a template fails every run of the role on an undefined variable."""

from __future__ import annotations

import pathlib

import pytest
import yaml

ROLES = pathlib.Path(__file__).resolve().parents[2] / "roles"


@pytest.mark.parametrize("spec", sorted(ROLES.glob("*/meta/argument_specs.yml")), ids=lambda path: path.parts[-3])
def test_no_argument_spec_holds_a_template(spec):
    text = spec.read_text(encoding="utf-8")
    yaml.safe_load(text)
    templated = [number for number, line in enumerate(text.splitlines(), 1) if "{{" in line or "{%" in line]
    assert not templated, "%s: lines %s hold a template" % (spec, templated)
