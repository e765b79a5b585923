"""health_check through ansible-playbook against a real Prometheus scraping the test app."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from health_support import JOB, gate_metrics
from services import ERROR_RATE_QUERY

pytestmark = pytest.mark.slow


def gate_play(metrics: list, count: int = 4, **options: object) -> list:
    args = {"metrics": metrics, "interval": 1, "count": count, **options}
    return [{"name": "gate", "hosts": "lb", "gather_facts": False,
             "tasks": [{"name": "gate", "gitops.rollback.health_check": args, "register": "gate"}]}]


def test_healthy_release_passes(run_playbook, local_inventory: Path, prometheus) -> None:
    run = run_playbook(gate_play(gate_metrics(prometheus.url)), inventory=local_inventory)
    assert run.ok, run
    gate = run.result("gate", "lb")
    assert gate["verdict"] == "pass", gate
    assert [len(m["measurements"]) for m in gate["metrics"]] == [4, 4]
    assert all(m["outcome"] == "successful" and m["value"] is not None
               for metric in gate["metrics"] for m in metric["measurements"])


def test_error_rate_above_threshold_fails_within_an_interval(run_playbook, local_inventory, prometheus,
                                                             metrics_app) -> None:
    metrics_app.set(error_rate=0.5)
    prometheus.wait_for(ERROR_RATE_QUERY % {"job": JOB}, lambda value: value > 0.1)
    run = run_playbook(gate_play(gate_metrics(prometheus.url), count=10), inventory=local_inventory)
    gate = run.result("gate", "lb")
    assert gate["verdict"] == "fail" and "error-rate" in gate["reason"], gate
    error_rate = gate["metrics"][0]
    assert error_rate["phase"] == "failed"
    assert error_rate["measurements"][-1]["value"] > 0.1
    # critical metric: the evaluation stops at the first failed measurement, not after 10
    assert gate["detection_seconds"] < 1.5, gate


def test_p99_latency_above_threshold_fails(run_playbook, local_inventory, prometheus, metrics_app) -> None:
    metrics_app.set(latency=0.3)
    run = run_playbook(gate_play(gate_metrics(prometheus.url), count=15), inventory=local_inventory)
    gate = run.result("gate", "lb")
    assert gate["verdict"] == "fail", gate
    p99 = gate["metrics"][1]
    assert p99["phase"] == "failed" and p99["measurements"][-1]["value"] >= 0.2, p99


def test_prometheus_stopped_mid_evaluation_is_error_not_pass(run_playbook, local_inventory, prometheus) -> None:
    # stop prometheus right after the gate's first measurement of error-rate (seen in its query log)
    stopper = prometheus.stop_after_queries("http_requests_total", 1)
    run = run_playbook(gate_play(gate_metrics(prometheus.url), count=6, consecutive_error_limit=2,
                                 fail_on=["fail", "error", "inconclusive"]), inventory=local_inventory)
    stopper.join()
    assert not run.ok, run
    gate = run.result("gate", "lb")
    assert gate["verdict"] == "error", gate
    outcomes = [m["outcome"] for m in gate["metrics"][0]["measurements"]]
    assert outcomes[0] == "successful" and outcomes[-3:] == ["error"] * 3, outcomes
    assert "could not be reached" in gate["metrics"][0]["measurements"][-1]["message"]
    assert "Health gate verdict error" in run.stdout


def test_no_data_is_inconclusive(run_playbook, local_inventory, prometheus, metrics_app) -> None:
    metrics_app.stop_load()  # no requests: the error rate is 0/0, a flat metric with no data
    time.sleep(6)
    run = run_playbook(gate_play(gate_metrics(prometheus.url)[:1], count=3), inventory=local_inventory)
    gate = run.result("gate", "lb")
    assert gate["verdict"] == "inconclusive", gate
    assert gate["metrics"][0]["measurements"][0]["value"] is None


def test_a_selector_matching_nothing_is_inconclusive(run_playbook, local_inventory, prometheus) -> None:
    metrics = [{"name": "typo", "provider": {"type": "prometheus", "address": prometheus.url,
                                             "query": 'sum(rate(http_requests_total{job="nope"}[5s]))'},
                "success_condition": "result < 1"}]
    gate = run_playbook(gate_play(metrics, count=2), inventory=local_inventory).result("gate", "lb")
    assert gate["verdict"] == "inconclusive" and "no data" in gate["metrics"][0]["measurements"][0]["message"]


def test_http_and_command_providers(run_playbook, local_inventory, metrics_app, tmp_path) -> None:
    metrics = [
        {"name": "status", "provider": {"type": "http", "url": f"http://{metrics_app.address}/"},
         "success_condition": "== 200"},
        {"name": "probe", "provider": {"type": "command", "argv": ["echo", "7"]}, "failure_condition": "> 5"},
    ]
    gate = run_playbook(gate_play(metrics, count=1), inventory=local_inventory).result("gate", "lb")
    assert gate["verdict"] == "fail" and "probe" in gate["reason"], gate
    assert gate["metrics"][0]["measurements"][0]["value"] == 200.0


def test_bad_condition_is_refused_with_advice(run_playbook, local_inventory) -> None:
    metrics = [{"name": "x", "provider": {"type": "command", "argv": ["true"]}, "success_condition": "result ~ 3"}]
    run = run_playbook(gate_play(metrics, count=1), inventory=local_inventory)
    assert not run.ok
    assert "not understood" in str(run.results("gate", "lb")[0]["result"]["msg"])
