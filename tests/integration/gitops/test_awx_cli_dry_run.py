"""A dry run changes nothing, through AWX (survey answers, ansible-runner) and the CLI
(`gitops-rollback trigger --check`): hosts, stores, cooldown, locks and the CLI's state file stay as
they were, the audit log says "dry run"; the real run afterwards still rolls back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict

import ansible_runner
import pytest
from gitops_support import RELEASES, checkpoints, cli_env, host_files, run_cli
from test_awx_runner import awx_private_data_dir, common_vars

pytestmark = pytest.mark.slow


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
                 answers: Dict[str, Any]) -> Any:
    extravars = {**common_vars(job_id), "awx_job_launch_type": "manual", **template_vars(tmp_path), **answers}
    pdd = awx_private_data_dir(tmp_path / f"job{job_id}", inventory, extravars, collections)
    result = ansible_runner.run(private_data_dir=str(pdd), playbook=playbook, ident=str(job_id), quiet=True)
    assert result.status == "successful", (pdd / "artifacts" / str(job_id) / "stdout").read_text()[-4000:]
    return result


def test_survey_dry_runs_change_nothing_and_the_real_guard_job_rolls_back(
        checkpointed, gitops_inventory: Path, collections_path: Path, tmp_path: Path) -> None:
    before = everything(checkpointed, tmp_path)
    log = tmp_path / "audit.jsonl"
    for job_id, playbook in ((70, "guard.yml"), (71, "rollback.yml")):
        seen = len(audit(log))
        run_template(tmp_path, gitops_inventory, collections_path, job_id, playbook,
                     {"rollback_to": "v1", "rollback_dry_run": "yes"})
        assert everything(checkpointed, tmp_path) == before, f"the {playbook} survey's dry run changed something"
        records = audit(log)[seen:]
        assert any(r["operation"] == "rollback" and r["event"] == "completed" for r in records), records
        assert all(r.get("dry_run") is True for r in records), [(r["operation"], r["event"]) for r in records]

    seen = len(audit(log))
    run_template(tmp_path, gitops_inventory, collections_path, 72, "guard.yml",
                 {"rollback_to": "v1", "rollback_dry_run": "no"})
    records = audit(log)[seen:]
    assert all(r.get("dry_run") is False for r in records), records
    run_id = [r for r in records if r["operation"] == "rollback"][0]["run_id"]
    for host in checkpointed:
        assert host_files(host) == dict(sorted(RELEASES["v1"].items())), host.name
        assert [m["label"] for m in checkpoints(host)].count(f"safety/{run_id}") == 1, host.name
    assert (tmp_path / "cooldown.json").exists(), "the real guard run took the cooldown"


def test_cli_check_changes_nothing_and_keeps_the_tag_for_the_real_run(
        checkpointed, gitops_inventory: Path, collections_path: Path, tmp_path: Path) -> None:
    env = cli_env(collections_path)
    state = tmp_path / "state.json"
    log = tmp_path / "audit.jsonl"
    common = ["-i", str(gitops_inventory), "--state", str(state), "-e", f"gitops_rollback_audit_log={log}",
              "-e", f"rollback_lock_dir={tmp_path / 'locks'}"]
    before = everything(checkpointed, tmp_path)

    dry = run_cli(["trigger", "rollback/v1", "--check", *common], env, tmp_path)

    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert everything(checkpointed, tmp_path) == before, "trigger --check changed something"
    records = audit(log)
    assert records and all(r.get("dry_run") is True for r in records), records
    assert "rollback/v1" not in (json.loads(state.read_text())["tags"] if state.exists() else {}), \
        "a dry run must not use up the tag"

    real = run_cli(["trigger", "rollback/v1", *common], env, tmp_path)

    assert real.returncode == 0, real.stdout + real.stderr
    for host in checkpointed:
        assert host_files(host) == dict(sorted(RELEASES["v1"].items())), host.name
    assert json.loads(state.read_text())["tags"]["rollback/v1"]["status"] == "successful"
