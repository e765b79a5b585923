# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollback analytics (outcomes, success rate, durations, MTTR from the guard's detection, breakdowns) and the report files."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.report import analytics as report_analytics
from ansible_collections.gitops.rollback.plugins.module_utils.report import runs as report_runs
from ansible_collections.gitops.rollback.plugins.module_utils.report import html as report_html
from ansible_collections.gitops.rollback.plugins.module_utils.report import prometheus as report_prometheus
from ansible_collections.gitops.rollback.plugins.module_utils.report import files as report
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.report_records import DAY, T0, drill_records, manual_rollback, rec, sample_records


@pytest.fixture
def records():
    return sample_records()


@pytest.fixture
def analysis(records):
    return report_analytics.analyze(records, days=7)


def by_run(rollbacks):
    return {r.run_id: r for r in rollbacks}


def test_outcomes_follow_the_final_events(analysis):
    rollbacks, _drills, _summary = analysis
    outcomes = {run_id: r.outcome for run_id, r in by_run(rollbacks).items()}
    assert outcomes == {"r1": "success", "r2": "failed", "r3": "refused", "r4": "success", "p1": "plan",
                        "r5": "incomplete"}


def test_counts_and_success_rate_leave_out_plans(analysis):
    summary = analysis[2]
    assert summary["rollbacks"] == {"total": 5, "success": 2, "failed": 1, "refused": 1, "incomplete": 1}
    assert summary["plans"] == 1
    assert summary["success_rate"] == pytest.approx(2 / 3, abs=1e-4)


def test_durations_are_those_of_finished_rollbacks(analysis):
    duration = analysis[2]["duration"]
    assert duration["count"] == 3
    assert duration["avg"] == pytest.approx((10 + 20 + 6) / 3, abs=1e-3)
    assert (duration["min"], duration["max"]) == (6.0, 20.0)
    assert duration["quantiles"]["0.5"] == 10.0


def test_mttr_counts_from_the_guards_detection(analysis):
    rollbacks, _drills, summary = analysis
    guarded = by_run(rollbacks)["r4"]
    assert guarded.guard_run_id == "g1"
    # detected at T0+2d+30; rollback r4 started 1.5 s later and took 6 s
    assert guarded.time_to_recover == pytest.approx(7.5, abs=1e-3)
    assert guarded.time_to_detect == 30.0
    assert by_run(rollbacks)["r1"].time_to_recover == pytest.approx(10.0)
    assert summary["mttr_seconds"] == pytest.approx((10.0 + 7.5) / 2, abs=1e-3)
    assert summary["mean_time_to_detect_seconds"] == 30.0


def test_a_guard_run_without_its_rollback_run_counts_as_the_rollback():
    records = [rec("started", "g9", T0, "guard", target="v1", measurements={"detected_at": T0 - 4}),
               rec("failed", "g9", T0 + 3, "guard", target="v1", level="emergency")]
    rollbacks, _drills, summary = report_analytics.analyze(records)
    assert [(r.run_id, r.trigger, r.outcome) for r in rollbacks] == [("g9", "guard", "failed")]
    assert summary["rollbacks"]["failed"] == 1


def test_a_dry_run_is_a_plan_whatever_it_found():
    records = [rec("alert", "g7", T0, "guard", dry_run=True), rec("started", "g7", T0 + 1, "guard", dry_run=True),
               rec("started", "d7", T0 + 2, target="v1", trigger="guard", dry_run=True),
               rec("failed", "d7", T0 + 3, target="v1", trigger="guard", dry_run=True),
               rec("refused", "g6", T0 + 4, "guard", reason="cooldown", dry_run=True)]
    rollbacks, _drills, summary = report_analytics.analyze(records)
    assert {r.run_id: r.outcome for r in rollbacks} == {"d7": "plan", "g6": "plan"}
    assert summary["plans"] == 2 and summary["rollbacks"]["total"] == 0


def test_a_guard_refused_by_the_cooldown_is_a_refused_rollback():
    records = [rec("alert", "g8", T0, "guard"), rec("refused", "g8", T0 + 1, "guard", reason="cooldown")]
    summary = report_analytics.analyze(records)[2]
    assert summary["rollbacks"]["refused"] == 1
    assert summary["by_trigger"][0]["name"] == "guard"


def test_breakdowns_by_trigger_reason_and_layer(analysis):
    summary = analysis[2]
    triggers = {row["name"]: (row["total"], row["success"], row["failed"]) for row in summary["by_trigger"]}
    assert triggers == {"manual": (3, 1, 1), "guard": (1, 1, 0), "tag": (1, 0, 0)}
    reasons = {row["name"]: row["total"] for row in summary["by_reason"]}
    # the failed run counts under its failure's problem, the refusal under what the pre-flight found missing
    assert reasons == {"bad config": 1, "disk full": 1, "missing checkpoint or label": 1, "failed health gate": 1,
                       "(no reason given)": 1}
    layers = {row["name"]: row for row in summary["by_layer"]}
    assert list(layers) == ["release", "config"]  # rollback order
    assert layers["config"]["total"] == 3 and layers["config"]["changed"] == 3
    assert layers["config"]["avg_seconds"] == pytest.approx((5 + 10 + 3) / 3, abs=1e-3)


def test_daily_trend_covers_the_window_with_zero_days(analysis):
    daily = analysis[2]["daily"]
    assert len(daily) == 7
    assert daily[-1]["date"] == "2026-09-23"
    assert [d["total"] for d in daily[-3:]] == [1, 2, 2]
    assert sum(d["total"] for d in daily[:-3]) == 0
    assert daily[-2]["failed"] == 1 and daily[-2]["refused"] == 1


def test_missing_fields_and_damaged_lines_do_not_break_the_report(tmp_path):
    log = tmp_path / "audit.jsonl"
    log.write_text('{"event": "started", "run_id": "x", "operation": "rollback"}\nnot json\n[1]\n'
                   '{"event": "completed", "run_id": "x", "operation": "rollback", "time": "2026-11-21T10:00:00Z",'
                   ' "layers": "oops", "result": "free text", "measurements": [1, 2]}\n')
    result = report.write_reports(str(log), html_path=str(tmp_path / "r.html"), prom_path=str(tmp_path / "m.prom"),
                                  postmortem_path=str(tmp_path / "pm.md"))
    assert result["summary"]["rollbacks"]["success"] == 1
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    integrity = result["summary"]["integrity"]
    assert not integrity["ok"]
    assert [(p["line"], p["kind"]) for p in integrity["problems"]] == [(2, "damaged"), (3, "damaged")]
    assert 'line 2 is damaged (not a JSON record): &quot;not json&quot;' in (tmp_path / "r.html").read_text()


def test_a_broken_hash_chain_is_named_in_every_report(tmp_path):
    from ansible_collections.gitops.rollback.plugins.module_utils.controller import audit as _audit

    log = tmp_path / "audit.jsonl"
    for run_id, event in (("r1", "started"), ("r1", "completed"), ("r2", "started"), ("r2", "completed")):
        _audit.append(str(log), _audit.make_record(event, "rollback", run_id, target="v1"))
    paths = dict(html_path=str(tmp_path / "r.html"), prom_path=str(tmp_path / "m.prom"),
                 postmortem_path=str(tmp_path / "pm.md"))
    clean = report.write_reports(str(log), **paths)
    assert clean["summary"]["integrity"]["ok"]
    assert report_prometheus.parse_prometheus((tmp_path / "m.prom").read_text())[("gitops_rollback_audit_log_intact", ())] == 1
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # r1's completed record removed
    broken = report.write_reports(str(log), postmortem_overwrite=True, **paths)
    integrity = broken["summary"]["integrity"]
    assert integrity["first_problem"]["seq"] == 2 and integrity["first_problem"]["kind"] == "missing"
    message = "record #2 missing before line 2 (record #3), after line 1"
    assert integrity["first_problem"]["message"] == message
    assert message in (tmp_path / "r.html").read_text()
    assert message in (tmp_path / "pm.md").read_text()
    metrics = report_prometheus.parse_prometheus((tmp_path / "m.prom").read_text())
    assert metrics[("gitops_rollback_audit_log_intact", ())] == 0
    assert metrics[("gitops_rollback_audit_log_problems", ())] == 1


def test_missing_log_names_the_path_and_the_way_out(tmp_path):
    with pytest.raises(report_runs.ReportError, match="does not exist.*log_path"):
        report.write_reports(str(tmp_path / "nope.jsonl"), prom_path=str(tmp_path / "m.prom"))
    assert not (tmp_path / "m.prom").exists()


def test_unknown_run_id_lists_the_known_ones(analysis):
    with pytest.raises(report_runs.ReportError, match="'zz' is not a rollback.*r4"):
        report_analytics.select_run(analysis[0], "zz")


def test_select_run_defaults_to_the_latest_that_ran_and_accepts_the_guard_id(analysis):
    rollbacks = analysis[0]
    assert report_analytics.select_run(rollbacks).run_id == "r5"
    assert report_analytics.select_run(rollbacks, "g1").run_id == "r4"


def test_files_are_written_once_and_an_edited_draft_is_kept(tmp_path, records):
    log = tmp_path / "audit.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    paths = dict(html_path=str(tmp_path / "out" / "r.html"), prom_path=str(tmp_path / "out" / "m.prom"),
                 postmortem_path=str(tmp_path / "pm-{run_id}.md"))
    planned = report.write_reports(str(log), check=True, **paths)
    assert planned["changed"] and not (tmp_path / "out").exists()
    first = report.write_reports(str(log), **paths)
    assert first["changed"] and (tmp_path / "pm-r5.md").exists()
    assert oct(os.stat(paths["prom_path"]).st_mode & 0o777) == "0o644"
    assert not report.write_reports(str(log), **paths)["changed"]
    (tmp_path / "pm-r5.md").write_text("my notes")
    with open(log, "a") as handle:
        handle.write(json.dumps(rec("completed", "r5", T0 + 2 * DAY + 950, target="v1", duration=50.0)) + "\n")
    again = report.write_reports(str(log), **paths)
    assert again["files"]["postmortem"]["kept"] and (tmp_path / "pm-r5.md").read_text() == "my notes"
    assert again["files"]["prom"]["changed"]
    assert report.write_reports(str(log), postmortem_overwrite=True, **paths)["files"]["postmortem"]["changed"]
    assert [p.name for p in (tmp_path / "out").iterdir()] in (["r.html", "m.prom"], ["m.prom", "r.html"])


def test_by_reason_names_the_real_cause_of_failures_and_refusals():
    records = (
        [rec("started", "m1", T0, target="v9", trigger="manual"),
         rec("refused", "m1", T0 + 1, target="v9", trigger="manual", reason="pre-flight failed; nothing was changed",
             result={"h1": [{"layer": "config", "problem": "Checkpoint v9 is not in /var/lib/gitops-rollback on h1 "
                                                           "(have: v1). Run gitops.rollback.checkpoint_info"}]})]
        + manual_rollback("c1", T0 + 10, 5.0, outcome="failed")
        + [rec("started", "c2", T0 + 100, target="v1", trigger="manual"),
           rec("failed", "c2", T0 + 101, target="v1", trigger="manual",
               result={"host": "h1", "layer": "database", "task": "Restore",
                       "problem": "The backup postgresql/shop is damaged: 3f2a1b object is corrupted. Nothing was "
                                  "changed"}),
           rec("failed", "c2", T0 + 102, target="v1", trigger="manual", result={"failed": ["h1"]})]
        + [rec("started", "x1", T0 + 200, target="v1", trigger="manual"),
           rec("failed", "x1", T0 + 201, target="v1", trigger="manual",
               result={"host": "h1", "layer": "config", "problem": "boom", "cause": "operator abort"})]
        + [rec("alert", "g5", T0 + 300, "guard", reason="health gate fail: error_rate 0.4"),
           rec("refused", "g5", T0 + 301, "guard", reason="automatic rollback refused by the cooldown: ...")])
    for run in records:  # the failed rollback of manual_rollback fails with "disk full"
        if run["run_id"] == "c1" and run["event"] == "failed" and "host" in run.get("result", {}):
            run["result"]["problem"] = "[Errno 28] No space left on device: '/srv/app/.tmp'"
    summary = report_analytics.analyze(records)[2]
    reasons = {row["name"]: (row["total"], row["failed"], row["refused"]) for row in summary["by_reason"]}
    assert reasons == {"missing checkpoint or label": (1, 0, 1), "disk full": (1, 1, 0),
                       "corrupted object": (1, 1, 0), "operator abort": (1, 1, 0),
                       "refused by the cooldown": (1, 0, 1)}
    assert report_runs.NO_REASON not in reasons
    assert report_runs.classify("health gate fail: error_rate failed: 0.42") == "failed health gate"


def test_drill_rollbacks_are_kept_out_of_the_production_figures(records):
    production = report_analytics.analyze(records, days=7)[2]
    mixed = report_analytics.analyze(records + drill_records("drill-1", T0 + 2 * DAY + 1000), days=7)
    rollbacks, drills, summary = mixed
    for key in ("rollbacks", "success_rate", "mttr_seconds", "mean_time_to_detect_seconds", "by_trigger",
                "by_reason", "by_layer", "daily", "duration"):
        assert summary[key] == production[key], key
    assert "drill-1-manual" not in {r.run_id for r in rollbacks}
    assert summary["drills"]["success"] == 1
    assert summary["drill_rollbacks"] == {"total": 2, "success": 2, "failed": 0, "refused": 0, "incomplete": 0}
    drill = summary["drill_runs"][0]
    assert [(r["run_id"], r["outcome"], r["drill"]) for r in drill["rollbacks"]] == [
        ("drill-1-manual", "success", "drill-1"), ("drill-1-guard", "success", "drill-1")]
    assert drill["rollbacks"][1]["guard_run_id"].startswith("guard-x-")
    page = report_html.render_html(rollbacks, summary)
    drills_section = page[page.index('<div id="drills"'):]
    assert "drill-1-guard" in drills_section and "drill-1-guard" not in page[:page.index('<div id="drills"')]
    prom = report_prometheus.parse_prometheus(report_prometheus.render_prometheus(summary))
    assert prom[("gitops_rollback_drill_rollbacks_total", (("result", "success"),))] == 2
    assert prom[("gitops_rollback_rollbacks_total", (("result", "success"), ("trigger", "guard")))] == 1


def test_a_drill_rollback_gets_a_postmortem_only_when_asked_for(tmp_path, records):
    log = tmp_path / "audit.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records + drill_records("drill-9", T0 + 3 * DAY)))
    latest = report.write_reports(str(log), postmortem_path=str(tmp_path / "pm-{run_id}.md"))
    assert latest["rollback"]["run_id"] == "r5"  # the latest production rollback, not the drill's
    asked = report.write_reports(str(log), postmortem_path=str(tmp_path / "pm-{run_id}.md"), run_id="drill-9-guard")
    assert asked["rollback"]["run_id"] == "drill-9-guard" and asked["rollback"]["drill"] == "drill-9"


def test_a_drill_labelled_run_is_a_drill_run_whatever_its_id():
    records = (drill_records("drill-2", T0, rounds=("manual",))
               + [rec("alert", "guard-y", T0 + 100, "guard", level="info", reason="health gate fail",
                      measurements={"drill": "drill-2", "verdict": "fail"}),
                  rec("started", "guard-y", T0 + 101, "guard", reason="health gate fail",
                      measurements={"drill": "drill-2", "verdict": "fail"}),
                  rec("started", "any-id", T0 + 102, trigger="drill", measurements={"drill": "drill-2"}),
                  rec("completed", "any-id", T0 + 105, trigger="drill", result={"check_mode": False})])
    rollbacks, drills, summary = report_analytics.analyze(records)
    assert rollbacks == [] and summary["rollbacks"]["total"] == 0
    assert {r.run_id: r.guard_run_id for r in drills[0].rollbacks} == {"drill-2-manual": None, "any-id": "guard-y"}


@pytest.mark.parametrize("problems,expected", [
    ({}, {"drill-3-manual": "success", "drill-3-guard": "failed"}),  # failed before the guard round was measured
    ({"manual": 2, "guard": 0}, {"drill-3-manual": "failed", "drill-3-guard": "success"}),
])
def test_a_drill_rollback_is_no_success_when_the_drill_found_it_wrong(problems, expected):
    records = drill_records("drill-3", T0, outcome="failed", problems=problems)
    rollbacks, drills, summary = report_analytics.analyze(records)
    assert drills[0].outcome == "failed"
    assert {r.run_id: r.outcome for r in drills[0].rollbacks} == expected
    failed = [r for r in drills[0].rollbacks if r.outcome == "failed"]
    assert failed[0].note.startswith("the drill")
    assert summary["drill_rollbacks"]["success"] == 1 and summary["drill_rollbacks"]["failed"] == 1
    assert summary["rollbacks"]["total"] == 0


def test_report_files_are_readable_by_all_whatever_the_umask(tmp_path, records):
    log = tmp_path / "audit.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    old = os.umask(0o077)
    try:
        report.write_reports(str(log), prom_path=str(tmp_path / "m.prom"), html_path=str(tmp_path / "r.html"))
    finally:
        os.umask(old)
    assert {oct(os.stat(tmp_path / name).st_mode & 0o777) for name in ("m.prom", "r.html")} == {"0o644"}
