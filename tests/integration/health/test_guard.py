"""The guard playbook: health gate over real Prometheus, automatic rollback, cooldown, decisions.

Which metric fails (error rate, p99 latency, no data, a stopped provider) is the health_check module's
verdict (test_health_gate.py); the guard reacts to a failed verdict the same way whichever metric failed.
The engine's decisions (the verdict, the cooldown's) are proven below the playbook (test_health_gate.py,
test_guard_hour.py); the playbook runs here prove what the guard role does with them. The end-to-end breach
(the default rollback role, then the cooldown refusing an operator's go) runs over the simulated hour
(test_guard_hour.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict

import pytest
import yaml
from health_support import JOB, gate_metrics

from harness import repo_root
from harness.actions import collection_module

pytestmark = pytest.mark.slow
# The prometheus of the health tests scrapes a healthy app and one failing half its requests, each set once.
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


def deploy(root: Path, run_task) -> Path:
    """v1 checkpointed (label v1) in ``root/store``, then the broken v2 deployed over it in ``root/srv/app``
    (set-up: the checkpoint module as Ansible runs it on the local host, no playbook run)."""
    app_dir = root / "srv" / "app"
    write_tree(app_dir, V1)
    _run, made = run_task("gitops.rollback.checkpoint", {
        "paths": [str(app_dir)], "label": "v1", "store_path": str(root / "store")})
    assert made["status"] == "ok", made
    write_tree(app_dir, V2)
    return app_dir


@pytest.fixture
def deployed(tmp_path: Path, run_task) -> Path:
    """v1 checkpointed in a store in tmp, the broken v2 deployed over it (:func:`deploy`)."""
    return deploy(tmp_path, run_task)


def audit(guard_vars: dict) -> list:
    path = Path(guard_vars["guard_audit_log_path"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def guard(run_playbook, local_inventory, guard_vars, **extra):
    return run_playbook(GUARD, inventory=local_inventory, extra_vars={"rollback_to": "v1", **guard_vars, **extra})


def scenario_vars(guard_vars: dict, root: Path) -> dict:
    """``guard_vars`` with the state (cooldown, audit log, decision file) and the store of its own under ``root``."""
    return {**guard_vars, "guard_cooldown_path": str(root / "state" / "cooldown.json"),
            "guard_audit_log_path": str(root / "state" / "audit.jsonl"),
            "guard_decision_file": str(root / "state" / "decision"),
            "gitops_rollback_store_path": str(root / "store")}


def test_a_healthy_release_is_kept_and_no_data_waits_for_a_decision_and_does_not_roll_back(
        run_playbook, guard_vars, prometheus, run_task, tmp_path) -> None:
    """Two plays of one run, each ``guard.yml`` on a local host of its own with its own state and store: the
    healthy release first (a play that fails ends the run), then a selector matching nothing (inconclusive)."""
    healthy_root, nodata_root = tmp_path / "healthy", tmp_path / "nodata"
    healthy_tree, nodata_tree = deploy(healthy_root, run_task), deploy(nodata_root, run_task)
    nothing = [{"name": "no-data", "provider": {"type": "prometheus", "address": prometheus.url,
                                                "query": 'sum(rate(http_requests_total{job="nope"}[5s]))'},
                "success_condition": "result < 1"}]  # a selector matching nothing: inconclusive
    healthy_vars = scenario_vars(guard_vars, healthy_root)
    nodata_vars = {**scenario_vars(guard_vars, nodata_root), "guard_metrics": nothing, "guard_count": 2}
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = tmp_path / "two-local.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"healthy": local, "nodata": local}}}))
    plays = [{"import_playbook": GUARD, "vars": {**healthy_vars, "gitops_rollback_hosts": "healthy"}},
             {"import_playbook": GUARD, "vars": {**nodata_vars, "gitops_rollback_hosts": "nodata"}}]

    run = run_playbook(plays, inventory=inventory, extra_vars={"rollback_to": "v1"})

    # the healthy release: kept, the run completed for it
    assert not run.results(host="healthy", status="failed"), str(run)
    assert run.stats["healthy"]["failures"] == 0 and run.stats["healthy"]["ok"] > 0, run.stats
    assert read_tree(healthy_tree) == V2
    assert [(r["event"], r["level"]) for r in audit(healthy_vars)] == [("completed", "info")]
    # no data: no decision came, nothing rolled back, the run fails
    assert not run.ok
    assert read_tree(nodata_tree) == V2
    failed = [str(e["result"].get("msg", "")) for e in run.results(host="nodata", status="failed")]
    assert any("no decision" in msg and "NOT rolled back" in msg for msg in failed), failed
    events = [(r["event"], r["level"]) for r in audit(nodata_vars)]
    assert ("alert", "warning") in events and events[-1] == ("failed", "emergency"), events


def test_guard_on_fail_fail_stops_for_an_approval(run_playbook, local_inventory, guard_vars, deployed,
                                                  prometheus, collections_path) -> None:
    """The guarded-deploy workflow (awx/workflow.json): the guard alerts and stops before any change; the
    approved rollback job is rollback.yml, whose role restores like the guard's own rollback
    (test_guard_hour.py)."""
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
