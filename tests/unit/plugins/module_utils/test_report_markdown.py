# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The post-mortem draft: facts of the run prefilled, sections to fill in."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.report import analytics as report_analytics
from ansible_collections.gitops.rollback.plugins.module_utils.report import markdown as report_markdown
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.report_records import T0, manual_rollback, sample_records


@pytest.fixture
def analysis():
    return report_analytics.analyze(sample_records(), days=7)


def test_postmortem_is_prefilled(analysis):
    rollbacks, _drills, summary = analysis
    text = report_markdown.render_postmortem(report_analytics.select_run(rollbacks, "r4"), summary)
    assert "# Post-mortem: rollback to v1" in text
    assert "| Trigger | guard |" in text and "| Guard run | g1 |" in text
    assert "error_rate 0.31 > 0.05" in text  # the measurements
    assert "| error_rate | failed | 0.31 meets failure condition '> 0.05' | 0.02, 0.31 |" in text
    assert "breach detected by the health gate" in text
    assert "| h1 | 5.00 s * | 0.25 s |" not in text  # release comes before config
    assert "| h1 | 0.25 s | 3.00 s * |" in text
    assert "## Root cause" in text and "## Action items" in text


def test_a_log_without_rollbacks_says_so():
    summary = report_analytics.analyze([])[2]
    assert "holds no rollback yet (0 records)" in report_markdown.render_postmortem(None, summary)


def test_a_pipe_in_what_the_log_says_does_not_break_the_tables():
    records = manual_rollback("p|1", T0, 2.0, reason="a | b\nc")
    rollbacks, _drills, summary = report_analytics.analyze(records)
    text = report_markdown.render_postmortem(rollbacks[0], summary)
    assert "| Reason | a \\| b c |" in text
