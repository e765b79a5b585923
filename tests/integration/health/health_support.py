"""What the health tests share with their conftest (import it from here: never from conftest,
whose module name is the same in every test directory)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from services import ERROR_RATE_QUERY, P99_QUERY, ServiceError

JOB = "app"
SCRAPE_INTERVAL = 0.5  # seconds: the first rate over [5s] after two scrapes


def _started(factory: Callable[[], Any]) -> Any:
    """Start a service; a missing Debian package is a failure naming it, never a skip."""
    try:
        return factory()
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)


def gate_metrics(address: str, error_rate: float = 0.1, p99: float = 0.2, job: str = JOB) -> list:
    """The error-rate (critical) and p99-latency (high) metrics of the tests, of the app ``job``."""
    return [
        {"name": "error-rate", "severity": "critical",
         "provider": {"type": "prometheus", "address": address, "query": ERROR_RATE_QUERY % {"job": job}},
         "success_condition": f"result < {error_rate}"},
        {"name": "p99-latency", "severity": "critical",
         "provider": {"type": "prometheus", "address": address, "query": P99_QUERY % {"job": job}},
         "success_condition": f"result < {p99}"},
    ]
