"""Fixtures of the health tests: a metrics app under load, Debian's prometheus and nginx, a local host."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# tests import from health_support, never from conftest
from health_support import JOB, SCRAPE_INTERVAL, _started, gate_metrics  # noqa: E402
from services import ERROR_RATE_QUERY, MetricsApp, Nginx, Prometheus  # noqa: E402

LOAD_PAUSE = 0.1  # seconds between requests of an app's load: ten a second, 50 in the error rate's window


@pytest.fixture(scope="module")
def apps(request: pytest.FixtureRequest) -> Iterator[Dict[str, MetricsApp]]:
    """The module's metrics apps, started once: its ``METRICS_APPS`` (job name -> ``error_rate``,
    ``latency``, ``load``; default: one healthy app ``app`` under load). Each app is set once and never
    changed, so tests that share one read it only; a test that changes an app has one of its own."""
    wanted = getattr(request.module, "METRICS_APPS", {JOB: {}})
    started: Dict[str, MetricsApp] = {}
    try:
        for name, settings in wanted.items():
            app = started[name] = MetricsApp(name).start()
            app.set(error_rate=settings.get("error_rate", 0.0), latency=settings.get("latency", 0.0))
            if settings.get("load", True):
                app.start_load(threads=1, pause=LOAD_PAUSE)
        yield started
    finally:
        for app in started.values():
            app.stop()


@pytest.fixture(scope="module")
def metrics_app(apps: Dict[str, MetricsApp]) -> MetricsApp:
    """The healthy app (no errors, no added latency) under a steady load: read it, never change it."""
    return apps[JOB]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, apps: Dict[str, MetricsApp]) -> Iterator[Prometheus]:
    """One Debian prometheus per module scraping each app (its own job) every 0.5 s, with data for the
    error-rate query of every app under load."""
    workdir = tmp_path_factory.mktemp("prometheus")
    server = _started(lambda: Prometheus(workdir, [], jobs={name: [app.address] for name, app in apps.items()},
                                         scrape_interval=SCRAPE_INTERVAL).start())
    try:
        for name, app in apps.items():
            if app.under_load:
                server.wait_for(ERROR_RATE_QUERY % {"job": name}, poll=0.05)
            else:  # an idle app's error rate is 0/0, never finite: wait for the two scrapes a rate needs
                server.wait_for('count_over_time(up{job="%s"}[5s])' % name, lambda count: count >= 2, poll=0.05)
        yield server
    finally:
        server.stop()


@pytest.fixture
def nginx_lb(tmp_path: Path) -> Iterator[Nginx]:
    """Debian's nginx (own prefix, config, pid) in front of nothing yet: the test writes the upstream."""
    server = Nginx(tmp_path / "nginx")
    yield server
    server.stop()


@pytest.fixture
def local_inventory(tmp_path: Path) -> Path:
    """An inventory with one host, ``lb``, reached through the local connection."""
    path = tmp_path / "local.yml"
    path.write_text(json.dumps({"all": {"hosts": {"lb": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    return path


@pytest.fixture
def guard_vars(tmp_path: Path, prometheus: Prometheus) -> Dict[str, Any]:
    """Extra vars of a fast guard (a measurement per scrape, an operator's decision awaited 1 s) with its state,
    audit log and decision file in tmp."""
    return {
        "guard_metrics": gate_metrics(prometheus.url),
        "guard_interval": SCRAPE_INTERVAL, "guard_count": 4,
        "guard_rollback_role": "gitops.rollback.rollback_host",
        "guard_cooldown_path": str(tmp_path / "state" / "cooldown.json"),
        "guard_audit_log_path": str(tmp_path / "state" / "audit.jsonl"),
        "guard_decision_file": str(tmp_path / "state" / "decision"),
        "guard_decision_timeout": 1,
        "gitops_rollback_store_path": str(tmp_path / "store"),
    }
