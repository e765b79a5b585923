"""Fixtures of the health tests: a metrics app under load, Debian's prometheus and nginx, a local host."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from health_support import JOB, _started, gate_metrics  # noqa: E402  (tests import from there, never from conftest)
from services import ERROR_RATE_QUERY, MetricsApp, Nginx, Prometheus  # noqa: E402


@pytest.fixture
def metrics_app() -> Iterator[MetricsApp]:
    """The app (healthy: no errors, no added latency) under a steady load."""
    app = MetricsApp("app").start()
    app.start_load()
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def prometheus(tmp_path: Path, metrics_app: MetricsApp) -> Iterator[Prometheus]:
    """Debian's prometheus scraping the app every second, with data for the error-rate query."""
    server = _started(lambda: Prometheus(tmp_path / "prometheus", [metrics_app.address], JOB).start())
    try:
        server.wait_for(ERROR_RATE_QUERY % {"job": JOB})
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
    """Extra vars of a fast guard (1 s interval) with its state, audit log and decision file in tmp."""
    return {
        "guard_metrics": gate_metrics(prometheus.url),
        "guard_interval": 1, "guard_count": 4,
        "guard_rollback_role": "gitops.rollback.rollback_host",
        "guard_cooldown_path": str(tmp_path / "state" / "cooldown.json"),
        "guard_audit_log_path": str(tmp_path / "state" / "audit.jsonl"),
        "guard_decision_file": str(tmp_path / "state" / "decision"),
        "guard_decision_timeout": 2,
        "gitops_rollback_store_path": str(tmp_path / "store"),
    }
