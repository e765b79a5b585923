"""Issue 7: playbooks/rollback.yml in serial batches with a health gate between batches, on three
real SSH hosts, gated on a real Prometheus metric of the test service."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from health_support import JOB, SCRAPE_INTERVAL, gate_metrics
from services import ERROR_RATE_QUERY, MetricsApp, Prometheus

from harness import Fleet, repo_root, signal_and_wait_argv

pytestmark = pytest.mark.slow
PLAYBOOKS = repo_root() / "playbooks"
# The prometheus of the health tests scrapes the healthy app and "breaking", whose error rate only the failing
# gate's test raises (mid-run).
METRICS_APPS = {JOB: {}, "breaking": {}}


def release(host_name: str, version: str) -> Dict[str, bytes]:
    """The bytes of one release of one host's /srv/app."""
    return {"index.html": f"<h1>{host_name} {version}</h1>\n".encode(),
            "conf/app.ini": f"release = {version}\n".encode(),
            **({"bad.js": b"crash()\n"} if version == "v2" else {})}


def deploy(fleet: Fleet, version: str) -> None:
    for host in fleet:
        root = host.local("/srv/app")
        for old in sorted(root.rglob("*"), reverse=True):
            old.unlink() if old.is_file() else old.rmdir()
        for name, data in release(host.name, version).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)


def files(fleet: Fleet, name: str) -> Dict[str, bytes]:
    root = fleet[name].local("/srv/app")
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def gate_records(audit_log: Path) -> List[dict]:
    lines = audit_log.read_text().splitlines() if audit_log.exists() else []
    return [r for r in map(json.loads, lines) if r.get("trigger") == "batch gate"]


COMMON = {"gitops_rollback_paths": ["/srv/app"], "gitops_rollback_hosts": "fleet"}


@pytest.fixture(scope="module")
def checkpointed_copy(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Made once per module: v1 checkpointed on h1..h3 by the checkpoint module on each host (as the checkpoint
    role's task runs it there; the checkpoint playbook's own runs: hosts/ and gitops/), v2 deployed; a copy of
    the hosts' files and stores, which ``batch_vars`` puts back before each test."""
    fleet.ensure_running()
    fleet.wipe()
    tmp = tmp_path_factory.mktemp("batch-gate")
    deploy(fleet, "v1")
    for host in fleet:
        taken = host.module("gitops.rollback.checkpoint", {"paths": COMMON["gitops_rollback_paths"], "label": "v1"})
        assert taken.ok and not taken.events[-1]["result"].get("failed"), (host.name, taken)
    deploy(fleet, "v2")
    return fleet.snapshot(tmp / "hosts")


@pytest.fixture
def batch_vars(clean_fleet: Fleet, checkpointed_copy: Path, tmp_path: Path, prometheus: Prometheus) -> Dict[str, Any]:
    """v1 checkpointed on h1..h3, v2 deployed (put back from the module's copy); the extra vars of a gated
    rollback one host per batch."""
    clean_fleet.restore(checkpointed_copy)
    return {**COMMON, "rollback_to": "v1", "rollback_layers": "config", "rollback_serial": 1,
            "gitops_rollback_audit_log": str(tmp_path / "audit.jsonl"), "rollback_lock_dir": str(tmp_path / "locks"),
            "rollback_batch_gate": True, "guard_batch_gate_name": "error-rate gate",
            "guard_metrics": gate_metrics(prometheus.url), "guard_interval": SCRAPE_INTERVAL, "guard_count": 3,
            "guard_on_inconclusive": "fail", "guard_on_error": "fail"}


def test_healthy_gates_let_every_batch_roll_back(clean_fleet, run_playbook, batch_vars, tmp_path) -> None:
    """Two batches (h1, then h2; h3 is not in the run): the gate after a batch with one to come, and after the
    last. (Three batches that a failing gate stops after the first: the test below.)"""
    run = run_playbook(PLAYBOOKS / "rollback.yml", extra_vars={**batch_vars, "gitops_rollback_hosts": "h1:h2"})

    assert run.ok, run
    for name in ("h1", "h2"):
        assert files(clean_fleet, name) == release(name, "v1"), name
    assert files(clean_fleet, "h3") == release("h3", "v2"), "h3 was not in the run"
    records = gate_records(tmp_path / "audit.jsonl")
    assert [(r["event"], r["result"]["batch"], r["hosts"]) for r in records] == [
        ("progress", 1, ["h1"]), ("progress", 2, ["h2"])], records
    for record in records:
        assert record["measurements"]["verdict"] == "pass"
        values = [m["value"] for metric in record["measurements"]["metrics"] for m in metric["measurements"]]
        assert len(values) == 6 and all(value is not None for value in values), values
    assert [r["result"]["not_rolled_back"] for r in records] == [["h2"], []]


def test_a_failing_gate_stops_before_the_next_batch(clean_fleet, run_playbook, batch_vars, tmp_path,
                                                    apps: Dict[str, MetricsApp], prometheus: Prometheus) -> None:
    breaking = apps["breaking"]
    rolled, broken = tmp_path / "h1-rolled-back", tmp_path / "service-broken"
    hook = tmp_path / "after_h1.yml"  # runs in batch 1 after h1's layers, before the gate
    hook.write_text(json.dumps([  # (wait_for looks once a second: this looks every 0.02 s)
        {"name": "Tell the test h1 is rolled back, wait until it has raised the error rate",
         "ansible.builtin.command": {"argv": signal_and_wait_argv(rolled, broken, 120)},
         "changed_when": False, "delegate_to": "localhost", "when": "inventory_hostname == 'h1'"}]))

    def break_service() -> None:
        deadline = time.monotonic() + 300
        while not rolled.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        breaking.set(error_rate=0.5)
        prometheus.wait_for(ERROR_RATE_QUERY % {"job": "breaking"}, lambda value: value > 0.1, poll=0.05)
        broken.touch()

    breaker = threading.Thread(target=break_service, daemon=True)
    breaker.start()
    run = run_playbook(PLAYBOOKS / "rollback.yml",
                       extra_vars={**batch_vars, "rollback_health_gate_tasks_file": str(hook),
                                   "guard_metrics": gate_metrics(prometheus.url, job="breaking")})
    breaker.join(timeout=5)

    assert not run.ok
    assert files(clean_fleet, "h1") == release("h1", "v1")
    assert files(clean_fleet, "h2") == release("h2", "v2"), "batch 2 must not run after a failing gate"
    assert files(clean_fleet, "h3") == release("h3", "v2"), "batch 3 must not run after a failing gate"
    messages = [e["result"].get("msg", "") for e in run.events if e.get("status") == "failed"]
    assert any("error-rate gate stopped the rollback to v1 after batch 1 (h1)" in m
               and "Not rolled back: h2, h3" in m and "critical metric(s) failed: error-rate" in m
               for m in messages), messages
    records = gate_records(tmp_path / "audit.jsonl")
    assert len(records) == 1, records
    failed = records[0]
    assert (failed["event"], failed["level"], failed["hosts"]) == ("failed", "critical", ["h1"])
    assert failed["result"] == {"gate": "error-rate gate", "batch": 1, "hosts": ["h1"],
                                "not_rolled_back": ["h2", "h3"], "verdict": "fail"}
    error_rate = failed["measurements"]["metrics"][0]
    assert error_rate["name"] == "error-rate" and error_rate["phase"] == "failed"
    assert error_rate["measurements"][-1]["value"] > 0.1
