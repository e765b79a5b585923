# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTML report: self-contained, valid inline SVG, what the log says escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.report import analytics as report_analytics
from ansible_collections.gitops.rollback.plugins.module_utils.report import html as report_html
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.report_records import (
    T0, drill_records, find_all, manual_rollback, sample_records,
)


@pytest.fixture
def analysis():
    return report_analytics.analyze(sample_records(), days=7)


def test_html_is_self_contained_and_its_svg_parses(analysis):
    rollbacks, _drills, summary = analysis
    page = report_html.render_html(rollbacks, summary, source="/x/audit.jsonl")
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    svgs = [page[m:page.index("</svg>", m) + 6] for m in find_all(page, "<svg ")]
    assert len(svgs) >= 5  # trigger, layer, reason, trend, timelines
    for svg in svgs:
        ET.fromstring(svg)
    assert 'id="kpi-success-rate"><b>66.7 %</b>' in page


def test_html_escapes_what_the_log_says():
    records = manual_rollback("<r>", T0, 1.0, reason="<script>alert(1)</script>")
    page = report_html.render_html(*report_analytics.analyze(records)[::2])
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_html_draws_only_the_latest_timelines(analysis):
    rollbacks, _drills, summary = analysis
    page = report_html.render_html(rollbacks, summary, max_runs=2)
    assert "<h2>Timelines (latest 2)</h2>" in page
    assert page.count("<details") == 2 and "<details open" in page


def test_a_drill_that_rebuilt_a_host_shows_its_recovery_point_and_time():
    records = drill_records("drill-a", T0) + drill_records("drill-b", T0 + 500, rounds=("manual", "dr"))
    page = report_html.render_html(*report_analytics.analyze(records, days=7)[::2])
    drills = page[page.index('<div id="drills"'):]
    assert drills.count("RPO 1 min 15 s, RTO 14.2 s") == 1 and "drill-b-dr" in drills
    row_a = drills[drills.index("drill-a"):drills.index("</tr>", drills.index("drill-a"))]
    assert "RPO" not in row_a  # no dr round
