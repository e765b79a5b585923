# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inline SVG charts: the daily trend."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.report import analytics as report_analytics
from ansible_collections.gitops.rollback.plugins.module_utils.report import runs as report_runs
from ansible_collections.gitops.rollback.plugins.module_utils.report import svg as report_svg
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.report_records import find_all, sample_records


@pytest.fixture
def analysis():
    return report_analytics.analyze(sample_records(), days=7)


def test_the_trend_chart_draws_a_bar_per_day(analysis):
    daily = analysis[2]["daily"]
    svg = report_svg.svg_trend(daily)
    ET.fromstring(svg)
    assert "<polyline" not in svg
    bars = [m for m in find_all(svg, "<rect ") if 'class="bar ' in svg[m:m + 200]]
    assert len(bars) == sum(1 for day in daily for o in report_runs.OUTCOMES if day[o])
    assert 'class="bar bar-failed"><title>2026-09-22: 1 failed</title>' in svg


def test_bar_chart_without_rows_says_so_and_parses():
    svg = report_svg.svg_bar_chart([], "Rollbacks by layer")
    ET.fromstring(svg)
    assert "no rollbacks" in svg


def test_timeline_draws_one_event_per_record(analysis):
    rollback = [r for r in analysis[0] if r.run_id == "r4"][0]
    svg = report_svg.svg_timeline(rollback)
    ET.fromstring(svg)
    assert len(list(find_all(svg, "<circle "))) == len(rollback.timeline())
