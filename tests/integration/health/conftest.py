"""Fixtures of the health tests: a metrics app under load, Debian's prometheus and nginx, a local host."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from services import (  # noqa: E402
    ERROR_RATE_QUERY, P99_QUERY, MetricsApp, Nginx, Prometheus, ServiceError,
)

JOB = "app"


def _started(factory: Callable[[], Any]) -> Any:
    """Start a service; a missing Debian package is a failure naming it, never a skip."""
    try:
        return factory()
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)


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


def gate_metrics(address: str, error_rate: float = 0.1, p99: float = 0.2) -> list:
    """The error-rate (critical) and p99-latency (high) metrics of the tests."""
    return [
        {"name": "error-rate", "severity": "critical",
         "provider": {"type": "prometheus", "address": address, "query": ERROR_RATE_QUERY % {"job": JOB}},
         "success_condition": f"result < {error_rate}"},
        {"name": "p99-latency", "severity": "critical",
         "provider": {"type": "prometheus", "address": address, "query": P99_QUERY % {"job": JOB}},
         "success_condition": f"result < {p99}"},
    ]


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
        "rollback_host_store_path": str(tmp_path / "store"),
    }
