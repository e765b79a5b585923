"""Webhook payloads and extra vars are untrusted data: a tag or label holding a template runs nothing.

Entry points: ``ansible-playbook -e @payload.json`` of a webhook body, a plain ``-e rollback_to=...``,
and an AWX job run by ansible-runner (extra vars written as AWX writes them: survey answers and
webhook variables ``!unsafe``; and all plain, as with AWX's ALLOW_JINJA_IN_EXTRA_VARS=always).
After each, the marker file the template would create must not exist and no host may have changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import ansible_runner
import pytest
import yaml
from gitops_support import REPO_ROOT, RELEASES, checkpoints, host_files
from test_awx_runner import awx_private_data_dir, common_vars, github_tag_push, job_events, task_results
from test_untrusted_refs import hostile

from gitops_rollback.runner import unsafe_yaml

pytestmark = pytest.mark.slow

V2 = dict(sorted(RELEASES["v2"].items()))


def is_exploit(name: str) -> bool:
    """The variants of the exploit itself (``{{ lookup('pipe', ...) }}``): every entry point sees those.

    Each run costs seconds, so the other variants go through the rollback path only (the unit
    tests of _tags and _inputs hold every variant against every check).
    """
    return "{{" in name and "\n" not in name


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


def test_webhook_body_given_with_extra_vars_file_runs_nothing(v2_fleet, gitops_inventory: Path, run_playbook,
                                                              tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for number, (name, _git_ok) in enumerate(hostile(marker)):
        books = [("rollback.yml", "refs/tags/rollback/" + name)]
        if is_exploit(name):
            books.append(("checkpoint.yml", "refs/tags/" + name))
        for book, ref in books:
            body = tmp_path / f"payload-{number}-{book}.json"
            body.write_text(json.dumps(webhook_vars(ref, f"guid-{number}")))
            result = run_playbook(REPO_ROOT / "playbooks" / book, inventory=gitops_inventory,
                                  extra_args=["-e", f"@{body}"])
            assert not marker.exists(), (book, name)
            assert not result.ok, (book, name, result.stdout)
            assert "Refused before anything ran" in result.stdout or "is refused" in result.stdout, result.stdout
            assert "{{" not in "".join(line for line in result.stdout.splitlines() if "is refused" in line)
    # Template text anywhere in a payload Ansible trusts is refused, even in a field nobody reads.
    body = tmp_path / "message.json"
    body.write_text(json.dumps(webhook_vars("refs/tags/rollback/v1", "guid-m", commits=[
        {"message": "fix {{ lookup('pipe', 'touch %s') }}" % marker}])))
    result = run_playbook(REPO_ROOT / "playbooks" / "rollback.yml", inventory=gitops_inventory,
                          extra_args=["-e", f"@{body}"])
    assert not result.ok and "awx_webhook_payload['commits'][0]['message'] holds template text" in result.stdout
    assert_nothing_ran(v2_fleet, marker, ["v1", "v2"])


OWN_PLAY = [{"name": "A play of the user's own that uses the roles", "hosts": "all", "gather_facts": False,
             "roles": [{"role": "gitops.rollback.checkpoint"}]}]


def test_plain_extra_vars_with_templates_run_nothing(v2_fleet, gitops_inventory: Path, run_playbook,
                                                     tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    books = [(REPO_ROOT / "playbooks" / "rollback.yml", "rollback_to"),
             (REPO_ROOT / "playbooks" / "checkpoint.yml", "checkpoint_label"),
             (REPO_ROOT / "playbooks" / "guard.yml", "rollback_to"), (OWN_PLAY, "checkpoint_label")]
    for name, _git_ok in hostile(marker):
        if "\x00" in name or "\n" in name:  # argv holds no NUL; KEY=VALUE splits at a newline
            continue
        for book, var in books if is_exploit(name) else books[:1]:
            result = run_playbook(book, inventory=gitops_inventory, extra_args=["-e", f"{var}={name}"])
            assert not marker.exists(), (book, name)
            assert not result.ok and f"{var} '" in result.stdout and "is refused" in result.stdout, result.stdout
    assert_nothing_ran(v2_fleet, marker, ["v1", "v2"])


def awx_job(root: Path, inventory: Path, collections: Path, job_id: int, playbook: str,
            untrusted: Dict[str, Any], all_plain: bool = False) -> Any:
    """Run ``playbook`` as AWX would: job vars plain, survey answers and webhook vars ``!unsafe`` (by default)."""
    trusted = common_vars(job_id)
    pdd = awx_private_data_dir(root, inventory, trusted, collections)  # env/envvars as AWX sets them
    if all_plain:  # ALLOW_JINJA_IN_EXTRA_VARS=always
        text = json.dumps({**trusted, **untrusted})
    else:
        text = "---\n" + yaml.safe_dump(trusted) + unsafe_yaml(untrusted)
    (pdd / "env" / "extravars").write_text(text)
    result = ansible_runner.run(private_data_dir=str(pdd), playbook=playbook, ident=str(job_id), quiet=True)
    return result, job_events(pdd, job_id), (pdd / "artifacts" / str(job_id) / "stdout").read_text()


def failure_messages(events: List[Dict[str, Any]]) -> str:
    return " ".join(str(e["event_data"]["res"].get("msg", "")) for e in events if e["event"] == "runner_on_failed")


def test_awx_jobs_with_hostile_webhook_tags_or_survey_answers_run_nothing(
        v2_fleet, gitops_inventory: Path, collections_path: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    job = 100
    for name, _git_ok in hostile(marker):
        books = [("rollback.yml", "refs/tags/rollback/" + name)]
        if is_exploit(name):
            books.append(("checkpoint.yml", "refs/tags/" + name))
        for book, ref in books:
            for plain in (False, True) if is_exploit(name) and book == "rollback.yml" else (False,):
                job += 1
                result, events, stdout = awx_job(tmp_path / f"job{job}", gitops_inventory, collections_path, job,
                                                 book, webhook_vars(ref, f"guid-{job}"), all_plain=plain)
                assert not marker.exists(), (book, name, plain)
                assert result.status == "failed", (book, name, plain, stdout)
                said = failure_messages(events)
                assert "is refused" in said or "holds template text" in said, said
                assert "{{" not in said and "\x00" not in said, said
        if not is_exploit(name):
            continue
        job += 1  # a survey answer (AWX passes it !unsafe)
        result, events, stdout = awx_job(tmp_path / f"job{job}", gitops_inventory, collections_path, job,
                                         "rollback.yml", {"rollback_to": name})
        assert not marker.exists() and result.status == "failed", stdout
        assert "rollback_to '" in failure_messages(events) and "is refused" in failure_messages(events)
        assert not task_results(events, "Restore the managed paths")
    assert_nothing_ran(v2_fleet, marker, ["v1", "v2"])


def test_awx_webhook_with_a_valid_tag_still_checkpoints_and_rolls_back(
        v2_fleet, gitops_inventory: Path, collections_path: Path, tmp_path: Path) -> None:
    result, _events, stdout = awx_job(tmp_path / "job1", gitops_inventory, collections_path, 1, "checkpoint.yml",
                                      webhook_vars("refs/tags/v2.1", "guid-ok-1"))
    assert result.status == "successful", stdout
    for host in v2_fleet:
        assert [m["label"] for m in checkpoints(host)] == ["v1", "v2", "v2.1"], host.name
    result, events, stdout = awx_job(tmp_path / "job2", gitops_inventory, collections_path, 2, "rollback.yml",
                                     webhook_vars("refs/tags/rollback/v1", "guid-ok-2"))
    assert result.status == "successful", stdout
    assert sorted(task_results(events, "Restore the managed paths")) == ["h1", "h2", "h3"]
    for host in v2_fleet:
        assert host_files(host) == dict(sorted(RELEASES["v1"].items())), host.name
