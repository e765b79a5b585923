"""The audit log is evidence: two processes appending at once (as two ansible-playbook runs' audit modules do)
make one hash chain, and `gitops-rollback audit verify` and the report module name the first altered, missing
or damaged record. The audit module's own records, as Ansible runs it: test_the_report_module_names_the_first_broken_record."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

from harness import repo_root
from harness.actions import collection_module

pytestmark = pytest.mark.slow


def append_concurrently(collections_path: Path, log: Path, names: Sequence[str], count: int) -> None:
    """One process per name, started together, each appending ``count`` records the way the audit module does
    (``runstate.append_record`` of a ``make_record``): the lock and the chain across processes, no Ansible run."""
    audit = collection_module(collections_path, "plugins.module_utils.controller.audit")
    runstate = collection_module(collections_path, "plugins.module_utils.controller.runstate")
    context = multiprocessing.get_context("fork")
    start = context.Barrier(len(names))

    def append(name: str) -> None:
        start.wait(60)
        for item in range(count):
            runstate.append_record("", str(log), audit.make_record("progress", "rollback", f"{name}-{item}",
                                                                   reason=f"layer {item}"))

    processes = [context.Process(target=append, args=(name,)) for name in names]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0] * len(names)


def verify(log: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo_root())}
    return subprocess.run([sys.executable, "-m", "gitops_rollback", "audit", "verify", str(log), *extra],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_concurrent_appends_chain_and_verify_names_what_was_tampered(collections_path, tmp_path):
    log = tmp_path / "state" / "audit.jsonl"
    append_concurrently(collections_path, log, ("first", "second"), 12)

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
