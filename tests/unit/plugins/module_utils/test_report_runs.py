# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run of the audit log as the report reads it: times, outcome, duration, layers, causes."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.report import runs as report_runs
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.report_records import T0, manual_rollback


def test_time_parsing_accepts_epochs_and_iso_texts():
    assert report_runs.parse_time("2026-11-21T22:30:00Z") == report_runs.parse_time("2026-11-21T22:30:00+00:00")
    assert report_runs.parse_time(12.5) == 12.5 and report_runs.parse_time("12.5") == 12.5
    assert report_runs.parse_time("yesterday") is None and report_runs.parse_time(True) is None


def test_a_run_reads_its_outcome_duration_layers_and_reason():
    run = report_runs.Rollback("r1", "rollback", manual_rollback("r1", T0, 12.0, reason="bad config"))
    assert run.outcome == "success" and run.duration == pytest.approx(12.0)
    assert run.layer_names == ["release", "config"]
    shown = run.as_dict()
    assert shown["run_id"] == "r1" and shown["causes"] == ["bad config"] and shown["hosts"] == ["h1", "h2"]


def test_a_failed_run_is_counted_under_the_problem_it_names():
    run = report_runs.Rollback("r2", "rollback", manual_rollback("r2", T0, 5.0, outcome="failed", reason="bad config"))
    assert run.outcome == "failed" and run.problems() == ["disk full"]
    assert report_runs.causes(run) == ["disk full"], "a failure's own problem comes before the reason it ran for"


@pytest.mark.parametrize("text, cause", [
    ("health gate fail: error_rate failed: 0.42", "failed health gate"),
    ("object 1a2b does not hash to its name", "corrupted object"),
    ("No space left on device", "disk full"),
    ("the moon is blue", None),
])
def test_classify_names_the_cause_a_text_gives(text, cause):
    assert report_runs.classify(text) == cause


def test_an_unreadable_log_is_a_report_error(tmp_path):
    with pytest.raises(report_runs.ReportError, match="does not exist"):
        report_runs.read_log(str(tmp_path / "nope.jsonl"))
