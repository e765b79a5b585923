"""The guard playbook: health gate over real Prometheus, automatic rollback, cooldown, decisions.

Which metric fails (error rate, p99 latency, no data, a stopped provider) is the health_check module's
verdict (test_health_gate.py); the guard reacts to a failed verdict the same way whichever metric failed.
The engine's decisions (the verdict, the cooldown's) are proven below the playbook (test_health_gate.py,
test_guard_hour.py); the playbook runs here prove what the guard role does with them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Dict

import pytest
import yaml
from health_support import JOB, gate_metrics
from services import free_port

from harness import repo_root
from harness.actions import collection_module

pytestmark = pytest.mark.slow
# One prometheus for the module scrapes a healthy app and one failing half its requests, each set once.
METRICS_APPS = {JOB: {}, "errors": {"error_rate": 0.5}}
GUARD = str(repo_root() / "playbooks" / "guard.yml")
V1 = {"index.html": "<h1>v1</h1>\n", "conf/app.ini": "workers = 4\n"}
V2 = {"index.html": "<h1>v2 - broken</h1>\n", "conf/app.ini": "workers = 0\n", "new.js": "bad()\n"}


def write_tree(root: Path, files: Dict[str, str]) -> None:
    for old in sorted(root.rglob("*"), reverse=True):
        if old.is_file():
            old.unlink()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def read_tree(root: Path) -> Dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def deployed(tmp_path: Path, run_task) -> Path:
    """v1 checkpointed (label v1) in a store in tmp, then the broken v2 deployed over it (set-up: the
    checkpoint module as Ansible runs it on the local host ``lb``, no playbook run)."""
    app_dir = tmp_path / "srv" / "app"
    write_tree(app_dir, V1)
    _run, made = run_task("gitops.rollback.checkpoint", {
        "paths": [str(app_dir)], "label": "v1", "store_path": str(tmp_path / "store")})
    assert made["status"] == "ok", made
    write_tree(app_dir, V2)
    return app_dir


def audit(guard_vars: dict) -> list:
    path = Path(guard_vars["guard_audit_log_path"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def guard(run_playbook, local_inventory, guard_vars, **extra):
    return run_playbook(GUARD, inventory=local_inventory, extra_vars={"rollback_to": "v1", **guard_vars, **extra})


def test_healthy_release_is_kept(run_playbook, local_inventory, guard_vars, deployed) -> None:
    run = guard(run_playbook, local_inventory, guard_vars)
    assert run.ok, str(run)
    assert read_tree(deployed) == V2
    assert [(r["event"], r["level"]) for r in audit(guard_vars)] == [("completed", "info")]


def test_error_rate_breach_rolls_back_with_the_default_role_and_the_cooldown_refuses_an_operators_go(
        run_playbook, local_inventory, guard_vars, deployed, prometheus, tmp_path) -> None:
    """The end-to-end breach: the failing gate rolls back with the default role; then an error verdict,
    the operator's go, and the cooldown refuses the second automatic rollback before any change."""
    settings = {key: value for key, value in guard_vars.items() if key != "guard_rollback_role"}
    settings["guard_metrics"] = gate_metrics(prometheus.url, job="errors")
    # the default rollback role (the ordered rollback); only the guard's audit log is given: the rollback the
    # guard runs writes to it too
    extra = {"gitops_rollback_paths": [str(deployed)], "gitops_rollback_store_path": str(tmp_path / "store"),
             "rollback_lock_dir": str(tmp_path / "locks")}
    run = guard(run_playbook, local_inventory, settings, **extra)
    assert run.ok, str(run)
    assert read_tree(deployed) == V1  # the host's files are back at the checkpoint
    records = audit(guard_vars)
    assert [(r["operation"], r["event"]) for r in records] == [
        ("guard", "alert"), ("guard", "started"), ("rollback", "started"), ("rollback", "completed"),
        ("guard", "completed")], records
    assert records[2].get("trigger") == "guard", records
    started = records[1]
    assert started["level"] == "critical" and started["target"] == "v1"
    assert started["measurements"]["verdict"] == "fail"
    values = [m["value"] for m in started["measurements"]["metrics"][0]["measurements"]]
    assert len(values) == 1 and values[0] > 0.1  # decided at the first breach, not after all 4 intervals
    assert float(started["measurements"]["detection_seconds"]) >= 0
    assert json.loads(Path(guard_vars["guard_cooldown_path"]).read_text())["last_rollback"]

    write_tree(deployed, V2)  # deployed again, still broken; now the provider cannot be reached: error
    decision = Path(guard_vars["guard_decision_file"])
    seen = len(records)

    def operator() -> None:  # writes "go" once the guard has asked (a new alert in the audit log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(r["event"] == "alert" for r in audit(guard_vars)[seen:]):
            time.sleep(0.1)
        time.sleep(0.3)
        decision.write_text("go\n")

    thread = threading.Thread(target=operator, daemon=True)
    thread.start()
    unreachable = {**settings, "guard_metrics": gate_metrics(f"http://127.0.0.1:{free_port()}")}
    second = guard(run_playbook, local_inventory, unreachable, guard_consecutive_error_limit=0,
                   guard_decision_timeout=30, **extra)
    thread.join()
    assert not second.ok
    assert read_tree(deployed) == V2  # nothing rolled back the second time
    assert "Automatic rollback refused" in second.stdout and "allows the next at" in second.stdout
    later = audit(guard_vars)[seen:]
    assert [(r["event"], r["level"]) for r in later] == [
        ("alert", "critical"), ("progress", "info"), ("refused", "emergency")], later
    assert later[0]["measurements"]["verdict"] == "error"
    assert "go" in later[1]["reason"]  # the operator's go led to the rollback, which the cooldown refused


def test_no_data_waits_for_a_decision_and_does_not_roll_back(run_playbook, local_inventory, guard_vars,
                                                             deployed, prometheus) -> None:
    nothing = [{"name": "no-data", "provider": {"type": "prometheus", "address": prometheus.url,
                                                "query": 'sum(rate(http_requests_total{job="nope"}[5s]))'},
                "success_condition": "result < 1"}]  # a selector matching nothing: inconclusive
    run = guard(run_playbook, local_inventory, {**guard_vars, "guard_metrics": nothing}, guard_count=2)
    assert not run.ok
    assert read_tree(deployed) == V2
    assert "no decision" in run.stdout and "NOT rolled back" in run.stdout
    events = [(r["event"], r["level"]) for r in audit(guard_vars)]
    assert ("alert", "warning") in events and events[-1] == ("failed", "emergency"), events


def test_guard_on_fail_fail_stops_for_an_approval(run_playbook, local_inventory, guard_vars, deployed,
                                                  prometheus, collections_path) -> None:
    """The guarded-deploy workflow (awx/workflow.json): the guard alerts and stops before any change; the
    approved rollback job is rollback.yml, whose role restores like the guard's own rollback above."""
    workflow = json.loads((repo_root() / "awx" / "workflow.json").read_text())["workflow_job_templates"][0]
    workflow_vars = yaml.safe_load(workflow["extra_vars"])
    # the one workflow variable rollback.yml reads (vars/dry_run.yml): the approved job is a real run
    dry_run = collection_module(collections_path, "plugins.filter.dry_run").dry_run
    assert dry_run(workflow_vars["rollback_dry_run"], False) is False
    failing = {**guard_vars, "guard_metrics": gate_metrics(prometheus.url, job="errors")}
    stopped = guard(run_playbook, local_inventory, failing, **workflow_vars)
    assert not stopped.ok
    assert read_tree(deployed) == V2  # nothing rolled back before the approval
    assert "nothing was rolled back" in stopped.stdout, stopped.stdout
    assert [(r["event"], r["level"]) for r in audit(guard_vars)] == [("alert", "critical")]
    assert not Path(guard_vars["guard_cooldown_path"]).exists()  # no automatic rollback, no cooldown taken
