"""Webhook payloads and extra vars are untrusted data: a tag or label holding a template runs nothing.

The playbooks, for one hostile variant of each path (the wiring): ``ansible-playbook -e @payload.json`` of
a webhook body (template text: the ``input_check`` task; a tag outside the grammar: the webhook filter),
a plain ``-e`` through guard.yml and through a play of the user's own that uses the checkpoint role, and
an AWX job run by ansible-runner with a survey answer (``!unsafe``, as AWX writes it). After each, the
marker file the template would create must not exist and no host may have changed. Every variant
against every entry point is refused in-process by test_untrusted_refusals.py (the same two steps on
the extra vars as Ansible loads them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import ansible_runner
import pytest
from gitops_support import REPO_ROOT, RELEASES, checkpoints, host_files
from test_awx_runner import (awx_extravars, awx_private_data_dir, common_vars, github_tag_push, job_events,
                             task_results)
from test_untrusted_refs import hostile

pytestmark = pytest.mark.slow

V2 = dict(sorted(RELEASES["v2"].items()))


def exploit(marker: Path) -> str:
    """The issue's example: ``{{ lookup('pipe', 'touch <marker>') }}`` after ``rollback/``, without the prefix."""
    return next(name for name, _git_ok in hostile(marker) if name.startswith("rollback/{{ "))[len("rollback/"):]


def webhook_vars(ref: str, guid: str, **payload_changes: Any) -> Dict[str, Any]:
    return {"awx_webhook_event_type": "push", "awx_webhook_event_guid": guid,
            "awx_webhook_payload": {**github_tag_push(ref), **payload_changes}}


def assert_nothing_ran(fleet: Any, marker: Path, labels: List[str]) -> None:
    assert not marker.exists()
    for host in fleet:
        assert host_files(host) == V2, host.name
        assert [m["label"] for m in checkpoints(host)] == labels, host.name


@pytest.fixture
def v2_fleet(checkpointed) -> Any:
    """v1 checkpointed, v2 deployed and checkpointed: a rollback to v1 would change every host."""
    return checkpointed


OWN_PLAY = [{"name": "A play of the user's own that uses the roles", "hosts": "all", "gather_facts": False,
             "roles": [{"role": "gitops.rollback.checkpoint"}]}]


def test_hostile_webhook_bodies_and_extra_vars_run_nothing(v2_fleet, gitops_inventory: Path, run_playbook,
                                                           tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    exploit_tag = exploit(marker)
    bodies = [  # (playbook, webhook ref, what refuses it)
        ("rollback.yml", "refs/tags/rollback/" + exploit_tag, "Refused before anything ran: "),
        ("checkpoint.yml", "refs/tags/v1\u20240", "is refused"),  # a dot leader for the dot
    ]
    for number, (book, ref, refusal) in enumerate(bodies):
        body = tmp_path / f"payload-{number}.json"
        body.write_text(json.dumps(webhook_vars(ref, f"guid-{number}")))
        result = run_playbook(REPO_ROOT / "playbooks" / book, inventory=gitops_inventory,
                              extra_args=["-e", f"@{body}"])
        assert not marker.exists(), book
        assert not result.ok and refusal in result.stdout, result.stdout
        assert "{{" not in "".join(line for line in result.stdout.splitlines() if "is refused" in line)
    for book, var in ((REPO_ROOT / "playbooks" / "guard.yml", "rollback_to"), (OWN_PLAY, "checkpoint_label")):
        result = run_playbook(book, inventory=gitops_inventory, extra_args=["-e", f"{var}={exploit_tag}"])
        assert not marker.exists(), book
        assert not result.ok and f"{var} '" in result.stdout and "is refused" in result.stdout, result.stdout
    assert_nothing_ran(v2_fleet, marker, ["v1", "v2"])


def awx_job(root: Path, inventory: Path, collections: Path, job_id: int, playbook: str,
            untrusted: Dict[str, Any], all_plain: bool = False) -> Any:
    """Run ``playbook`` as AWX would (:func:`awx_extravars`)."""
    pdd = awx_private_data_dir(root, inventory, common_vars(job_id), collections)  # env/envvars as AWX sets them
    (pdd / "env" / "extravars").write_text(awx_extravars(job_id, untrusted, all_plain))
    result = ansible_runner.run(private_data_dir=str(pdd), playbook=playbook, ident=str(job_id), quiet=True)
    return result, job_events(pdd, job_id), (pdd / "artifacts" / str(job_id) / "stdout").read_text()


def failure_messages(events: List[Dict[str, Any]]) -> str:
    return " ".join(str(e["event_data"]["res"].get("msg", "")) for e in events if e["event"] == "runner_on_failed")


def test_an_awx_survey_answer_with_a_template_runs_nothing(v2_fleet, gitops_inventory: Path,
                                                           collections_path: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    result, events, stdout = awx_job(tmp_path / "job101", gitops_inventory, collections_path, 101,
                                     "rollback.yml", {"rollback_to": exploit(marker)})
    assert not marker.exists() and result.status == "failed", stdout
    assert "rollback_to '" in failure_messages(events) and "is refused" in failure_messages(events)
    assert "{{" not in failure_messages(events)
    assert not task_results(events, "Restore the managed paths")
    assert_nothing_ran(v2_fleet, marker, ["v1", "v2"])


def test_an_awx_webhook_with_a_valid_tag_still_checkpoints(v2_fleet, gitops_inventory: Path,
                                                           collections_path: Path, tmp_path: Path) -> None:
    """The webhook variables ``!unsafe``: the tag still becomes the label (a rollback tag still rolls back:
    test_awx_runner.test_webhook_rollback_tag_runs_once, whose job AWX writes the same way)."""
    result, _events, stdout = awx_job(tmp_path / "job1", gitops_inventory, collections_path, 1, "checkpoint.yml",
                                      webhook_vars("refs/tags/v2.1", "guid-ok-1"))
    assert result.status == "successful", stdout
    for host in v2_fleet:
        assert [m["label"] for m in checkpoints(host)] == ["v1", "v2", "v2.1"], host.name
        assert host_files(host) == V2, host.name
