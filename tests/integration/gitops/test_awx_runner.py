"""ansible-runner with a private data dir laid out as AWX lays it out: survey answers and webhook payloads."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List

import ansible_runner
import pytest
import yaml
from gitops_support import REPO_ROOT, deploy, host_files, RELEASES
from harness.actions import collection_module
from harness.collection import callback_env

from gitops_rollback.runner import unsafe_yaml

pytestmark = pytest.mark.slow

INCLUDE = {"name": "Filter the AWX webhook event", "ansible.builtin.include_tasks": "tasks/awx_event.yml",
           "vars": {"gitops_rollback_event_expect": "rollback"}}


def github_tag_push(ref: str, sha: str = "a" * 40, deleted: bool = False) -> Dict[str, Any]:
    """The parts of a GitHub push webhook payload AWX forwards as awx_webhook_payload."""
    return {"ref": ref, "before": "0" * 40 if not deleted else sha, "after": "0" * 40 if deleted else sha,
            "created": not deleted, "deleted": deleted, "forced": False, "base_ref": None,
            "repository": {"full_name": "acme/config"}, "head_commit": None if deleted else {"id": sha},
            "pusher": {"name": "alice"}}


def project_from_playbooks(project: Path) -> None:
    """The AWX project: the collection's playbooks/, as a project checkout would hold them.

    The filter pre-task is added to every play of rollback.yml when the playbook does not include it yet.
    """
    shutil.copytree(REPO_ROOT / "playbooks", project)
    book = project / "rollback.yml"
    plays = yaml.safe_load(book.read_text())
    if "awx_event.yml" not in book.read_text():
        for play in plays:
            play["pre_tasks"] = [INCLUDE] + list(play.get("pre_tasks") or [])
        book.write_text(yaml.safe_dump(plays, sort_keys=False))


def awx_private_data_dir(root: Path, inventory: Path, extravars: Dict[str, Any], collections: Path,
                         job_type: str = "run") -> Path:
    """env/extravars, env/envvars, env/cmdline, inventory/hosts, project/ like an AWX job."""
    (root / "env").mkdir(parents=True)
    (root / "inventory").mkdir()
    shutil.copy(inventory, root / "inventory" / "hosts")
    project_from_playbooks(root / "project")
    (root / "env" / "extravars").write_text(json.dumps(extravars))
    (root / "env" / "envvars").write_text(json.dumps({
        # What AWX sets for every job (the rollback policy recognises an AWX job by them).
        "JOB_ID": str(extravars.get("awx_job_id", "")), "AWX_PRIVATE_DATA_DIR": str(root),
        "ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        **callback_env(collections)}))  # the test harness's callback: the same job, less controller CPU
    if job_type == "check":
        (root / "env" / "cmdline").write_text("--check --diff")
    return root


def run_job(pdd: Path, job_id: int) -> Any:
    return ansible_runner.run(private_data_dir=str(pdd), playbook="rollback.yml", ident=str(job_id), quiet=True)


def job_events(pdd: Path, job_id: int) -> List[Dict[str, Any]]:
    folder = pdd / "artifacts" / str(job_id) / "job_events"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def task_results(events: List[Dict[str, Any]], task: str) -> Dict[str, Dict[str, Any]]:
    return {e["event_data"]["host"]: e for e in events
            if e["event"] in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable")
            and e["event_data"].get("task") == task}


def messages(events: List[Dict[str, Any]], task: str) -> List[str]:
    return [e["event_data"]["res"].get("msg", "") for e in task_results(events, task).values()]


def common_vars(job_id: int) -> Dict[str, Any]:
    return {"awx_job_id": job_id, "tower_job_id": job_id, "awx_user_name": "alice", "tower_user_name": "alice",
            "awx_job_launch_type": "webhook"}


def awx_extravars(job_id: int, untrusted: Dict[str, Any], all_plain: bool = False,
                  trusted: Dict[str, Any] | None = None) -> str:
    """``env/extravars`` of an AWX job: job vars (:func:`common_vars`, ``trusted``) plain, survey answers and
    webhook vars (``untrusted``) ``!unsafe``, as AWX writes them; ``all_plain``: everything plain, as with
    AWX's ALLOW_JINJA_IN_EXTRA_VARS=always."""
    plain = {**common_vars(job_id), **(trusted or {})}
    if all_plain:
        return json.dumps({**plain, **untrusted})
    return "---\n" + yaml.safe_dump(plain) + unsafe_yaml(untrusted)


def test_webhook_rollback_tag_runs_once(checkpointed, gitops_inventory: Path, collections_path: Path,
                                        tmp_path: Path) -> None:
    audit_log = tmp_path / "audit.jsonl"
    webhook = {**common_vars(41), "awx_webhook_event_type": "push", "awx_webhook_event_guid": "guid-1",
               "awx_webhook_payload": github_tag_push("refs/tags/rollback/v1"),
               "gitops_rollback_audit_log": str(audit_log)}
    # The webhook variables !unsafe, as AWX passes them: the tag still names the rollback target.
    untrusted = {name: webhook[name] for name in ("awx_webhook_event_type", "awx_webhook_event_guid",
                                                  "awx_webhook_payload")}

    # First the survey's default answer, a dry run (rollback_dry_run yes, no --check): it plans, changes no host
    # and does not use the delivery up, so the real job below still acts on it.
    dry = awx_private_data_dir(tmp_path / "job40", gitops_inventory, {**webhook, **common_vars(40)}, collections_path)
    (dry / "env" / "extravars").write_text(awx_extravars(40, {**untrusted, "rollback_dry_run": "yes"},
                                                         trusted={"gitops_rollback_audit_log": str(audit_log)}))
    result = run_job(dry, 40)
    assert result.status == "successful", (dry / "artifacts" / "40" / "stdout").read_text()
    assert not [e for e in task_results(job_events(dry, 40), "Restore the managed paths").values()
                if e["event_data"]["res"].get("changed")]
    for host in checkpointed:
        assert host_files(host) == dict(sorted(RELEASES["v2"].items())), host.name
    dry_records = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert ("rollback", "completed") in {(r["operation"], r["event"]) for r in dry_records}, dry_records
    assert all(r.get("dry_run") is True for r in dry_records), dry_records

    pdd = awx_private_data_dir(tmp_path / "job41", gitops_inventory, webhook, collections_path)
    (pdd / "env" / "extravars").write_text(awx_extravars(41, untrusted,
                                                         trusted={"gitops_rollback_audit_log": str(audit_log)}))
    result = run_job(pdd, 41)
    assert result.status == "successful", (pdd / "artifacts" / "41" / "stdout").read_text()
    assert (pdd / "artifacts" / "41" / "rc").read_text() == "0"
    events = job_events(pdd, 41)
    restored = task_results(events, "Restore the managed paths")
    assert sorted(restored) == ["h1", "h2", "h3"]
    assert all(e["event"] == "runner_on_ok" and e["event_data"]["res"]["changed"] for e in restored.values())
    for host in checkpointed:
        assert host_files(host) == dict(sorted(RELEASES["v1"].items())), host.name
    records = [json.loads(line) for line in audit_log.read_text().splitlines()]
    completed = [r for r in records if r["event"] == "completed"]
    assert completed and completed[-1]["who"] == {"user": "alice", "awx_job_id": "41", "awx_launcher": "alice"}
    assert completed[-1]["target"] == "v1"

    # The same delivery again (AWX re-sent it), after v2 was deployed again: nothing is restored.
    deploy(checkpointed, "v2")
    again = awx_private_data_dir(tmp_path / "job42", gitops_inventory, {**webhook, **common_vars(42)},
                                 collections_path)
    result = run_job(again, 42)
    assert result.status == "successful"
    events = job_events(again, 42)
    assert not task_results(events, "Restore the managed paths")
    said = messages(events, "Say what the launch means")
    assert len(said) == 3 and all("duplicate event guid-1" in m for m in said), said
    for host in checkpointed:
        assert host_files(host) == dict(sorted(RELEASES["v2"].items())), host.name


IGNORED = [
    ({"ref": "refs/heads/main", "before": "b" * 40, "after": "c" * 40}, "branch push (refs/heads/main)"),
    (github_tag_push("refs/tags/rollback/v1", deleted=True), "tag rollback/v1 was deleted"),
    (github_tag_push("refs/tags/v3"), "acts on rollback events only"),
    (github_tag_push("refs/tags/nightly-7"), "tag nightly-7 matches no pattern"),
]
"""Webhook events rollback.yml does not act on, and why (what its "Say what the launch means" task says)."""
IGNORED_BY_THE_PLAYBOOK = "acts on rollback events only"
"""The reason the playbook adds (a release tag is a checkpoint event); the filter gives the others."""


def test_webhook_events_the_filter_ignores(collections_path: Path) -> None:
    """What ``tasks/awx_webhook.yml`` decides for each ignored event, with the filter called as it calls it (the
    default patterns, nothing processed yet): never a rollback, the reason the job says (the jobs below: the wiring)."""
    tag_event = collection_module(collections_path, "plugins.filter.tag_event").tag_event
    for number, (payload, why) in enumerate(IGNORED, 50):
        decision = tag_event({"awx_webhook_payload": payload, "awx_webhook_event_type": "push",
                              "awx_webhook_event_guid": f"guid-{number}"}, release_patterns=["v*"],
                             rollback_pattern="rollback/{target}", label_pattern=None, processed_tags=[],
                             processed_events=[])
        if why == IGNORED_BY_THE_PLAYBOOK:
            assert decision["action"] == "checkpoint", decision
        else:
            assert decision["action"] == "ignore" and why in f"{decision['action']}: {decision['reason']}", decision


def test_a_release_tag_event_does_nothing_in_the_rollback_job(checkpointed, gitops_inventory: Path,
                                                              collections_path: Path, tmp_path: Path) -> None:
    """An event the playbook does not act on (a release tag: a checkpoint event): the job succeeds, says why on
    every host, restores nothing. An event the filter ignores takes the same path as the duplicate delivery in
    test_webhook_rollback_tag_runs_once; every ignored event's decision: test_webhook_events_the_filter_ignores."""
    number = 52
    payload, why = IGNORED[number - 50]
    extravars = {**common_vars(number), "awx_webhook_event_type": "push",
                 "awx_webhook_event_guid": f"guid-{number}", "awx_webhook_payload": payload}
    pdd = awx_private_data_dir(tmp_path / f"job{number}", gitops_inventory, extravars, collections_path)
    result = run_job(pdd, number)
    assert result.status == "successful", why
    events = job_events(pdd, number)
    assert not task_results(events, "Restore the managed paths"), why
    said = messages(events, "Say what the launch means")
    assert len(said) == 3 and all(why in m for m in said), said
    for host in checkpointed:
        assert host_files(host) == dict(sorted(RELEASES["v2"].items())), why
