"""The filter preflight_clear: the Terraform safety snapshot is stored only when every host's plan passed."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.filter.rollback_outcome import preflight_clear


def _planned(*problems: dict) -> dict:
    return {"__rollback_plan": {"plan": {"problems": list(problems)}}}


def test_every_host_planned_without_a_problem_is_clear():
    assert preflight_clear({"a": _planned(), "b": _planned()}, ["a", "b"], ["a", "b"]) is True


def test_a_problem_on_one_host_is_not_clear():
    hostvars = {"a": _planned(), "b": _planned({"layer": "config", "problem": "corrupted object"})}
    assert preflight_clear(hostvars, ["a", "b"], ["a", "b"]) is False


def test_a_host_the_pre_flight_could_not_check_is_not_clear():
    assert preflight_clear({"a": _planned()}, ["a", "b"], ["a"]) is False
