# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus text exposition of the report: families, counts, escaped labels."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.report import analytics as report_analytics
from ansible_collections.gitops.rollback.plugins.module_utils.report import prometheus as report_prometheus
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.report_records import (
    DAY, T0, drill_records, manual_rollback, sample_records,
)


@pytest.fixture
def analysis():
    return report_analytics.analyze(sample_records(), days=7)


def test_prometheus_file_holds_the_counts(analysis):
    text = report_prometheus.render_prometheus(analysis[2])
    samples = report_prometheus.parse_prometheus(text)
    total = "gitops_rollback_rollbacks_total"
    assert samples[(total, (("result", "success"), ("trigger", "manual")))] == 1
    assert samples[(total, (("result", "success"), ("trigger", "guard")))] == 1
    assert samples[(total, (("result", "incomplete"), ("trigger", "tag")))] == 1
    assert samples[(total, (("result", "failed"), ("trigger", "tag")))] == 0  # zeros are present
    assert samples[("gitops_rollback_failures_total", ())] == 1
    assert samples[("gitops_rollback_duration_seconds_count", ())] == 3
    assert samples[("gitops_rollback_duration_seconds_sum", ())] == 36
    assert samples[("gitops_rollback_success_ratio", ())] == pytest.approx(0.6667)
    assert samples[("gitops_rollback_mttr_seconds", ())] == pytest.approx(8.75)
    assert samples[("gitops_rollback_last_timestamp_seconds", ())] == pytest.approx(T0 + 2 * DAY + 31 + 1.5 + 6)
    for line in text.splitlines():  # every sample belongs to a declared family
        if not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            assert "# TYPE %s " % name in text or "# TYPE %s " % name.rsplit("_", 1)[0] in text, line


def test_prometheus_label_values_are_escaped():
    records = manual_rollback("q", T0, 1.0, trigger='say "hi"\\\n')
    text = report_prometheus.render_prometheus(report_analytics.analyze(records)[2])
    assert 'trigger="say \\"hi\\"\\\\\\n"' in text


def test_a_log_without_finished_rollbacks_gives_nan_not_zero():
    text = report_prometheus.render_prometheus(report_analytics.analyze([])[2])
    samples = report_prometheus.parse_prometheus(text)
    assert str(samples[("gitops_rollback_success_ratio", ())]) == "nan"  # unknown, not 0 %
    assert samples[("gitops_rollback_rollbacks_total", (("result", "success"), ("trigger", "manual")))] == 0
    assert "gitops_rollback_layer_rollbacks_total" not in text  # no layer family without layers


def test_the_last_disaster_recovery_drill_gives_its_recovery_point_and_time():
    plain = report_prometheus.render_prometheus(report_analytics.analyze(drill_records("drill-a", T0), days=7)[2])
    assert "drill_rpo_seconds" not in plain  # no drill rebuilt a host
    records = drill_records("drill-a", T0) + drill_records("drill-b", T0 + 500, rounds=("manual", "dr"))
    samples = report_prometheus.parse_prometheus(report_prometheus.render_prometheus(
        report_analytics.analyze(records, days=7)[2]))
    assert samples[("gitops_rollback_drill_rpo_seconds", ())] == 75.5
    assert samples[("gitops_rollback_drill_rto_seconds", ())] == 14.25
    assert samples[("gitops_rollback_drill_rollbacks_total", (("result", "success"),))] == 4
