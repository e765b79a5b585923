"""Who may roll back: the rollback role's policy step through ansible-playbook (allowed users and
AWX teams, file and AWX approvals, confirmation timeout, maximum rollback time), with every
refusal in the audit log and nothing changed."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest


def policy_play(tmp_path: Path, policy: dict, **extra) -> list:
    """A play running the policy step, then a change that only an accepted run may make."""
    return [{"name": "policy", "hosts": "local", "gather_facts": False,
             "vars": {"rollback_to": "v1", "rollback_policy": policy, "rollback_run_id": "run-42",
                      "rollback_audit_log": str(tmp_path / "audit.jsonl"),
                      "rollback_approvals_file": str(tmp_path / "approvals"), **extra},
             "tasks": [
                 {"name": "Policy",
                  "ansible.builtin.include_role": {"name": "gitops.rollback.rollback", "tasks_from": "policy"}},
                 {"name": "Change", "ansible.builtin.copy": {"dest": str(tmp_path / "changed"), "content": "x"}},
             ]}]


def audit(tmp_path: Path) -> list:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(run_playbook, local_inventory, tmp_path, policy, user="carol", **extra):
    return run_playbook(policy_play(tmp_path, policy, **extra), inventory=local_inventory, env={"USER": user})


def refused(result, tmp_path, reason_part):
    assert not result.ok, result
    assert not (tmp_path / "changed").exists(), "a refused run changed something"
    events = [e for e in audit(tmp_path) if e.get("event") == "refused"]
    assert events and reason_part in events[-1]["reason"], audit(tmp_path)
    assert "Rollback refused by policy" in result.stdout
    return events[-1]


def test_a_user_not_allowed_is_refused_and_audited(run_playbook, local_inventory, tmp_path):
    result = run(run_playbook, local_inventory, tmp_path, {"allowed_users": ["alice"], "allowed_awx_teams": ["ops"]})
    event = refused(result, tmp_path, "user carol")
    assert event["who"]["user"] == "carol" and event["run_id"] == "run-42" and event["target"] == "v1"


def test_allowed_users_and_awx_teams_may_roll_back(run_playbook, local_inventory, tmp_path):
    assert run(run_playbook, local_inventory, tmp_path, {"allowed_users": ["carol"]}).ok
    (tmp_path / "changed").unlink()
    result = run(run_playbook, local_inventory, tmp_path, {"allowed_awx_teams": ["ops"]}, user="dave",
                 rollback_user_teams="dev, ops", awx_user_name="dave")
    assert result.ok, result
    assert (tmp_path / "changed").exists()
    assert not [e for e in audit(tmp_path) if e.get("event") == "refused"]


def test_a_file_approval_within_the_timeout_lets_the_run_go_on(run_playbook, local_inventory, tmp_path):
    approvals = tmp_path / "approvals"

    def approve_later():
        time.sleep(3)
        approvals.write_text("approve run-41 bob\napprove run-42 mallory\napprove run-42 bob\n")

    writer = threading.Thread(target=approve_later)
    writer.start()
    started = time.monotonic()
    result = run(run_playbook, local_inventory, tmp_path,
                 {"approval_required": True, "approvers": ["bob"], "confirmation_timeout": 60})
    writer.join()
    assert result.ok, result
    assert (tmp_path / "changed").exists()
    assert time.monotonic() - started >= 3


def test_no_approval_in_time_or_a_self_approval_is_refused(run_playbook, local_inventory, tmp_path):
    (tmp_path / "approvals").write_text("approve run-42 carol\napprove run-1 bob\n")
    started = time.monotonic()
    result = run(run_playbook, local_inventory, tmp_path,
                 {"approval_required": True, "approvers": ["bob", "carol"], "confirmation_timeout": 4})
    refused(result, tmp_path, "no approval by bob, carol within 4 s")
    assert time.monotonic() - started < 60


def test_an_awx_approval_counts_only_from_an_approver(run_playbook, local_inventory, tmp_path):
    policy = {"approval_required": True, "approvers": ["bob"], "confirmation_timeout": 2}
    refused(run(run_playbook, local_inventory, tmp_path, policy, rollback_approval="mallory"), tmp_path,
            "approval by mallory does not count")
    assert run(run_playbook, local_inventory, tmp_path, policy, rollback_approval="bob").ok
    assert (tmp_path / "changed").exists()


@pytest.mark.parametrize("limit, stops", [(1, True), (600, False)])
def test_the_maximum_rollback_time_stops_the_run(run_playbook, local_inventory, tmp_path, limit, stops):
    play = policy_play(tmp_path, {"max_rollback_seconds": limit})
    play[0]["tasks"][1:1] = [
        {"name": "A slow layer", "ansible.builtin.pause": {"seconds": 2}},
        {"name": "Deadline", "ansible.builtin.include_role": {"name": "gitops.rollback.rollback",
                                                              "tasks_from": "policy_deadline"},
         "vars": {"__rollback_layer": "database"}},
    ]
    result = run_playbook(play, inventory=local_inventory, env={"USER": "carol"})
    assert result.ok != stops, result
    assert (tmp_path / "changed").exists() != stops
    if stops:
        assert "exceeded max_rollback_seconds (1 s)" in result.stdout and "before database" in result.stdout
