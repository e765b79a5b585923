"""Issue 10: the guard watching for an hour of simulated time - nothing lost, locks honoured, memory flat.

One hour of metric history is backfilled into Debian's Prometheus (``promtool tsdb
create-blocks-from openmetrics``), then the guard's evaluation engine (the code of
gitops.rollback.health_check) watches it at the production interval (``guard_interval`` 10 s,
``guard_count`` 360: a one-hour window) with a simulated clock: sleeping advances virtual time at
once, and every Prometheus query asks for the value at the virtual now (``time=``). The watch runs
in Python in this process (so its memory can be measured); the cooldown, the run lock and the
audit log are the collection's own engines, and the concurrent contender is a separate process.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List

import pytest
from health_support import _started
from services import Prometheus, free_port, require

from harness import repo_root


pytestmark = pytest.mark.slow
INTERVAL = 10.0                       # the guard's production interval (guard_interval)
WINDOW = 3600.0                       # one hour
COUNT = int(WINDOW / INTERVAL)        # 360 measurements
BREACH_AT = 55 * 60 + 5.0             # the "breach" series turns bad 55 min 5 s into the hour
STEP = 5                              # seconds between backfilled samples
THRESHOLD = 0.05
MEMORY_BOUND = 5 * 1024 * 1024        # minute 60 may use at most 5 MB more than minute 5
FIGURES = Path(os.environ.get("GITOPS_ROLLBACK_HOUR_FIGURES", "/tmp/gitops-rollback-guard-hour.json"))


@pytest.fixture(scope="module")
def eng(collections_path: Path) -> SimpleNamespace:
    """The collection's engines, imported in this process (the checkout under the harness's collections path)."""
    if str(collections_path) not in sys.path:
        sys.path.insert(0, str(collections_path))
    base = "ansible_collections.gitops.rollback.plugins.module_utils."
    names = {"audit": "controller.audit", "health": "health.analysis", "health_cooldown": "health.cooldown",
             "health_providers": "health.providers", "lock": "common.lock"}
    return SimpleNamespace(**{name: importlib.import_module(base + module) for name, module in names.items()})


def series_value(job: str, offset: float) -> float:
    """The backfilled error ratio of ``job`` at ``offset`` seconds into the hour (a step function)."""
    if job == "breach" and offset >= BREACH_AT:
        return 0.3
    return round(0.01 + 0.002 * ((int(offset) // STEP) % 7), 6)


def write_openmetrics(path: Path, start: int) -> int:
    """One hour (and 5 minutes either side) of both series every STEP seconds; the sample count."""
    lines = ["# HELP app_error_ratio Share of failed requests.", "# TYPE app_error_ratio gauge"]
    for offset in range(-300, int(WINDOW) + 300, STEP):
        for job in ("breach", "steady"):
            lines.append(f'app_error_ratio{{job="{job}"}} {series_value(job, offset)} {start + offset}')
    path.write_text("\n".join(lines + ["# EOF"]) + "\n")
    return len(lines) - 2


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """Prometheus serving the backfilled hour; yields (server, start of the hour)."""
    workdir = tmp_path_factory.mktemp("hour") / "prometheus"
    (workdir / "data").mkdir(parents=True)
    start = (int(time.time()) // 3600 - 4) * 3600  # a whole hour, 4 hours back: out of the head block
    source = workdir.parent / "hour.om"
    samples = write_openmetrics(source, start)
    promtool = require("promtool", "prometheus")
    made = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(workdir / "data")],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    server = _started(lambda: Prometheus(workdir, [], job="none", retention="30d").start())
    try:
        # every backfilled sample of the hour is there before the watch starts
        server.wait_for('count_over_time(app_error_ratio{job="steady"}[6h])', lambda value: value == samples / 2)
        yield server, start, samples
    finally:
        server.stop()


def probed_clock(eng: SimpleNamespace, start: float, probes: Dict[str, float]) -> Any:
    """A simulated clock that notes memory (tracemalloc and RSS) when virtual time passes a probe."""

    class ProbedClock(eng.health.SimulatedClock):
        def __init__(self) -> None:
            super().__init__(start)
            self.start = start
            self.pending = sorted(probes.items(), key=lambda item: item[1])
            self.memory: Dict[str, dict] = {}

        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            while self.pending and self.current - self.start >= self.pending[0][1]:
                self.note(self.pending.pop(0)[0])

        def note(self, name: str) -> None:
            current, peak = tracemalloc.get_traced_memory()
            self.memory[name] = {"virtual_seconds": round(self.current - self.start, 1), "traced": current,
                                 "traced_peak": peak, "rss": rss_bytes()}

    return ProbedClock()


def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:"))


def gate(eng: SimpleNamespace, job: str, address: str) -> Any:
    """The critical error-ratio metric of the guard at the production interval over one hour."""
    return eng.health.MetricSpec.from_dict({
        "name": f"error-ratio-{job}", "severity": "critical", "interval": INTERVAL, "count": COUNT,
        "provider": {"type": "prometheus", "address": address, "query": f'app_error_ratio{{job="{job}"}}'},
        "success_condition": f"result < {THRESHOLD}"})


def watch(eng: SimpleNamespace, job: str, address: str, clock: Any, audit_log: Path) -> Any:
    """The guard's watch: one evaluation over the hour, recorded in the audit log as the guard does."""
    result = eng.health.evaluate([gate(eng, job, address)], eng.health_providers.measurer(clock),
                                 clock=clock.now, sleep=clock.sleep)
    outcome = result.as_dict()
    eng.audit.append(str(audit_log), eng.audit.make_record(
        "completed" if outcome["verdict"] == eng.health.PASS else "alert", "guard", f"hour-{job}", target="v1",
        trigger="health gate", measurements=outcome))
    return result


def recorded(audit_log: Path) -> List[dict]:
    """The measurements of the last guard record, read back from the audit log file."""
    record = json.loads(audit_log.read_text().splitlines()[-1])
    return record["measurements"]["metrics"][0]["measurements"]


def logged_query_times(server: Prometheus, job: str) -> List[float]:
    """Evaluation times of the queries for ``job`` in Prometheus's own query log."""
    times = []
    for line in server.query_log.read_text().splitlines():
        entry = json.loads(line)
        if entry["params"]["query"] == f'app_error_ratio{{job="{job}"}}':
            times.append(datetime.fromisoformat(entry["params"]["start"].replace("Z", "+00:00")).timestamp())
    return times


def save_figures(**figures: object) -> None:
    known = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    known.update(figures)
    FIGURES.write_text(json.dumps(known, indent=2) + "\n")


def test_an_hour_of_watching_loses_nothing_and_memory_stays_flat(eng, history, tmp_path: Path) -> None:
    server, start, _samples = history
    clock = probed_clock(eng, start, {"minute_5": 300.0})
    audit_log = tmp_path / "audit.jsonl"
    tracemalloc.start()
    began = time.monotonic()
    try:
        result = watch(eng, "steady", server.url, clock, audit_log)
        wall = time.monotonic() - began
        clock.note("minute_60")
    finally:
        tracemalloc.stop()

    assert result.verdict == eng.health.PASS, result.reason
    measurements = recorded(audit_log)
    assert len(measurements) == COUNT == WINDOW / INTERVAL
    assert [m["timestamp"] for m in measurements] == [start + INTERVAL * k for k in range(COUNT)]
    assert [m["value"] for m in measurements] == [series_value("steady", INTERVAL * k) for k in range(COUNT)]
    assert {m["outcome"] for m in measurements} == {eng.health.SUCCESSFUL}
    assert sorted(logged_query_times(server, "steady")) == [start + INTERVAL * k for k in range(COUNT)]
    assert clock.now() - start == INTERVAL * (COUNT - 1)  # the last measurement is at 59 min 50 s
    early, late = clock.memory["minute_5"], clock.memory["minute_60"]
    growth = {key: late[key] - early[key] for key in ("traced", "traced_peak", "rss")}
    save_figures(hour_wall_seconds=round(wall, 2), measurements=len(measurements), memory_minute_5=early,
                 memory_minute_60=late, memory_growth_bytes=growth)
    print(f"\nhour watch: {wall:.2f} s wall for {COUNT} measurements; memory growth minute 5 -> 60: {growth}")
    assert growth["traced"] < MEMORY_BOUND and growth["traced_peak"] < MEMORY_BOUND, clock.memory
    assert growth["rss"] < MEMORY_BOUND, clock.memory


CONTENDER = r"""
import json, sys
from ansible_collections.gitops.rollback.plugins.module_utils.health import cooldown as _health_cooldown
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import LockHeldError
from ansible_collections.gitops.rollback.plugins.module_utils.common.lock import FileLock
lock_path, cooldown_path, key, now = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
out = {}
try:
    FileLock(lock_path, "alice (manual rollback)", "rollback to v1").acquire()
    out["lock"] = "taken"
except LockHeldError as exc:
    out["lock"] = str(exc)
decision = _health_cooldown.acquire(cooldown_path, key, 3600, record=True, now=now)
out["cooldown"] = decision.as_dict(now)
print(json.dumps(out))
"""


def test_a_breach_fails_the_watch_within_one_interval_and_locks_hold(eng, history, tmp_path: Path) -> None:
    server, start, _samples = history
    clock = eng.health.SimulatedClock(start)
    audit_log = tmp_path / "audit.jsonl"

    result = watch(eng, "breach", server.url, clock, audit_log)

    assert result.verdict == eng.health.FAIL and "error-ratio-breach" in result.reason
    breach = start + BREACH_AT
    assert 0 <= result.detected - breach <= INTERVAL, (result.detected - breach)
    measurements = recorded(audit_log)
    seen = int(BREACH_AT // INTERVAL) + 2  # every interval up to and including the first one past the breach
    assert len(measurements) == seen
    assert [m["timestamp"] for m in measurements] == [start + INTERVAL * k for k in range(seen)]
    assert [m["value"] for m in measurements] == [series_value("breach", INTERVAL * k) for k in range(seen)]
    assert [m["outcome"] for m in measurements] == [eng.health.SUCCESSFUL] * (seen - 1) + [eng.health.FAILED]
    assert sorted(logged_query_times(server, "breach")) == [start + INTERVAL * k for k in range(seen)]

    # What the guard does on fail: take the cooldown (at the virtual now) and the rollback lock.
    cooldown_path, lock_path = tmp_path / "cooldown.json", tmp_path / "locks" / "inventory.lock"
    lock_path.parent.mkdir()
    key = "inventory::h1,h2,h3"
    taken = eng.health_cooldown.acquire(str(cooldown_path), key, 3600, record=True, now=clock.now())
    assert taken.allowed and taken.recorded
    with eng.lock.FileLock(str(lock_path), "guard (watch hour-breach)", "rollback to v1").acquire():
        # A concurrent rollback from another process, one simulated minute later, is refused by both.
        contender = subprocess.run(
            [sys.executable, "-c", CONTENDER, str(lock_path), str(cooldown_path), key, str(clock.now() + 60)],
            capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        refused = json.loads(contender.stdout)
        assert "is locked by guard (watch hour-breach)" in refused["lock"] and "rollback to v1" in refused["lock"]
        assert refused["cooldown"]["allowed"] is False and refused["cooldown"]["recorded"] is False
        assert refused["cooldown"]["seconds_left"] == 3540
        assert json.loads(lock_path.read_text())["owner"] == "guard (watch hour-breach)"  # not stolen
    assert not lock_path.exists()


def test_the_guard_playbook_watches_the_hour_rolls_back_and_the_cooldown_refuses_an_operators_go(
        history, run_playbook, run_task, local_inventory: Path, tmp_path: Path) -> None:
    """The production path end to end: playbooks/guard.yml at guard_interval 10 x guard_count 360, with
    the module's test-only simulated clock, rolls the host's files back at the breach with the default
    (ordered) rollback role. Then an error verdict, the operator's go, and the cooldown refuses that second
    automatic rollback before any change."""
    server, start, _samples = history
    app = tmp_path / "srv" / "app"
    app.mkdir(parents=True)
    (app / "index.html").write_bytes(b"<h1>v1</h1>\n")
    store, audit_log, cooldown = tmp_path / "store", tmp_path / "audit.jsonl", tmp_path / "cooldown.json"
    # set-up: the checkpoint module as Ansible runs it on the local host, no playbook run
    _run, made = run_task("gitops.rollback.checkpoint", {"paths": [str(app)], "label": "v1", "store_path": str(store)})
    assert made["status"] == "ok", made
    (app / "index.html").write_bytes(b"<h1>v2</h1>\n")
    metric = {"name": "error-ratio", "severity": "critical",
              "provider": {"type": "prometheus", "query": 'app_error_ratio{job="breach"}'},
              "success_condition": f"result < {THRESHOLD}"}
    # the default rollback role (the ordered rollback); only the guard's audit log is given: the rollback the
    # guard runs writes to it too
    settings = {"rollback_to": "v1", "gitops_rollback_paths": [str(app)], "gitops_rollback_store_path": str(store),
                "rollback_lock_dir": str(tmp_path / "locks"), "guard_cooldown_path": str(cooldown),
                "guard_audit_log_path": str(audit_log), "guard_decision_file": str(tmp_path / "decision")}

    began = time.monotonic()
    run = run_playbook(repo_root() / "playbooks" / "guard.yml", inventory=local_inventory,
                       env={"GITOPS_ROLLBACK_SIMULATED_CLOCK": str(start)}, extra_vars={
                           **settings, "guard_metrics": [metric], "guard_prometheus_url": server.url,
                           "guard_interval": INTERVAL, "guard_count": COUNT})
    wall = time.monotonic() - began

    assert run.ok, run.stdout[-3000:]
    assert (app / "index.html").read_bytes() == b"<h1>v1</h1>\n"
    records = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert [(r["operation"], r["event"]) for r in records] == [
        ("guard", "alert"), ("guard", "started"), ("rollback", "started"), ("rollback", "completed"),
        ("guard", "completed")], records
    assert records[2].get("trigger") == "guard", records
    started = records[1]
    assert started["level"] == "critical" and started["target"] == "v1"
    gate = started["measurements"]
    assert gate["verdict"] == "fail"
    assert float(gate["detection_seconds"]) == (int(BREACH_AT // INTERVAL) + 1) * INTERVAL  # 3310 s simulated
    values = [m["value"] for m in gate["metrics"][0]["measurements"]]
    # decided at the first breach, not after all 360 intervals
    assert values == [series_value("breach", INTERVAL * k) for k in range(int(BREACH_AT // INTERVAL) + 2)]
    assert json.loads(cooldown.read_text())["last_rollback"]
    save_figures(playbook_hour_wall_seconds=round(wall, 2))
    print(f"\nguard.yml over the simulated hour: {wall:.2f} s wall (ansible-playbook, rollback included)")

    (app / "index.html").write_bytes(b"<h1>v2</h1>\n")  # deployed again; now the provider cannot be reached
    seen = len(records)

    def operator() -> None:  # writes "go" once the guard has asked (a new alert in the audit log): the guard
        # forgets an earlier decision before it alerts, then reads the file every second (at once the first time)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                json.loads(line)["event"] == "alert" for line in audit_log.read_text().splitlines()[seen:]):
            time.sleep(0.02)
        (tmp_path / "decision").write_text("go\n")

    thread = threading.Thread(target=operator, daemon=True)
    thread.start()
    unreachable = {**metric, "provider": {"type": "prometheus", "query": metric["provider"]["query"],
                                          "address": f"http://127.0.0.1:{free_port()}"}}
    second = run_playbook(repo_root() / "playbooks" / "guard.yml", inventory=local_inventory, extra_vars={
        **settings, "guard_metrics": [unreachable], "guard_interval": 1, "guard_count": 4,
        "guard_consecutive_error_limit": 0, "guard_decision_timeout": 30})
    thread.join()
    assert not second.ok
    assert (app / "index.html").read_bytes() == b"<h1>v2</h1>\n"  # nothing rolled back the second time
    assert "Automatic rollback refused" in second.stdout and "allows the next at" in second.stdout
    later = [json.loads(line) for line in audit_log.read_text().splitlines()][seen:]
    assert [(r["event"], r["level"]) for r in later] == [
        ("alert", "critical"), ("progress", "info"), ("refused", "emergency")], later
    assert later[0]["measurements"]["verdict"] == "error"
    assert "go" in later[1]["reason"]  # the operator's go led to the rollback, which the cooldown refused
