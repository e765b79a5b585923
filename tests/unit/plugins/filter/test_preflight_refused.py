"""The filter preflight_refused: the safety checkpoints taken in the plan's host runs are removed when it holds."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.filter.rollback_outcome import preflight_refused


def test_no_problem_on_any_host_goes_on():
    hostvars = {"a": {"__rollback_preflight_problems": []}, "b": {"__rollback_preflight_problems": []}}
    assert preflight_refused(hostvars, ["a", "b"], ["a", "b"]) is False


def test_a_problem_on_one_host_refuses_the_run_for_every_host():
    hostvars = {"a": {"__rollback_preflight_problems": []},
                "b": {"__rollback_preflight_problems": [{"layer": "infrastructure", "problem": "no snapshot"}]}}
    assert preflight_refused(hostvars, ["a", "b"], ["a", "b"]) is True


def test_a_host_the_plan_could_not_reach_refuses_the_run():
    assert preflight_refused({"a": {"__rollback_preflight_problems": []}}, ["a", "b"], ["a"]) is True
