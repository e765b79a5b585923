# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health gate benchmark: detection latency over repeated runs, and the guard's overhead while watching.

Real parts: the test app (requests by status, latency histogram) under load and Debian's
prometheus scraping it every second. The gate is the engine of gitops.rollback.health_check
(evaluate + the Prometheus provider), with a 1 s evaluation interval.

Figures:
- detection latency from the moment the app's error rate jumps above the threshold to the
  moment the gate returns ``fail`` (when the guard starts the rollback), as a ratio to the
  target of one evaluation interval + 1 s. It includes Prometheus' scrape interval and rate
  window, which no gate can see through.
- the gate's own latency: from the moment Prometheus' query first shows the breach (polled
  every 50 ms by the benchmark) to the verdict, as a ratio to one evaluation interval.
- CPU share and peak memory of a process running the gate for a healthy window.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "health"))

from services import ERROR_RATE_QUERY, P99_QUERY, MetricsApp, Prometheus  # noqa: E402

INTERVAL = 1.0
THRESHOLD = 0.1
JOB = "app"

GATE_SCRIPT = """
import sys, time
from ansible_collections.gitops.rollback.plugins.module_utils.health.analysis import MetricSpec, evaluate
from ansible_collections.gitops.rollback.plugins.module_utils.health.providers import measure
url, count = sys.argv[1], int(sys.argv[2])
specs = [MetricSpec.from_dict({"name": name, "provider": {"type": "prometheus", "address": url, "query": query},
                               "success_condition": cond, "interval": 1, "count": count, "severity": "critical"})
         for name, query, cond in (("error-rate", sys.argv[3], "< 0.1"), ("p99", sys.argv[4], "< 0.2"))]
result = evaluate(specs, measure)
assert result.verdict == "pass", result.reason
"""


def _collections(workdir: Path) -> Path:
    base = workdir / "collections"
    link = base / "ansible_collections" / "gitops" / "rollback"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    return base


def _engine():
    sys.path.insert(0, str(_collections(Path(os.environ.get("TMPDIR", "/tmp")) / "gitops-bench-health")))
    from ansible_collections.gitops.rollback.plugins.module_utils.health.analysis import MetricSpec, evaluate
    from ansible_collections.gitops.rollback.plugins.module_utils.health.providers import measure
    return MetricSpec, evaluate, measure


def _first_breach(prom: Prometheus, query: str, stop: threading.Event, seen: list) -> None:
    while not stop.is_set():
        try:
            result = prom.query(query)
            if result and float(result[0]["value"][1]) > THRESHOLD:
                seen.append(time.time())
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)


def _detection_runs(app: MetricsApp, prom: Prometheus, runs: int) -> "tuple[list, list]":
    metric_spec, evaluate, measure = _engine()
    query = ERROR_RATE_QUERY % {"job": JOB}
    spec = metric_spec.from_dict({"name": "error-rate", "severity": "critical", "interval": INTERVAL, "count": 60,
                                  "provider": {"type": "prometheus", "address": prom.url, "query": query},
                                  "success_condition": "< %s" % THRESHOLD})
    total, gate_only = [], []
    for _run in range(runs):
        app.set(error_rate=0.0)
        prom.wait_for(query, lambda value: value < 0.01, timeout=60)
        outcome: dict = {}
        worker = threading.Thread(target=lambda: outcome.update(result=evaluate([spec], measure)))
        worker.start()
        time.sleep(1.0 + random.random())  # the breach falls anywhere within an interval
        stop, seen = threading.Event(), []
        watcher = threading.Thread(target=_first_breach, args=(prom, query, stop, seen))
        breach = time.time()
        app.set(error_rate=0.5)
        watcher.start()
        worker.join(120)
        stop.set()
        watcher.join()
        result = outcome["result"]
        assert result.verdict == "fail", result.reason
        total.append(result.detected - breach)
        if seen:
            gate_only.append(max(0.0, result.detected - seen[0]))
    app.set(error_rate=0.0)
    prom.wait_for(query, lambda value: value < 0.01, timeout=60)  # healthy again before the next figure
    return total, gate_only


def _overhead(prom: Prometheus, workdir: Path, seconds: int) -> "tuple[float, float]":
    env = dict(os.environ, PYTHONPATH=str(_collections(workdir)))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", GATE_SCRIPT, prom.url, str(seconds), ERROR_RATE_QUERY % {"job": JOB},
                    P99_QUERY % {"job": JOB}], check=True, env=env)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return 100.0 * cpu / wall, after.ru_maxrss / 1024.0


def run(workdir: Path, quick: bool) -> list:
    """Measure detection latency and guard overhead against real Prometheus."""
    app = MetricsApp("app").start()
    app.start_load()
    prom = Prometheus(workdir / "prometheus", [app.address], JOB).start()
    try:
        prom.wait_for(ERROR_RATE_QUERY % {"job": JOB})
        total, gate_only = _detection_runs(app, prom, 2 if quick else 5)
        cpu_share, peak_mb = _overhead(prom, workdir, 5 if quick else 20)
    finally:
        prom.stop()
        app.stop()
    target_s = INTERVAL + 1.0
    return [
        {"name": "detection latency, breach -> rollback start (median of %d)" % len(total),
         "ours_s": statistics.median(total), "baseline": "interval+1s", "baseline_s": target_s, "target": 1.0},
        {"name": "detection latency, worst of %d" % len(total),
         "ours_s": max(total), "baseline": "interval+1s", "baseline_s": target_s, "target": 1.5},
        {"name": "gate latency after Prometheus shows the breach (median)",
         "ours_s": statistics.median(gate_only) if gate_only else float("nan"), "baseline": "interval",
         "baseline_s": INTERVAL, "target": 1.0},
        {"name": "guard CPU share while watching (2 metrics, 1 s)", "value": cpu_share, "unit": "%", "target": 5},
        {"name": "guard peak memory while watching", "value": peak_mb, "unit": "MB", "target": 60},
    ]
