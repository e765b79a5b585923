"""The filter stop_clock: a layer's seconds, noted when its clock stops."""

from __future__ import annotations

import time

from ansible_collections.gitops.rollback.plugins.filter.rollback_outcome import stop_clock


def test_the_running_layer_gets_its_seconds_and_the_others_stay():
    timings = stop_clock({"release": 1.5}, "config", time.time() - 2)
    assert timings["release"] == 1.5
    assert 2 <= timings["config"] < 60


def test_without_a_running_layer_nothing_changes():
    assert stop_clock({"release": 1.5}, "", 0) == {"release": 1.5}
