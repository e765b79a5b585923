"""The rollback role's choices around its plan (module_utils/controller/run_choices.py)."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.filter.run_choices import preflight_problem
from ansible_collections.gitops.rollback.plugins.module_utils.controller.run_choices import (
    layer_role_run, layer_task_file, safety_request, safety_to_remove, safety_wanted, selected_entries)


@pytest.mark.parametrize("layer", ["flags", "traffic", "release", "config", "database", "infrastructure", "services"])
def test_a_layer_without_hooks_is_its_step(layer):
    assert layer_task_file(layer, ["", ""], "revert", 1, ["", ""]) == "step_%s.yml" % layer


def test_the_layer_hooks_run_the_hooked_file_first():
    assert layer_task_file("config", ["", ""], "revert", 1, ["", "after.yml"]) == "layer_hooked.yml"
    assert layer_task_file("config", ["before.yml", ""], "revert", 1, ["before.yml", ""]) == "layer_hooked.yml"


def test_the_layer_role_hooks_run_the_whole_role():
    assert layer_task_file("release", ["", "after_switch.yml"]) == "layer_timed.yml"
    assert layer_task_file("database", ["before_restore.yml", ""]) == "layer_timed.yml"


def test_infrastructure_runs_the_whole_role_for_other_than_one_project_or_another_mode():
    assert layer_task_file("infrastructure", ["", ""], "revert", 2) == "layer_timed.yml"
    assert layer_task_file("infrastructure", ["", ""], "revert", 0) == "layer_timed.yml"
    assert layer_task_file("infrastructure", ["", ""], "apply", 1) == "layer_timed.yml"
    assert layer_task_file("infrastructure", ["", ""], "", 1) == "layer_timed.yml"  # not revert
    assert layer_task_file("infrastructure", ["", ""], "revert", "1") == "step_infrastructure.yml"


def test_the_projects_and_the_mode_concern_the_infrastructure_layer_alone():
    assert layer_task_file("config", [], "apply", 3) == "step_config.yml"


def test_the_selection_picks_the_plan_positions_in_order():
    entries = [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    assert selected_entries(entries, [2, 0]) == [{"name": "c"}, {"name": "a"}]
    assert selected_entries(entries, []) == []


def test_without_a_plan_every_entry_is_selected():
    assert selected_entries(["/etc/app", "/srv/app"], None) == ["/etc/app", "/srv/app"]
    assert selected_entries(None, None) == []


def test_the_safety_checkpoint_is_taken_when_wanted_outside_a_dry_run_with_every_plan_clear():
    assert safety_wanted(True, False) is True
    assert safety_wanted(True, False, True) is True
    assert safety_wanted(False, False) is False
    assert safety_wanted(True, True) is False
    assert safety_wanted(True, False, False) is False


def test_the_plan_is_asked_for_the_safety_checkpoint_only_when_it_is_taken():
    assert safety_request(True, False, "safety/r1", "before", ["/srv/cache"]) == {
        "label": "safety/r1", "reason": "before", "exclude": ["/srv/cache"], "lock_timeout": 300}
    assert safety_request(True, False, "safety/r1", "before")["exclude"] == []
    assert safety_request(False, False, "safety/r1", "before") == {}
    assert safety_request(True, True, "safety/r1", "before") == {}


def test_the_safety_checkpoint_taken_is_removed_when_the_run_does_not_go_on():
    taken = {"safety": {"journal": {"created": ["safety/r1"]}}}
    assert safety_to_remove(taken, True, ["config"]) is True
    assert safety_to_remove(taken, False, []) is True
    assert safety_to_remove(taken, False, ["config"]) is False


def test_nothing_is_removed_when_the_plan_run_created_nothing():
    assert safety_to_remove({"safety": {"journal": {"created": []}}}, True, []) is False
    assert safety_to_remove({}, True, []) is False
    assert safety_to_remove({"safety": {}}, True, []) is False


def test_a_failed_preflight_step_notes_its_layer_task_and_failure():
    result = {"failed": True, "msg": "state locked", "rc": 1, "cmd": ["terraform", "state", "pull"]}
    assert preflight_problem(result, "infrastructure", "Plan the revert") == {
        "layer": "infrastructure", "task": "Plan the revert",
        "problem": "state locked (command: terraform state pull; exit code 1)"}
    assert preflight_problem(None, "infrastructure", None) == {
        "layer": "infrastructure", "task": "", "problem": "unknown failure"}


def test_the_plan_step_runs_the_planned_entry_point_with_the_plan_checkpoint_and_tag():
    assert layer_role_run(None, "v1.2", "v1.2", ["", ""]) == {
        "checkpoint": "v1.2", "verify_tag": "v1.2", "verify_here": False, "tasks_from": "planned"}


def test_the_role_hooks_run_the_whole_role_in_the_plan_step():
    run = layer_role_run(None, "v1.2", "v1.2", ["", "after.yml"])
    assert run["tasks_from"] == "main"
    assert (run["checkpoint"], run["verify_tag"], run["verify_here"]) == ("v1.2", "v1.2", False)


def test_the_recovery_restores_its_target_verified_in_the_role_without_a_tag():
    assert layer_role_run("safety/r1", "v1.2", "v1.2") == {
        "checkpoint": "safety/r1", "verify_tag": "", "verify_here": True, "tasks_from": "main"}
