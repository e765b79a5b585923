# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the health verdict: measurement outcomes, Argo-style limits, severities, weights."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.health.analysis import (
    ERROR, FAIL, FAILED, INCONCLUSIVE, PASS, SUCCESSFUL, HealthSpecError, MeasurementError, MetricSpec,
    NoData, classify, evaluate, judge_metric, measure_once, parse_condition,
)
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import UnsafePathError
from ansible_collections.gitops.rollback.plugins.module_utils.health.cooldown import acquire
from ansible_collections.gitops.rollback.plugins.module_utils.health.options import build_specs, gate_params
from ansible_collections.gitops.rollback.plugins.module_utils.health.providers import (
    json_value, measure_command, prometheus_values,
)


class FakeClock:
    """Time that advances only when slept."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def spec(name="m", success="< 0.05", failure=None, **kw) -> MetricSpec:
    raw = {"name": name, "provider": {"type": "command"}, "success_condition": success,
           "failure_condition": failure, "interval": 1, "count": 3, **kw}
    return MetricSpec.from_dict(raw)


def scripted(values: dict):
    """A provider answering each metric's values in order (exceptions are raised)."""
    iters = {name: iter(seq) for name, seq in values.items()}

    def measure(metric: MetricSpec) -> float:
        value = next(iters[metric.name])
        if isinstance(value, Exception):
            raise value
        return value

    return measure


def run(specs, values, **kw):
    clock = FakeClock()
    return evaluate(specs, scripted(values), clock=clock.time, sleep=clock.sleep, **kw)


@pytest.mark.parametrize("text,value,holds", [
    ("result < 0.05", 0.01, True), ("< 0.05", 0.05, False), ("result >= 0.99", 0.99, True),
    ("==200", 200.0, True), ("result != 0", 0.0, False), ("> 1e-3", 0.01, True),
])
def test_conditions(text, value, holds):
    assert parse_condition(text, "m").holds(value) is holds


@pytest.mark.parametrize("text", ["result ~ 3", "result < abc", "__import__('os')", "result < 1 or 1"])
def test_bad_conditions_are_refused(text):
    with pytest.raises(HealthSpecError, match="not understood"):
        parse_condition(text, "m")


def test_spec_needs_a_condition_and_sane_limits():
    with pytest.raises(HealthSpecError, match="success_condition or failure_condition"):
        spec(success=None)
    with pytest.raises(HealthSpecError, match="severity"):
        spec(severity="urgent")


def test_classify_like_argo():
    assert classify(spec(), 0.01) == SUCCESSFUL
    assert classify(spec(), 0.2) == FAILED  # only a success condition: missing it fails
    assert classify(spec(success=None, failure="> 0.1"), 0.05) == SUCCESSFUL
    both = spec(success="< 0.05", failure="> 0.1")
    assert classify(both, 0.2) == FAILED and classify(both, 0.07) == INCONCLUSIVE


def test_no_data_is_inconclusive_never_pass():
    result = run([spec()], {"m": [NoData("empty"), NoData("empty"), NoData("empty")]}, )
    assert result.verdict == INCONCLUSIVE
    assert measure_once(spec(), lambda _: math.nan).outcome == INCONCLUSIVE


def test_no_data_within_the_inconclusive_limit_still_never_passes():
    result = run([spec(inconclusive_limit=5)], {"m": [NoData("x")] * 3})
    assert result.verdict == INCONCLUSIVE and "no measurement had data" in result.reason


def test_unreachable_provider_counts_against_the_consecutive_error_limit():
    down = MeasurementError("connection refused")
    result = run([spec(count=5, consecutive_error_limit=2)], {"m": [0.0, down, down, down, 0.0]})
    assert result.verdict == ERROR
    assert [m["outcome"] for m in result.metrics[0]["measurements"]] == [SUCCESSFUL, ERROR, ERROR, ERROR]


def test_errors_below_the_limit_do_not_fail_but_all_errors_never_pass():
    down = MeasurementError("refused")
    assert run([spec(count=3, consecutive_error_limit=1)], {"m": [down, 0.0, 0.0]}).verdict == PASS
    assert run([spec(count=2, consecutive_error_limit=4)], {"m": [down, down]}).verdict == ERROR


def test_failure_limit():
    assert run([spec(count=3, failure_limit=1)], {"m": [0.2, 0.0, 0.0]}).verdict == PASS
    result = run([spec(count=5, failure_limit=1)], {"m": [0.2, 0.0, 0.2, 0.0, 0.0]})
    assert result.verdict == FAIL and len(result.metrics[0]["measurements"]) == 3  # stops at the breach


def test_critical_failure_rolls_back_at_once():
    specs = [spec("a", count=10, severity="critical"), spec("b", count=10)]
    result = run(specs, {"a": [0.0, 0.5] + [0.0] * 8, "b": [0.0] * 10})
    assert result.verdict == FAIL and "critical" in result.reason
    assert result.detected - result.started <= 1.0  # within one interval of the breach


def test_two_high_failures_fail_one_does_not_with_threshold():
    specs = [spec("a", count=1, severity="high"), spec("b", count=1, severity="high"), spec("c", count=1)]
    two = run(specs, {"a": [0.5], "b": [0.5], "c": [0.0]}, threshold=0)
    assert two.verdict == FAIL and "high" in two.reason
    one = run(specs, {"a": [0.5], "b": [0.0], "c": [0.0]}, threshold=60)
    assert one.verdict == PASS and round(one.health, 1) == 66.7


def test_weighted_health_against_threshold():
    specs = [spec("a", count=1, weight=3), spec("b", count=1, weight=1)]
    assert run(specs, {"a": [0.0], "b": [0.9]}, threshold=75).verdict == PASS
    failed = run(specs, {"a": [0.9], "b": [0.0]}, threshold=75)
    # b is never measured: with a failed, health can reach 25 % at best, below 75 %: stop at once
    assert failed.verdict == FAIL and "25.0%" in failed.reason
    assert failed.metrics[1]["measurements"] == []


def test_failure_beats_error_and_error_beats_inconclusive():
    down = MeasurementError("refused")
    specs = [spec("a", count=1, consecutive_error_limit=0), spec("b", count=1), spec("c", count=1)]
    assert run(specs, {"a": [down], "b": [0.9], "c": [NoData("x")]}).verdict == FAIL
    assert run(specs, {"a": [down], "b": [0.0], "c": [NoData("x")]}).verdict == ERROR
    assert run(specs[1:], {"b": [0.0], "c": [NoData("x")]}).verdict == INCONCLUSIVE


def test_every_measurement_is_returned_with_time_value_outcome():
    result = run([spec(count=3)], {"m": [0.01, 0.02, 0.03]}).as_dict()
    measurements = result["metrics"][0]["measurements"]
    assert [m["value"] for m in measurements] == [0.01, 0.02, 0.03]
    assert [m["timestamp"] for m in measurements] == [1000.0, 1001.0, 1002.0]
    assert all(m["outcome"] == SUCCESSFUL and m["time"].endswith("Z") for m in measurements)
    assert result["verdict"] == PASS and result["detected"] is None


def test_initial_delay_and_interval():
    clock = FakeClock()
    times = []

    def measure(_metric):
        times.append(clock.now)
        return 0.0

    evaluate([spec(count=3, interval=2, initial_delay=5)], measure, clock=clock.time, sleep=clock.sleep)
    assert times == [1005.0, 1007.0, 1009.0]


def test_judge_metric_running_until_count():
    assert judge_metric(spec(count=3), [])[0] == "running"


def test_prometheus_values_drop_nan_and_read_all_result_types():
    vector = {"resultType": "vector", "result": [{"value": [1, "0.5"]}, {"value": [1, "NaN"]}]}
    matrix = {"resultType": "matrix", "result": [{"values": [[1, "1"], [2, "+Inf"], [3, "2"]]}]}
    assert prometheus_values(vector) == [0.5]
    assert prometheus_values(matrix) == [1.0, 2.0]
    assert prometheus_values({"resultType": "scalar", "result": [1, "3"]}) == [3.0]
    assert prometheus_values({"resultType": "vector", "result": []}) == []


def test_json_value():
    body = json.dumps({"data": [{"ratio": 0.25}], "none": None}).encode()
    assert json_value(body, "data.0.ratio", "x") == 0.25
    with pytest.raises(NoData):
        json_value(body, "data.1.ratio", "x")
    with pytest.raises(NoData):
        json_value(body, "none", "x")
    with pytest.raises(MeasurementError):
        json_value(b"<html>", "a", "x")


def test_command_provider():
    assert measure_command({"argv": ["echo", "value 42.5"]}) == 42.5
    assert measure_command({"argv": ["false"], "value": "rc"}) == 1.0
    with pytest.raises(MeasurementError):
        measure_command({"argv": ["false"]})
    with pytest.raises(NoData):
        measure_command({"argv": ["true"]})


def test_cooldown_refuses_a_second_rollback_and_says_when(tmp_path):
    path = str(tmp_path / "state" / "cooldown.json")
    first = acquire(path, "prod::web", 600, record=True, now=1000.0)
    assert first.allowed and first.recorded
    second = acquire(path, "prod::web", 600, record=True, now=1300.0)
    assert not second.allowed and not second.recorded and second.next_allowed == 1600.0
    assert second.as_dict(1300.0)["seconds_left"] == 300.0
    assert acquire(path, "prod::db", 600, record=True, now=1300.0).allowed  # another key
    assert acquire(path, "prod::web", 600, record=True, now=1600.0).allowed  # after the cooldown


def test_cooldown_check_only_creates_nothing(tmp_path):
    path = tmp_path / "none" / "cooldown.json"
    assert acquire(str(path), "k", 60, record=False, now=time.time()).allowed
    assert not path.parent.exists()


def test_cooldown_follows_no_link_planted_beside_its_state(tmp_path):
    """A link planted at the lock or the state file is refused; its target is neither created nor read."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    os.symlink(str(elsewhere), str(state / "cooldown.json.lock"))
    with pytest.raises(UnsafePathError, match="symbolic link"):
        acquire(str(state / "cooldown.json"), "k", 60, record=True, now=1000.0)
    assert not os.path.lexists(str(elsewhere))
    os.unlink(str(state / "cooldown.json.lock"))
    (tmp_path / "secret.json").write_text('{"last_rollback": {"k": {"time": 999.0}}}')
    os.symlink(str(tmp_path / "secret.json"), str(state / "cooldown.json"))
    with pytest.raises(UnsafePathError, match="symbolic link"):
        acquire(str(state / "cooldown.json"), "k", 60, record=False, now=1000.0)


def test_cooldown_refuses_a_state_directory_other_users_can_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafePathError, match="Refusing the cooldown state directory"):
        acquire(str(shared / "cooldown.json"), "k", 60, record=True, now=1000.0)
    assert os.listdir(str(shared)) == []


def test_a_gate_given_as_one_dict_is_checked_and_completed_as_health_checks_options() -> None:
    gate = gate_params({"metrics": [{"name": "errors", "success_condition": "result < 0.5",
                                     "provider": {"type": "http", "url": "http://shop/health", "value": "json"}}],
                        "interval": "2.0", "count": "60"})  # as Jinja renders them
    assert (gate["interval"], gate["count"], gate["health_threshold"]) == (2.0, 60, 100)
    assert [(s.interval, s.count) for s in build_specs(gate)] == [(2.0, 60)]
    with pytest.raises(HealthSpecError, match="gate: .*interval"):
        gate_params({"metrics": [], "interval": "soon"})
