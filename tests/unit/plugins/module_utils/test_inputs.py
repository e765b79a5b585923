"""Checks of outside values before Ansible templates them (plugins/module_utils/controller/inputs.py)."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.controller.inputs import (
    input_problems, is_template_text, label_variable_problem, template_text_problem)

TRUSTED = {"trusted"}


def trusted(text: str) -> bool:
    return not text.startswith("safe:")


@pytest.mark.parametrize("text,expected", [
    ("v{{ 1 }}", True), ("{% if x %}", True), ("a{#c#}", True), ("#jinja2:variable_start_string:'[['", True),
    ("v1.2.0", False), ("{ not } a template", False), ("${IFS}", False), ("%{x}", False),
])
def test_template_text(text: str, expected: bool) -> None:
    assert is_template_text(text) is expected


@pytest.mark.parametrize("value", ["v{{ lookup('pipe','id') }}", "v1\n", "v1\x00", "v" * 129, "\u0440ollback",
                                   "-v1", "a/../b", 12, ["v1"]])
def test_label_variables_outside_the_grammar_are_refused_escaped(value) -> None:
    problem = label_variable_problem("rollback_to", value)
    assert problem and problem.startswith("rollback_to ") and "is refused" in problem
    assert not any(raw in problem for raw in ("{{", "\n", "\x00", "\u0440"))


@pytest.mark.parametrize("value", [None, "", "v2.3.0", "safety/rollback-20261202T190000Z-123",
                                   "20261202T190000.123Z-abcdef"])
def test_unset_empty_labels_and_checkpoint_ids_pass(value) -> None:
    assert label_variable_problem("rollback_to", value) is None


def test_a_label_pattern_narrows() -> None:
    assert label_variable_problem("checkpoint_label", "v2-rc1", r"v[0-9.]+")
    assert label_variable_problem("checkpoint_label", "v2.1", r"v[0-9.]+") is None


def test_trusted_template_text_anywhere_in_a_payload_is_refused_with_its_path() -> None:
    payload = {"ref": "refs/tags/v1", "commits": [{"message": "fix {{ x }}"}], "n": 3}
    problem = template_text_problem("awx_webhook_payload", payload, trusted)
    assert problem and "awx_webhook_payload['commits'][0]['message'] holds template text" in problem
    assert "{{" not in problem
    assert template_text_problem("p", {"{{ key }}": 1}, trusted)


def test_untrusted_template_text_and_plain_text_pass() -> None:
    assert template_text_problem("awx_webhook_payload", {"commits": [{"message": "safe:fix {{ x }}"}]}, trusted) is None
    assert template_text_problem("checkpoint_reason", "release v2 (100% done)", trusted) is None


def test_input_problems_lists_each_refused_variable_and_skips_unset_ones() -> None:
    problems = input_problems({"rollback_to": "v{{x}}", "checkpoint_label": "v2", "awx_webhook_payload": {"a": "{%x%}"}},
                              ["rollback_to", "checkpoint_label", "missing"], ["awx_webhook_payload", "other"],
                              trusted)
    assert len(problems) == 2 and problems[0].startswith("rollback_to ") and "awx_webhook_payload['a']" in problems[1]


def test_a_target_variable_takes_a_relative_target_and_refuses_one_outside_its_grammar():
    for value in ("previous", "previous~2", "previous~2:v*", "latest:v2.3.*"):
        assert label_variable_problem("rollback_to", value) is None, value
        assert label_variable_problem("checkpoint_label", value), value  # a label is never relative
    problem = label_variable_problem("guard_rollback_to", "previous~0:v*")
    assert problem.startswith("guard_rollback_to 'previous~0:v*' is refused: it counts back 0")
    assert "{{" not in str(label_variable_problem("rollback_to", "previous:{{ x }}"))
