"""The audit log is evidence: two real ansible-playbook runs append to one hash chain, and
`gitops-rollback audit verify` and the report module name the first altered, missing or damaged record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness import repo_root

pytestmark = pytest.mark.slow


def audit_play(log: Path, name: str, count: int) -> list:
    return [{"name": name, "hosts": "local", "gather_facts": False, "tasks": [{
        "name": "record", "loop": list(range(count)),
        "gitops.rollback.audit": {"event": "progress", "operation": "rollback", "run_id": name + "-{{ item }}",
                                  "reason": "layer {{ item }}", "log_path": str(log)}}]}]


def verify(log: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo_root())}
    return subprocess.run([sys.executable, "-m", "gitops_rollback", "audit", "verify", str(log), *extra],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_concurrent_runs_chain_and_verify_names_what_was_tampered(run_playbook, local_inventory, tmp_path):
    log = tmp_path / "state" / "audit.jsonl"
    results = {}

    def run(name: str) -> None:
        results[name] = run_playbook(audit_play(log, name, 12), inventory=local_inventory)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert all(result.ok for result in results.values()), results

    clean = verify(log)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "24 record(s), hash chain intact" in clean.stdout
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, 25))
    assert {r["run_id"].split("-")[0] for r in records} == {"first", "second"}

    lines = log.read_text().splitlines()
    tampered = json.loads(lines[9])
    tampered["reason"] = "nothing to see"
    log.write_text("\n".join(lines[:9] + [json.dumps(tampered)] + lines[10:]) + "\n")
    altered = verify(log)
    assert altered.returncode == 1
    assert "record #10 (line 10) was altered after it was written" in altered.stdout

    log.write_text("\n".join(lines[:9] + lines[10:]) + "\n")
    missing = verify(log, "--json")
    assert missing.returncode == 1
    problem = json.loads(missing.stdout)["first_problem"]
    assert (problem["line"], problem["seq"], problem["kind"]) == (10, 10, "missing")

    log.write_text("\n".join(lines[:20]) + "\n")
    truncated = verify(log)
    assert truncated.returncode == 1
    assert "record #21-#24 missing at the end of the log, after line 20 (record #20)" in truncated.stdout

    log.write_text("\n".join(lines[:5] + ["{garbage"] + lines[5:]) + "\n")
    damaged = verify(log)
    assert damaged.returncode == 1 and 'line 6 is damaged (not a JSON record): "{garbage"' in damaged.stdout


def test_the_report_module_names_the_first_broken_record(run_task, tmp_path):
    # the modules as Ansible runs them on the controller (run_task); the playbook runs are above
    log = tmp_path / "audit.jsonl"
    for item in range(4):
        _run, recorded = run_task("gitops.rollback.audit", {
            "event": "progress", "operation": "rollback", "run_id": f"run-{item}", "reason": f"layer {item}",
            "log_path": str(log)})
        assert recorded["status"] == "ok", recorded
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    _run, outcome = run_task("gitops.rollback.rollback_report",
                             {"log_path": str(log), "html_path": str(tmp_path / "report.html")})
    assert outcome["status"] == "ok", outcome
    integrity = outcome["summary"]["integrity"]
    assert integrity["first_problem"]["message"] == "record #2 missing before line 2 (record #3), after line 1"
    assert any("The audit log is not intact" in warning for warning in outcome.get("warnings", []))
    assert "record #2 missing before line 2" in (tmp_path / "report.html").read_text()
