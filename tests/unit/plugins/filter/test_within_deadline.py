"""The filter within_deadline: the layer while the rollback is within its time limit, a failure past it."""

from __future__ import annotations

import time

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gitops.rollback.plugins.filter.rollback_outcome import within_deadline


def test_the_layer_passes_within_the_limit_and_without_one():
    assert within_deadline("database", 0, 0) == "database"
    assert within_deadline("database", time.time() + 60, 60) == "database"


def test_past_the_deadline_the_task_fails_naming_the_limit_and_the_layer():
    with pytest.raises(AnsibleFilterError, match=r"exceeded max_rollback_seconds \(1 s\).*before config"):
        within_deadline("config", time.time() - 1, 1)


def test_past_the_deadline_otherwise_is_returned_instead_of_failing():
    assert within_deadline("config", time.time() - 1, 1, otherwise="release") == "release"
    assert within_deadline("config", time.time() + 60, 60, otherwise="release") == "config"
    assert within_deadline("config", 0, 0, otherwise="") == "config"
