"""The filter safety_taken: which layers a host's safety checkpoint holds (what a recovery restores)."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.filter.rollback_outcome import safety_taken

PLAN = {"plan": {"safety": ["release", "config", "infrastructure"], "safety_host": ["release", "config"]},
        "safety": {"layers": ["release", "config"]}}


def test_the_plan_run_took_the_host_layers_and_the_terraform_step_the_snapshot():
    assert safety_taken(PLAN, ["config"], True) == ["release", "config", "infrastructure"]


def test_nothing_without_a_safety_checkpoint_or_a_change():
    assert safety_taken(PLAN, ["config"], False) == []
    assert safety_taken(PLAN, [], True) == []


def test_a_host_with_no_host_layer_holds_the_terraform_snapshot_alone():
    plan = {"plan": {"safety": ["infrastructure"], "safety_host": []}, "safety": {"layers": []}}
    assert safety_taken(plan, ["infrastructure"], True) == ["infrastructure"]


def test_host_layers_the_plan_run_did_not_take_are_not_claimed():
    plan = dict(PLAN, safety={"layers": []})
    assert safety_taken(plan, ["config"], True) == ["infrastructure"]
