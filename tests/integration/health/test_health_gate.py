"""health_check against a real Prometheus scraping the test app: the module as Ansible runs it on the
host (``run_task``: its arguments as JSON, no controller); the guard and batch tests run it through
the playbooks."""

from __future__ import annotations

import pytest
from health_support import JOB, SCRAPE_INTERVAL, gate_metrics

pytestmark = [pytest.mark.slow, pytest.mark.deep]
# One prometheus scrapes an app per behaviour, each set once: the tests only read them (conftest.py, MetricsStack).
METRICS_APPS = {JOB: {}, "errors": {"error_rate": 0.5}, "slow": {"latency": 0.3}, "idle": {"load": False}}


def gate(run_task, metrics: list, count: int = 4, interval: float = 1, **options: object) -> dict:
    """The health_check result (``status`` ``ignored`` when the module failed)."""
    args = {"metrics": metrics, "interval": interval, "count": count, **options}
    return run_task("gitops.rollback.health_check", args)[1]


def test_healthy_release_passes(run_task, prometheus) -> None:
    # a measurement per scrape: each of the four sees a new sample
    result = gate(run_task, gate_metrics(prometheus.url), interval=SCRAPE_INTERVAL)
    assert result["status"] == "ok" and result["verdict"] == "pass", result
    assert [len(m["measurements"]) for m in result["metrics"]] == [4, 4]
    assert all(m["outcome"] == "successful" and m["value"] is not None
               for metric in result["metrics"] for m in metric["measurements"])


def test_error_rate_above_threshold_fails_within_an_interval(run_task, prometheus) -> None:
    result = gate(run_task, gate_metrics(prometheus.url, job="errors"), count=10)
    assert result["verdict"] == "fail" and "error-rate" in result["reason"], result
    error_rate = result["metrics"][0]
    assert error_rate["phase"] == "failed"
    assert error_rate["measurements"][-1]["value"] > 0.1
    # critical metric: the evaluation stops at the first failed measurement, not after 10
    assert result["detection_seconds"] < 1.5, result


def test_p99_latency_above_threshold_fails(run_task, prometheus) -> None:
    result = gate(run_task, gate_metrics(prometheus.url, job="slow"), count=15)
    assert result["verdict"] == "fail" and "p99-latency" in result["reason"], result
    p99 = result["metrics"][1]
    assert p99["phase"] == "failed" and p99["measurements"][-1]["value"] >= 0.2, p99


def test_prometheus_stopped_mid_evaluation_is_error_not_pass(run_task, own_prometheus) -> None:
    # stop prometheus right after the gate's first measurement of error-rate (seen in its query log); the gate
    # ends at the third error in a row: count 8 leaves the stop 2.5 s before five successes could pass it
    stopper = own_prometheus.stop_after_queries("http_requests_total", 1)
    result = gate(run_task, gate_metrics(own_prometheus.url), count=8, interval=SCRAPE_INTERVAL,
                  consecutive_error_limit=2, fail_on=["fail", "error", "inconclusive"])
    stopper.join()
    assert result["status"] == "ignored", result  # the task fails
    assert result["verdict"] == "error", result
    error_rate = result["metrics"][0]
    outcomes = [m["outcome"] for m in error_rate["measurements"]]
    # measured while prometheus answered, then in error from the third error in a row on
    assert error_rate["phase"] == "error", error_rate
    assert outcomes[0] == "successful" and outcomes == ["successful"] * (len(outcomes) - 3) + ["error"] * 3, outcomes
    assert "could not be reached" in error_rate["measurements"][-1]["message"]
    assert result["msg"].startswith("Health gate verdict error"), result["msg"]


def test_no_data_is_inconclusive(run_task, prometheus) -> None:
    # the idle app gets no requests: its error rate is 0/0, a flat metric with no data
    result = gate(run_task, gate_metrics(prometheus.url, job="idle")[:1], count=3)
    assert result["verdict"] == "inconclusive", result
    assert result["metrics"][0]["measurements"][0]["value"] is None


def test_a_selector_matching_nothing_is_inconclusive(run_task, prometheus) -> None:
    metrics = [{"name": "typo", "provider": {"type": "prometheus", "address": prometheus.url,
                                             "query": 'sum(rate(http_requests_total{job="nope"}[5s]))'},
                "success_condition": "result < 1"}]
    result = gate(run_task, metrics, count=2)
    assert result["verdict"] == "inconclusive" and "no data" in result["metrics"][0]["measurements"][0]["message"]


def test_http_and_command_providers(run_task, metrics_app) -> None:
    metrics = [
        {"name": "status", "provider": {"type": "http", "url": f"http://{metrics_app.address}/"},
         "success_condition": "== 200"},
        {"name": "probe", "provider": {"type": "command", "argv": ["echo", "7"]}, "failure_condition": "> 5"},
    ]
    result = gate(run_task, metrics, count=1)
    assert result["verdict"] == "fail" and "probe" in result["reason"], result
    assert result["metrics"][0]["measurements"][0]["value"] == 200.0


def test_bad_condition_is_refused_with_advice(run_task) -> None:
    metrics = [{"name": "x", "provider": {"type": "command", "argv": ["true"]}, "success_condition": "result ~ 3"}]
    result = gate(run_task, metrics, count=1)
    assert result["status"] == "ignored"
    assert "not understood" in str(result["msg"])
