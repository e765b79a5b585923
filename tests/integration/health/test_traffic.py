"""Staged traffic rollback on a real nginx in front of two app instances (stable and canary).

The role's order (stage by stage, a gate between stages, the stop at a failing gate) and its check mode
run through ansible-playbook; what one stage's weights do to nginx (idempotence, a configuration that
fails ``nginx -t`` put back) is the traffic_weights module's, run as Ansible runs it with the arguments
the role passes (``run_task``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

import pytest
from services import MetricsApp, Nginx

pytestmark = pytest.mark.slow

COUNTER = """
import json, sys, urllib.request
url, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
counts = {}
for _ in range(n):
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    counts[body] = counts.get(body, 0) + 1
with open(out, "w") as fh:
    json.dump(counts, fh)
"""


@pytest.fixture
def apps() -> Iterator[dict]:
    started = {name: MetricsApp(name).start() for name in ("stable", "canary")}
    yield started
    for app in started.values():
        app.stop()


@pytest.fixture
def lb(nginx_lb: Nginx, apps: dict) -> Nginx:
    """nginx sending every request to the canary (the release being rolled back)."""
    nginx_lb.upstream_file.parent.mkdir(parents=True, exist_ok=True)
    nginx_lb.upstream_file.write_text(
        f"upstream app {{ server {apps['stable'].address} down; server {apps['canary'].address} weight=1; }}\n")
    return nginx_lb.start()


def weights_args(lb: Nginx, apps: dict, canary_percent: int, **overrides: object) -> dict:
    """The traffic_weights arguments the role's stage passes for role_play()'s variables."""
    return {"path": str(lb.upstream_file), "upstream": "app", "stable": [apps["stable"].address],
            "canary": [apps["canary"].address], "canary_percent": canary_percent, "parameters": [],
            "nginx_binary": lb.binary, "nginx_args": lb.args, "reload_command": [], "pid_file": str(lb.pid_file),
            **overrides}


def role_play(lb: Nginx, apps: dict, tmp_path: Path, **overrides: object) -> list:
    counter = tmp_path / "counter.py"
    counter.write_text(COUNTER)
    hook = tmp_path / "after_stage.yml"
    hook.write_text(json.dumps([{"name": "count which instance answers", "ansible.builtin.command": {"argv": [
        sys.executable, str(counter), f"http://127.0.0.1:{lb.port}/",
        str(tmp_path) + "/stage-{{ rollback_traffic_stage }}.json", "40"]}, "changed_when": False}]))
    variables = {
        "rollback_traffic_upstream_file": str(lb.upstream_file),
        "rollback_traffic_stable": [apps["stable"].address], "rollback_traffic_canary": [apps["canary"].address],
        "rollback_traffic_stages": [50, 0], "rollback_traffic_nginx_binary": lb.binary,
        "rollback_traffic_nginx_args": lb.args, "rollback_traffic_pid_file": str(lb.pid_file),
        "rollback_traffic_after_stage_tasks_file": str(hook),
        "rollback_traffic_gate_metrics": [{"name": "lb-answers", "provider": {
            "type": "http", "url": f"http://127.0.0.1:{lb.port}/"}, "success_condition": "== 200"}],
        "rollback_traffic_gate_interval": 0.2, "rollback_traffic_gate_count": 3,
        **overrides,
    }
    return [{"name": "staged traffic rollback", "hosts": "lb", "gather_facts": False,
             "roles": [{"role": "gitops.rollback.rollback_traffic", "vars": variables}]}]


def test_staged_rollback_moves_real_requests_stage_by_stage(run_playbook, run_task, local_inventory, lb, apps,
                                                            tmp_path) -> None:
    assert lb.hits(20) == {"canary": 20}
    run = run_playbook(role_play(lb, apps, tmp_path), inventory=local_inventory)
    assert run.ok, str(run)
    half = json.loads((tmp_path / "stage-50.json").read_text())
    assert half == {"stable": 20, "canary": 20}, half  # weighted round robin, weights 1:1
    assert json.loads((tmp_path / "stage-0.json").read_text()) == {"stable": 40}
    weights = [e["result"]["weights"] for e in run.results(status="ok") if e["action"].endswith("traffic_weights")]
    assert weights == [{apps["stable"].address: 1, apps["canary"].address: 1},
                       {apps["stable"].address: 1, apps["canary"].address: 0}]
    gates = [e["result"]["verdict"] for e in run.results(status="ok") if e["action"].endswith("health_check")]
    assert gates == ["pass", "pass"]
    assert "down" in lb.upstream_file.read_text()
    upstream = lb.upstream_file.read_text()
    _run, again = run_task("gitops.rollback.traffic_weights", weights_args(lb, apps, 0))  # the last stage again
    assert again["status"] == "ok" and not again["changed"], again
    assert lb.upstream_file.read_text() == upstream


def test_failing_gate_stops_at_the_stage(run_playbook, local_inventory, lb, apps, tmp_path) -> None:
    apps["stable"].set(error_rate=1.0)  # the stable instance is broken too: do not go on to 0 %
    run = run_playbook(role_play(lb, apps, tmp_path, rollback_traffic_stages=[50, 0]), inventory=local_inventory)
    assert not run.ok
    assert not (tmp_path / "stage-0.json").exists()
    assert "down" not in lb.upstream_file.read_text()  # the 50 % weights stay in place
    assert "Health gate verdict fail" in run.stdout


def test_config_that_fails_nginx_t_is_put_back(run_task, lb, apps) -> None:
    before = lb.upstream_file.read_text()
    _run, result = run_task("gitops.rollback.traffic_weights", weights_args(lb, apps, 50, parameters=["max_fails=lots"]))
    assert result["status"] == "ignored", result  # the task fails
    assert "nginx -t" in result["msg"] and "was put back" in result["msg"], result["msg"]
    assert lb.upstream_file.read_text() == before
    assert lb.hits(5) == {"canary": 5}


def test_check_mode_changes_nothing(run_playbook, local_inventory, lb, apps, tmp_path) -> None:
    before = lb.upstream_file.read_text()
    run = run_playbook(role_play(lb, apps, tmp_path), inventory=local_inventory, check=True, diff=True)
    assert run.ok, str(run)
    assert lb.upstream_file.read_text() == before
    assert "weight=1" in run.stdout and "down" in run.stdout  # the diff of the planned weights
