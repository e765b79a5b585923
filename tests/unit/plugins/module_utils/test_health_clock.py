# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the health engine's clock seam: simulated time, queries at the clock's now."""

from __future__ import annotations

import time

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.health.analysis import (
    PASS, SYSTEM_CLOCK, HealthSpecError, MetricSpec, SimulatedClock, clock_from_environment, evaluate,
)
from ansible_collections.gitops.rollback.plugins.module_utils.health.providers import (
    measure, measurer, prometheus_request,
)

PROVIDER = {"type": "prometheus", "address": "http://prom:9090/", "query": "up"}


def test_a_simulated_hour_takes_no_real_time_and_measures_at_every_interval(monkeypatch) -> None:
    def no_real_sleep(seconds: float) -> None:
        raise AssertionError("the simulated clock slept %s s of real time" % seconds)

    monkeypatch.setattr(time, "sleep", no_real_sleep)
    clock = SimulatedClock(1_000_000.0)
    seen = []
    spec = MetricSpec.from_dict({"name": "m", "provider": PROVIDER, "success_condition": "< 1",
                                 "interval": 10, "count": 360})
    result = evaluate([spec], lambda _spec: seen.append(clock.now()) or 0.0, clock=clock.now, sleep=clock.sleep)
    assert result.verdict == PASS
    assert seen == [1_000_000.0 + 10 * k for k in range(360)]
    assert result.finished - result.started == 3590


def test_an_instant_query_asks_for_the_value_at_the_given_time() -> None:
    url, params = prometheus_request(PROVIDER, 1234.5)
    assert url == "http://prom:9090/api/v1/query" and params == {"query": "up", "time": "1234.500"}
    assert prometheus_request(PROVIDER) == ("http://prom:9090/api/v1/query", {"query": "up"})
    _url, ranged = prometheus_request({**PROVIDER, "range": 60, "step": 5}, 1000.0)
    assert (ranged["start"], ranged["end"], ranged["step"]) == ("940.000", "1000.000", "5")


def test_only_a_simulated_clock_changes_the_measure_function() -> None:
    assert measurer(SYSTEM_CLOCK) is measure
    assert measurer(SimulatedClock(5.0)) is not measure


@pytest.mark.parametrize("environ", [{}, {"GITOPS_ROLLBACK_SIMULATED_CLOCK": " "}])
def test_the_system_clock_is_the_default(environ) -> None:
    assert clock_from_environment(environ) is SYSTEM_CLOCK


def test_the_environment_turns_on_a_simulated_clock_and_refuses_garbage() -> None:
    clock = clock_from_environment({"GITOPS_ROLLBACK_SIMULATED_CLOCK": "1700000000"})
    assert isinstance(clock, SimulatedClock) and clock.now() == 1_700_000_000.0
    clock.sleep(30)
    assert clock.now() == 1_700_000_030.0
    with pytest.raises(HealthSpecError, match="epoch time"):
        clock_from_environment({"GITOPS_ROLLBACK_SIMULATED_CLOCK": "yesterday"})
