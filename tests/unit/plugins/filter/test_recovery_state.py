"""Unit tests of the recovery_state filter: where a failed host is, from check-mode comparisons."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.filter.recovery_state import recovery_state

SAFETY = "safety/20261203T060000Z-1"
EQUAL_FILES = {"changed": False, "changes": {}, "summary": {}}
EQUAL_RELEASE = {"changed": False, "current": "r1"}


def test_equal_layers_are_back_at_the_safety_checkpoint_even_when_a_recovery_task_failed():
    state = recovery_state({"config": EQUAL_FILES, "release": EQUAL_RELEASE}, SAFETY, ["release", "config"],
                           "item app: failed (exit code 7)", False)
    assert state["state"] == "at_safety_checkpoint" and state["recovered"] is True
    assert state["verified"] == ["release", "config"]
    assert state["text"].startswith("The host is back at its safety checkpoint %s (verified: release and config" % SAFETY)
    assert "NOT" not in state["text"] and "exit code 7" in state["text"]


def test_differences_are_named():
    files = {"changed": True, "changes": {"/etc/app": [{"op": "delete", "path": "stray.conf"},
                                                       {"op": "update", "path": "app.conf"}]},
             "summary": {"/etc/app": {"delete": 1, "update": 1}}}
    release = {"changed": True, "current": "r1", "previous_release": {"id": "r2"}}
    state = recovery_state({"config": files, "release": release}, SAFETY, ["release", "config", "database"],
                           None, True)
    assert state["state"] == "differs" and state["recovered"] is False
    assert state["differences"] == {"release": ["current is r2, the checkpoint recorded r1"],
                                    "config": ["/etc/app: delete stray.conf, update app.conf"]}
    assert state["text"].startswith("The host is NOT at its safety checkpoint %s: release differs" % SAFETY)
    assert "Database not compared with it." in state["text"]


def test_a_long_list_is_cut_with_the_total():
    actions = [{"op": "update", "path": "f%d" % n} for n in range(20)]
    files = {"changed": True, "changes": {"/srv": actions}, "summary": {"/srv": {"update": 1500}}}
    state = recovery_state({"config": files}, SAFETY, ["config"])
    assert state["differences"]["config"][0].endswith("f7 and 1492 more")


def test_no_answer_is_unverified_and_says_why():
    state = recovery_state({"config": {"changed": False, "msg": "Checkpoint safety/x is not in /store"}}, SAFETY,
                           ["config"], "recovery is off", False)
    assert state["state"] == "unverified" and state["recovered"] is False
    assert "could not be compared" in state["text"] and "is not in /store" in state["text"]
    assert "recovery is off" in state["text"]


def test_database_only_recovery_is_restored_without_a_byte_comparison():
    state = recovery_state({"config": None, "release": None}, SAFETY, ["database"], None, True)
    assert state["state"] == "restored" and state["recovered"] is True
    assert state["text"] == "The host was brought back to its safety checkpoint %s. Database not compared with it." % SAFETY


def test_without_a_safety_checkpoint_nothing_was_brought_back():
    state = recovery_state({}, None, [], "recovery is off", False)
    assert state["state"] == "unverified"
    assert state["text"] == ("The host was NOT brought back: recovery is off (no safety checkpoint was taken to compare "
                             "it with).")


def test_a_plan_with_no_stored_layer_has_nothing_to_bring_back():
    state = recovery_state({}, None, [], None, True)
    assert state["state"] == "unverified" and state["recovered"] is False
    assert state["text"].startswith("No safety checkpoint was taken (the plan changes no stored layer")
