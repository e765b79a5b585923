"""An audit log made by real ordered rollbacks of the fleet, plus a guard-triggered and a failed one."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import run_playbook as harness_run_playbook

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "playbooks"
MANAGED = ["/srv/app", "/etc/app"]


@dataclass
class AuditLog:
    """The log and what the test put into it."""

    path: Path
    real_runs: list = field(default_factory=list)  # run ids of the real rollbacks, in order
    refused_run: str = ""
    guard_run: str = ""
    guard_rollback_run: str = ""
    failed_run: str = ""
    detected_epoch: float = 0.0

    def records(self) -> list:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def _deploy(fleet, version: str) -> None:
    for host in fleet:
        (host.local("/srv/app") / "index.html").write_text("<h1>%s %s</h1>\n" % (host.name, version))
        (host.local("/srv/app") / "build.bin").write_bytes(os.urandom(2048))
        (host.local("/etc/app") / "app.conf").write_text("host=%s\nversion=%s\n" % (host.name, version))


def _record(event, run_id, epoch, operation="rollback", **fields):
    record = {"event": event, "run_id": run_id, "operation": operation, "epoch": round(epoch, 3),
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)), "level": "info",
              "who": {"user": "guard"}}
    record.update(fields)
    return record


def _append_synthetic(log: AuditLog, hosts: list) -> None:
    """A guard-triggered rollback (detection 40 s into the gate) and a rollback that failed on one host."""
    start = float(int(time.time()) + 5)  # whole seconds: the gate writes detection times to the millisecond
    log.guard_run, log.guard_rollback_run, log.failed_run = "guard-test-1", "rollback-guarded-1", "rollback-failed-1"
    log.detected_epoch = start + 40
    measurements = {
        "verdict": "fail", "reason": "error_rate failed: 0.42 meets failure condition '> 0.05'", "health": 0.0,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(start)),
        "detected": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(log.detected_epoch)),
        "detection_seconds": 40.0,
        "metrics": [{"name": "error_rate", "phase": "failed", "reason": "0.42 meets failure condition '> 0.05'",
                     "severity": "critical", "measurements": [{"value": 0.01, "outcome": "successful"},
                                                              {"value": 0.42, "outcome": "failed"}]}]}
    guard = {"target": "v1", "trigger": "health gate", "hosts": hosts, "measurements": measurements}
    timings = {host: {"config": 0.8} for host in hosts}
    done = log.detected_epoch + 2.5 + 3.2
    records = [
        _record("alert", log.guard_run, log.detected_epoch, "guard", level="critical",
                reason="health gate fail: error_rate failed", **guard),
        _record("started", log.guard_run, log.detected_epoch + 2, "guard", level="critical",
                reason="health gate fail: error_rate failed; rolling back to v1", **guard),
        _record("started", log.guard_rollback_run, log.detected_epoch + 2.5, target="v1", trigger="guard",
                hosts=hosts, message="layers: config"),
        _record("completed", log.guard_rollback_run, done, target="v1", trigger="guard", hosts=hosts,
                layers=timings, duration=3.2, message="rolled back",
                result={"run_id": log.guard_rollback_run, "target": "v1", "check_mode": False, "completed": hosts,
                        "failed": [], "seconds": 3.2, "layers": timings,
                        "changed_layers": {host: ["config"] for host in hosts}}),
        _record("completed", log.guard_run, done + 0.5, "guard", level="warning", reason="rolled back to v1", **guard),
        _record("started", log.failed_run, done + 60, target="v1", trigger="manual", hosts=hosts,
                reason="config drift", message="layers: config"),
        _record("failed", log.failed_run, done + 62, target="v1", trigger="manual", hosts=[hosts[0]], level="critical",
                layers={hosts[0]: {"config": 1.1}},
                result={"host": hosts[0], "layer": "config", "task": "Restore the managed paths",
                        "problem": "No space left on device", "recovered_to_safety_checkpoint": True}),
        _record("failed", log.failed_run, done + 64, target="v1", trigger="manual", hosts=hosts, duration=4.0,
                layers={h: {"config": 1.0} for h in hosts[1:]}, message="rolled back",
                result={"run_id": log.failed_run, "target": "v1", "check_mode": False, "completed": hosts[1:],
                        "failed": hosts[:1], "seconds": 4.0}),
    ]
    with log.path.open("a") as handle:
        handle.writelines(json.dumps(record, sort_keys=True) + "\n" for record in records)


@pytest.fixture(scope="module")
def audit_log(fleet, collections_path, tmp_path_factory) -> AuditLog:
    """Two real rollbacks (manual on h1; tag with a reason on h1..h3) to a checkpoint v1, one refused (unknown
    label), all three in one ansible-playbook run, then synthetic guard and failure."""
    workdir = tmp_path_factory.mktemp("report-log")
    log = AuditLog(workdir / "audit.jsonl")
    fleet.ensure_running()
    fleet.wipe()
    base = {"gitops_rollback_paths": MANAGED, "gitops_rollback_audit_log": str(log.path)}
    _deploy(fleet, "v1")
    # v1 checkpointed by the checkpoint module on each host, as the checkpoint role's task runs it there (the
    # checkpoint playbook writes nothing to the audit log; its own runs: hosts/ and gitops/)
    for host in fleet:
        taken = host.module("gitops.rollback.checkpoint", {"paths": MANAGED, "label": "v1"})
        assert taken.ok and not taken.events[-1]["result"].get("failed"), (host.name, taken)
    # One run of three imports of rollback.yml: the manual rollback on h1 only (gitops_rollback_hosts), v2 deployed
    # on h1 again (a play writing its files), the tag's rollback on every host, then the refused one (an unknown
    # label: the refusal ends the run, so it comes last)
    _deploy(fleet, "v2")
    redeploy_h1 = {"name": "deploy v2 on h1 again", "hosts": "h1", "gather_facts": False, "tasks": [
        {"name": "Write %s" % dest, "ansible.builtin.copy": {"dest": dest, "content": content}}
        for dest, content in (("/srv/app/index.html", "<h1>h1 v2 again</h1>\n"),
                              ("/srv/app/build.bin", os.urandom(16).hex()),
                              ("/etc/app/app.conf", "host=h1\nversion=v2 again\n"))]}
    rollback_yml = str(PLAYBOOKS / "rollback.yml")
    result = harness_run_playbook(
        [{"import_playbook": rollback_yml, "vars": {"rollback_to": "v1", "gitops_rollback_hosts": "h1"}},
         redeploy_h1,
         {"import_playbook": rollback_yml,
          "vars": {"rollback_to": "v1", "rollback_trigger": "tag", "rollback_reason": "bad release v2"}},
         {"import_playbook": rollback_yml, "vars": {"rollback_to": "no-such-label", "gitops_rollback_hosts": "h1"}}],
        fleet.inventory, base, collections_dir=collections_path, cwd=workdir)
    assert not result.ok, result
    failed = {(e["host"], e["task"]) for e in result.events if e["status"] == "failed"}
    assert {host for host, _task in failed} == {"h1"}, "only the refused rollback fails, on h1: %s" % (failed,)
    finals = [(r["event"], r["run_id"]) for r in log.records() if r.get("operation", "rollback") == "rollback"
              and r.get("event") in ("completed", "failed", "refused")]
    assert [event for event, _run in finals] == ["completed", "completed", "refused"], (finals, result)
    log.real_runs = [run for _event, run in finals[:2]]
    log.refused_run = finals[2][1]
    _append_synthetic(log, fleet.names)
    return log


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; missing is a failure naming the package, never a skip."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run installs it)", pytrace=False)
