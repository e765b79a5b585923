"""The filters of plugins/filter/rollback_steps.py: the settings as the role gives them reach the decisions."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.gitops.rollback.plugins.filter.rollback_steps import FilterModule, recovery_steps


def test_every_filter_is_registered():
    assert set(FilterModule().filters()) == {"services_to_restart", "flags_call", "entry_layer", "recovery_steps"}


def test_recovery_settings_given_as_yes_or_no_text_count_as_booleans():
    assert recovery_steps(["config"], "yes", "true", False)["restore"] is True
    assert recovery_steps(["config"], "no", True, False)["restore"] is False
    assert recovery_steps(["config"], True, "False", False)["restore"] is False
    assert recovery_steps(("config",), 1, 1, 0) == {"restore": True, "compare_config": True, "compare_release": False}
    assert recovery_steps(None, True, True, False)["compare_config"] is False


def test_a_setting_that_is_not_a_boolean_fails_saying_which():
    with pytest.raises(AnsibleFilterError, match="rollback_restore_on_failure"):
        recovery_steps(["config"], "maybe", True, False)
