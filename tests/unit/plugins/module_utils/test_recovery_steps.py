"""What a failed host does next (entry_layer and recovery_steps in plugins/module_utils/controller/outcome.py)."""

from __future__ import annotations

import itertools

from ansible_collections.gitops.rollback.plugins.module_utils.controller.outcome import entry_layer, recovery_steps


def test_a_failure_of_a_layers_entry_task_is_a_refusal_at_the_running_layer():
    assert entry_layer({"name": "Enter the layer", "vars": {"__rollback_entry_task": True}}, "config") == "config"


def test_any_other_failure_names_no_entry_layer():
    assert entry_layer({"name": "Restore", "vars": {"__rollback_entry_task": False}}, "config") == ""
    assert entry_layer({"name": "Restore", "vars": {"other": True}}, "config") == ""
    assert entry_layer({"name": "Restore", "vars": {}}, "config") == ""
    assert entry_layer({"name": "Restore"}, "config") == "", "a task without vars"
    assert entry_layer({"name": "Restore", "vars": None}, "config") == ""
    assert entry_layer(None, "config") == "", "no failed task"


def test_an_entry_task_before_any_layer_clock_names_none():
    assert entry_layer({"vars": {"__rollback_entry_task": True}}, "") == ""
    assert entry_layer({"vars": {"__rollback_entry_task": True}}, None) == ""


def test_a_host_restores_only_with_recovery_and_the_safety_checkpoint_on_and_not_in_a_dry_run():
    for on_failure, safety, dry in itertools.product((True, False), repeat=3):
        steps = recovery_steps(["config"], on_failure, safety, dry)
        assert steps["restore"] is (on_failure and safety and not dry), (on_failure, safety, dry)
    assert recovery_steps([], True, True, False)["restore"] is True, \
        "the layers that hold no safety copy (traffic, services) are run again"


def test_a_host_compares_the_layers_its_safety_checkpoint_holds():
    assert recovery_steps(["release", "config", "database"], True, True, False) == \
        {"restore": True, "compare_config": True, "compare_release": True}
    assert recovery_steps(["config"], False, True, False) == \
        {"restore": False, "compare_config": True, "compare_release": False}, "compared with recovery off too"
    assert recovery_steps(["release", "infrastructure"], True, False, False) == \
        {"restore": False, "compare_config": False, "compare_release": True}


def test_nothing_is_compared_without_a_safety_checkpoint_or_in_a_dry_run():
    assert recovery_steps([], True, True, False) == {"restore": True, "compare_config": False, "compare_release": False}
    assert recovery_steps(["release", "config"], True, True, True) == \
        {"restore": False, "compare_config": False, "compare_release": False}
    assert recovery_steps(["database", "infrastructure"], True, True, False)["compare_config"] is False
