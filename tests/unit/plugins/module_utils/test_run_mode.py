"""One definition of a dry run (plugins/module_utils/controller/run_mode.py, filter gitops.rollback.dry_run)."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.controller.run_mode import DryRunAnswerError, is_dry_run

YES = ["yes", "YES", " yes ", "y", "true", "True", "on", "1", True, 1]
NO = ["no", "No", "n", "false", "off", "0", "", None, False, 0]
UNCLEAR = ["maybe", "yes please", "2", 2, -1, 0.5, ["yes"], {"yes": 1}, "{{ lookup('pipe', 'id') }}", "ja\n"]


@pytest.mark.parametrize("answer", YES)
def test_a_yes_answer_is_a_dry_run(answer):
    assert is_dry_run(answer) is True
    assert is_dry_run(answer, check_mode=True) is True


@pytest.mark.parametrize("answer", NO)
def test_a_no_answer_is_a_real_run_unless_in_check_mode(answer):
    assert is_dry_run(answer) is False
    assert is_dry_run(answer, check_mode=True) is True, "--check is always a dry run, whatever the answer"


@pytest.mark.parametrize("answer", UNCLEAR)
def test_an_unclear_answer_is_refused_naming_it(answer):
    with pytest.raises(DryRunAnswerError) as err:
        is_dry_run(answer)
    message = str(err.value)
    assert message.startswith("rollback_dry_run must be yes or no (got ") and "nothing ran" in message
    assert "{{" not in message and "\n" not in message, "the answer is shown escaped, never as a template"
    with pytest.raises(DryRunAnswerError):
        is_dry_run(answer, check_mode=True)  # refused in check mode too: the answer is checked, always
