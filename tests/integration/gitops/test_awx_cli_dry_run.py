"""A dry run changes nothing, through AWX (job type "check"; ansible-runner) and the CLI (`gitops-rollback
trigger --check`): hosts, stores, cooldown, locks and the CLI's state file stay as they were, the audit log
says "dry run"; the real guard job afterwards (the survey's answer "no") still rolls back.

The survey's dry-run answer "yes" on guard.yml, and rollback.yml's answer, over every layer of three hosts:
the first test of rollback/test_ordered_rollback.py (its dry runs are the first plays of its rollback's run).

The CLI's dry run is the AWX check job's: ansible-runner with ``--check --diff`` on rollback.yml (its own
decisions, in-process below); its real run end to end: test_hook.py (the post-receive hook runs the command)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Tuple

import ansible_runner
import pytest
from gitops_support import RELEASES, checkpoints, host_files
from test_awx_runner import awx_private_data_dir, common_vars, job_events, messages, task_results

from gitops_rollback import cli, runner
from harness.collection import callback_env


def stores(fleet: Any) -> Dict[str, Dict[str, str]]:
    """Each host's checkpoint store, file by file (sha256)."""
    return {host.name: {str(p.relative_to(host.store)): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted(host.store.rglob("*")) if p.is_file()} for host in fleet}


def everything(fleet: Any, tmp_path: Path) -> Dict[str, Any]:
    """Managed files, stores, and the controller's cooldown and locks."""
    locks = tmp_path / "locks"
    return {"files": {host.name: host_files(host) for host in fleet}, "stores": stores(fleet),
            "cooldown": (tmp_path / "cooldown.json").exists(),
            "locks": sorted(p.name for p in locks.iterdir()) if locks.exists() else []}


def audit(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def template_vars(tmp_path: Path) -> Dict[str, Any]:
    """What the job templates would carry as extra vars: a gate that fails, state in tmp."""
    (tmp_path / "error-rate").write_text("1.0\n")
    return {"guard_metrics": [{"name": "error-rate", "severity": "critical", "success_condition": "result < 0.05",
                               "provider": {"type": "command", "argv": ["cat", str(tmp_path / "error-rate")]}}],
            "guard_interval": 1, "guard_count": 1, "guard_cooldown_path": str(tmp_path / "cooldown.json"),
            "guard_audit_log_path": str(tmp_path / "audit.jsonl"),
            "gitops_rollback_audit_log": str(tmp_path / "audit.jsonl"), "rollback_lock_dir": str(tmp_path / "locks")}


def run_template(tmp_path: Path, inventory: Path, collections: Path, job_id: int, playbook: str,
                 answers: Dict[str, Any], job_type: str = "run") -> Tuple[Any, Path]:
    extravars = {**common_vars(job_id), "awx_job_launch_type": "manual", **template_vars(tmp_path), **answers}
    pdd = awx_private_data_dir(tmp_path / f"job{job_id}", inventory, extravars, collections, job_type=job_type)
    result = ansible_runner.run(private_data_dir=str(pdd), playbook=playbook, ident=str(job_id), quiet=True)
    assert result.status == "successful", (pdd / "artifacts" / str(job_id) / "stdout").read_text()[-4000:]
    return result, pdd


@pytest.mark.slow
def test_a_check_job_changes_nothing_and_the_real_guard_job_rolls_back(
        checkpointed, gitops_inventory: Path, collections_path: Path, tmp_path: Path) -> None:
    before = everything(checkpointed, tmp_path)
    log = tmp_path / "audit.jsonl"
    # Job type "check" (what `trigger --check` runs too): the plan shows the change, nothing changes.
    dry = run_template(tmp_path, gitops_inventory, collections_path, 60, "rollback.yml", {"rollback_to": "v1"},
                       job_type="check")[1]
    events = job_events(dry, 60)
    shown = task_results(events, "Show the plan")  # the dry run is the plan: no layer task runs
    assert sorted(shown) == ["h1", "h2", "h3"], shown
    for event in shown.values():
        config = [line for line in event["event_data"]["res"]["msg"] if line.startswith("config:")]
        assert config and "would change" in config[0], event["event_data"]["res"]["msg"]
    assert not task_results(events, "Restore the managed paths")
    said = messages(events, "Say what the launch means")
    assert len(said) == 3 and all("manual: no webhook event" in m for m in said), said
    assert everything(checkpointed, tmp_path) == before, "the check job changed something"
    records = audit(log)
    assert records and all(r.get("dry_run") is True for r in records), records

    # The real run (a manual launch with the survey's target): every host holds v1 again.
    seen = len(audit(log))
    result = run_template(tmp_path, gitops_inventory, collections_path, 72, "guard.yml",
                          {"rollback_to": "v1", "rollback_dry_run": "no"})[0]
    assert result.stats["changed"].keys() == {"h1", "h2", "h3"}
    records = audit(log)[seen:]
    assert all(r.get("dry_run") is False for r in records), records
    run_id = [r for r in records if r["operation"] == "rollback"][0]["run_id"]
    for host in checkpointed:
        labels = [m["label"] for m in checkpoints(host)]
        assert labels[:2] == ["v1", "v2"] and labels.count(f"safety/{run_id}") == 1, (host.name, labels)
        # the safety checkpoint holds the broken v2 (new_in_v2.txt): it was taken before the first change
        safety = next(m for m in checkpoints(host) if m["label"] == f"safety/{run_id}")
        held = [json.loads(line)["path"] for root in safety["roots"] for line in
                (host.store / "objects" / root["tree"][:2] / root["tree"]).read_text().splitlines()]
        assert "new_in_v2.txt" in held, (host.name, held)
        assert host_files(host) == dict(sorted(RELEASES["v1"].items())), host.name
    assert (tmp_path / "cooldown.json").exists(), "the real guard run took the cooldown"


def test_cli_check_runs_a_dry_run_job_and_keeps_the_tag_for_the_real_run(
        collections_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`trigger --check` hands ansible-runner the check job above (rollback.yml, ``--check --diff``, the target)
    and uses nothing up in the state file; the real trigger afterwards runs the job for real and records the tag."""
    jobs: List[Tuple[Any, Path]] = []

    def prepared_only(request: Any, say: Any, cancel: Any = None) -> Any:  # pylint: disable=unused-argument
        pdd = runner.prepare(request)
        jobs.append((request, pdd))
        return runner.RunOutcome(status="successful", rc=0, artifact_dir=pdd / "artifacts" / request.ident,
                                 stats={}, duration=0.0)

    monkeypatch.setattr(cli, "run", prepared_only)
    monkeypatch.setattr(cli, "time", SimpleNamespace(strftime=lambda fmt: "20260101T000000"))  # one second: one run dir
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(collections_path))
    for name, value in callback_env(collections_path).items():  # the harness's callback: the same job, less CPU
        monkeypatch.setenv(name, value)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"h1": {}}}}))
    state = tmp_path / "state.json"
    common = ["-i", str(inventory), "--state", str(state), "-e", f"gitops_rollback_audit_log={tmp_path / 'audit.jsonl'}"]

    assert cli.main(["trigger", "rollback/v1", "--check", *common]) == 0

    request, pdd = jobs[-1]
    assert (request.playbook, request.extravars["rollback_to"]) == ("rollback", "v1"), request
    assert (pdd / "env" / "cmdline").read_text().split() == ["--check", "--diff"]
    assert "rollback/v1" not in (json.loads(state.read_text())["tags"] if state.exists() else {}), \
        "a dry run must not use up the tag"

    assert cli.main(["trigger", "rollback/v1", *common]) == 0

    assert len(jobs) == 2, "the real trigger ran the job"
    request, pdd = jobs[-1]
    assert (request.playbook, request.extravars["rollback_to"]) == ("rollback", "v1"), request
    assert not (pdd / "env" / "cmdline").exists(), "the real run is no dry run"
    assert json.loads(state.read_text())["tags"]["rollback/v1"]["status"] == "successful"
