"""The dry_run filter decides as plugins/module_utils/controller/run_mode.py does and names the variable."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gitops.rollback.plugins.filter.dry_run import FilterModule


def test_the_filter_decides_the_same_and_names_the_variable():
    dry_run = FilterModule().filters()["dry_run"]
    assert dry_run("yes") is True and dry_run("no") is False and dry_run("no", True) is True
    with pytest.raises(AnsibleFilterError, match=r"survey_dry_run must be yes or no \(got 'maybe'\)"):
        dry_run("maybe", False, "survey_dry_run")
