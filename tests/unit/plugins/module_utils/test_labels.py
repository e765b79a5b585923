"""The label and tag grammar (plugins/module_utils/common/labels.py)."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.labels import (
    LabelError, check_label, escape, is_label, label_problem)

VALID = ["v1", "v2.4.0", "release/2026-12-02", "safety/rollback-20261202T190000Z-123", "a" * 128,
         "20261202T190000.123Z-abcdef", "V_1-rc.2"]
INVALID = [
    "", " ", "v1 ", "v1\n", "v1\x00", "v1\x1b[2J", "{{ lookup('pipe', 'touch /tmp/x') }}",
    "rollback/{{ lookup('pipe', 'touch /tmp/x') }}", "v{% raw %}", "v{# x #}", "v${IFS}x", "a" * 129,
    "a" * 1024, "v1\u2024", "v\uff11", "\u0430bc", "../etc", "a/../b", "a//b", "a/", "a.", ".a", "a/.b",
    "a.lock", "a.lock/b", "-v1", "/v1", "v1:2", "v1~2", "v1^", "v1?", "v1*", "v1[", "v1@{", None, 3, ["v1"],
]


@pytest.mark.parametrize("value", VALID)
def test_valid_labels_pass(value):
    assert check_label(value) == value
    assert is_label(value)


@pytest.mark.parametrize("value", INVALID)
def test_invalid_labels_are_refused_with_a_reason(value):
    problem = label_problem(value)
    assert problem
    with pytest.raises(LabelError) as err:
        check_label(value, what="tag")
    message = str(err.value)
    assert message.startswith("Tag ")
    assert "{{" not in message and "{%" not in message and "{#" not in message
    assert all(" " <= c <= "~" for c in message), message


def test_a_configured_pattern_only_narrows_the_grammar():
    assert check_label("v2.4.0", pattern=r"v[0-9.]+") == "v2.4.0"
    assert "configured label pattern" in label_problem("hotfix", pattern=r"v[0-9.]+")
    # a pattern that admits more than the grammar does not widen it
    assert label_problem("v 1", pattern=r".*")


def test_escape_makes_text_inert_and_short():
    shown = escape("x{{ a }}\n\x1b\u0430" + "y" * 200)
    assert "{" not in shown and "\n" not in shown and "\x1b" not in shown
    assert shown.endswith("(211 characters)")
    assert escape("v1") == "'v1'"
