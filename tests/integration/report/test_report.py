"""End-to-end: the report of an audit log written by real ordered rollbacks, checked in headless chromium."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import zlib

import pytest

from report_support import PLAYBOOKS, render

from harness import run_playbook as harness_run_playbook

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # the audit_log fixture runs the playbooks


def finals(audit_log):
    """The final (completed/failed) record of each rollback run, by run id, straight from the log."""
    found = {}
    for record in audit_log.records():
        if record["operation"] == "rollback" and record["event"] in ("completed", "failed"):
            found[record["run_id"]] = record
    return found


def starts(audit_log):
    return {r["run_id"]: r for r in audit_log.records() if r["event"] == "started"}


def report_vars(audit_log, tmp_path, **extra):
    return {"report_log_path": str(audit_log.path), "report_html_path": str(tmp_path / "out" / "rollbacks.html"),
            "report_prom_path": str(tmp_path / "out" / "gitops_rollback.prom"),
            "report_postmortem_path": str(tmp_path / "out" / "postmortem-{run_id}.md"), **extra}


def report_args(audit_log, tmp_path, **extra):
    """The rollback_report arguments report.yml passes for report_vars() (the role's defaults are the module's)."""
    return {"log_path": str(audit_log.path), "html_path": str(tmp_path / "out" / "rollbacks.html"),
            "prom_path": str(tmp_path / "out" / "gitops_rollback.prom"),
            "postmortem_path": str(tmp_path / "out" / "postmortem-{run_id}.md"), **extra}


def prom_samples(text):
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def report_task(result):
    found = [e for e in result.events if e["action"].endswith("rollback_report")]
    assert found, result
    return found[-1]


@pytest.fixture(scope="module")
def report(audit_log, fleet, collections_path, tmp_path_factory):
    """report.yml run once over the module's log (the tests read its files): (result, output directory)."""
    workdir = tmp_path_factory.mktemp("report")
    result = harness_run_playbook(PLAYBOOKS / "report.yml", fleet.inventory, report_vars(audit_log, workdir, report_days=7),
                                  collections_dir=collections_path, cwd=workdir)
    assert result.ok, result
    return result, workdir / "out"


def test_the_audit_log_holds_what_the_rollbacks_did(audit_log):
    final = finals(audit_log)
    assert {final[run]["event"] for run in audit_log.real_runs} == {"completed"}
    assert final[audit_log.real_runs[1]]["trigger"] == "tag"
    assert any(r["event"] == "refused" and r["run_id"] == audit_log.refused_run for r in audit_log.records())


def test_prometheus_file_and_postmortem_hold_the_numbers_of_the_log(audit_log, report):
    result, out = report

    final, started = finals(audit_log), starts(audit_log)
    durations = [record["duration"] for record in final.values()]
    recoveries = [final[run]["epoch"] - started[run]["epoch"] for run in audit_log.real_runs]
    recoveries.append(final[audit_log.guard_rollback_run]["epoch"] - audit_log.detected_epoch)
    samples = prom_samples((out / "gitops_rollback.prom").read_text())
    assert samples['gitops_rollback_rollbacks_total{result="success",trigger="manual"}'] == 1
    assert samples['gitops_rollback_rollbacks_total{result="success",trigger="tag"}'] == 1
    assert samples['gitops_rollback_rollbacks_total{result="success",trigger="guard"}'] == 1
    assert samples['gitops_rollback_rollbacks_total{result="refused",trigger="manual"}'] == 1
    assert samples['gitops_rollback_rollbacks_total{result="failed",trigger="manual"}'] == 1
    assert sum(v for k, v in samples.items() if k.startswith("gitops_rollback_rollbacks_total{")) == 5
    assert samples["gitops_rollback_failures_total"] == 1
    assert samples["gitops_rollback_success_ratio"] == 0.75
    assert samples["gitops_rollback_duration_seconds_count"] == 4
    assert samples["gitops_rollback_duration_seconds_sum"] == pytest.approx(sum(durations), abs=1e-3)
    assert samples["gitops_rollback_mttr_seconds"] == pytest.approx(sum(recoveries) / 3, abs=2e-3)
    assert samples["gitops_rollback_last_timestamp_seconds"] == pytest.approx(final[audit_log.failed_run]["epoch"])
    assert samples['gitops_rollback_layer_rollbacks_total{layer="config"}'] == 4
    assert samples["gitops_rollback_mean_time_to_detect_seconds"] == 40
    summary = report_task(result)["result"]["summary"]
    assert summary["rollbacks"] == {"total": 5, "success": 3, "failed": 1, "refused": 1, "incomplete": 0}

    # The draft is about the latest rollback that ran: the failed one.
    draft = (out / ("postmortem-%s.md" % audit_log.failed_run)).read_text()
    assert "| Outcome | failed |" in draft and "| Reason | config drift |" in draft
    assert "h1 failed at the config layer (task Restore the managed paths): No space left on device" in draft
    assert "All rollbacks in the log: 5 (3 succeeded, 1 failed, 1 refused); success rate 75.0 %" in draft
    assert "## Root cause" in draft and "## Action items" in draft


# report.yml itself runs once (the report fixture: its numbers and its page are checked in the two tests
# above and below); the module's other behaviours run it as Ansible does on the controller (run_task: the
# arguments report.yml passes, no playbook run each).


def test_postmortem_of_a_real_rollback_and_of_a_guard_run(audit_log, run_task, tmp_path):
    real = audit_log.real_runs[1]
    _run, result = run_task("gitops.rollback.rollback_report", report_args(audit_log, tmp_path, run_id=real))
    assert result["status"] == "ok", result
    draft = (tmp_path / "out" / ("postmortem-%s.md" % real)).read_text()
    assert "| Trigger | tag |" in draft and "| Reason | bad release v2 |" in draft
    assert "| Hosts | h1, h2, h3 |" in draft
    for host in ("h1", "h2", "h3"):
        assert re.search(r"^\| %s \|.* \* \|" % host, draft, re.M), draft  # config changed on every host
    assert re.search(r"\| rollback \| started \|", draft) and re.search(r"\| rollback \| completed \|", draft)

    _run, result = run_task("gitops.rollback.rollback_report",
                            report_args(audit_log, tmp_path, run_id=audit_log.guard_run))
    assert result["status"] == "ok", result
    draft = (tmp_path / "out" / ("postmortem-%s.md" % audit_log.guard_rollback_run)).read_text()
    assert "| Trigger | guard |" in draft and "| Guard run | %s |" % audit_log.guard_run in draft
    assert "| error_rate | failed | 0.42 meets failure condition '> 0.05' | 0.01, 0.42 |" in draft
    assert "| Time to recover (detection to completed) | 5.70 s |" in draft
    assert "breach detected by the health gate" in draft


def test_report_renders_in_headless_chromium(audit_log, report, tmp_path, chromium):
    html = report[1] / "rollbacks.html"
    screenshot = tmp_path / "report.png"

    dom = render(chromium, html, tmp_path, screenshot)

    assert '<div class="kpi" id="kpi-total"><b>5</b>' in dom
    assert '<div class="kpi" id="kpi-success-rate"><b>75.0 %</b>' in dom
    for chart in ("chart-trigger", "chart-layer", "chart-reason", "chart-trend"):
        block = dom.split('id="%s"' % chart, 1)[1].split("</svg>", 1)[0]
        assert "<svg" in block, chart
        assert "<rect" in block or "<polyline" in block, chart
    trigger_chart = dom.split('id="chart-trigger"', 1)[1].split("</svg>", 1)[0]
    assert {"manual", "tag", "guard"} <= set(re.findall(r">(manual|tag|guard)</text>", trigger_chart))
    trend = dom.split('id="chart-trend"', 1)[1].split("</svg>", 1)[0]
    assert "<polyline" not in trend and 'class="bar bar-success"' in trend  # bars per day
    reason_chart = dom.split('id="chart-reason"', 1)[1].split("</svg>", 1)[0]
    # the real refusal (an unknown label) and the synthetic failure count under their causes
    causes = set(re.findall(r"<title>([^<]+)</title>", reason_chart))
    assert {"missing checkpoint or label", "disk full", "failed health gate", "bad release v2"} <= causes, causes
    assert "(no reason given)" in causes  # only the manual rollback started without a reason
    for run in audit_log.real_runs + [audit_log.refused_run, audit_log.guard_rollback_run, audit_log.failed_run]:
        assert run in dom, run
    assert dom.count('aria-label="Timeline of ') == 5  # one timeline per rollback
    assert "<script" not in dom

    width, height, distinct = png_facts(screenshot)
    assert (width, height) == (1280, 2000)
    assert distinct > 20, "the screenshot is (nearly) blank: %d distinct byte values" % distinct


def test_check_mode_writes_nothing_and_a_second_run_changes_nothing(audit_log, run_task, tmp_path):
    args = report_args(audit_log, tmp_path)
    _run, planned = run_task("gitops.rollback.rollback_report", args, check=True)
    assert planned["status"] == "ok", planned
    assert planned["changed"] and not (tmp_path / "out").exists()

    _run, first = run_task("gitops.rollback.rollback_report", args)
    _run, second = run_task("gitops.rollback.rollback_report", args)
    assert first["status"] == second["status"] == "ok", (first, second)
    assert first["changed"] and not second["changed"]
    prom = tmp_path / "out" / "gitops_rollback.prom"
    assert oct(prom.stat().st_mode & 0o777) == "0o644"  # node_exporter reads it as its own user
    assert sorted(p.name for p in prom.parent.iterdir()) == sorted(
        ["rollbacks.html", "gitops_rollback.prom", "postmortem-%s.md" % audit_log.failed_run])  # no temp files left


def test_an_edited_postmortem_draft_is_kept(audit_log, run_task, tmp_path):
    args = report_args(audit_log, tmp_path)
    assert run_task("gitops.rollback.rollback_report", args)[1]["status"] == "ok"
    draft = tmp_path / "out" / ("postmortem-%s.md" % audit_log.failed_run)
    draft.write_text(draft.read_text() + "\nRoot cause: the disk was full.\n")
    edited = draft.read_text()

    _run, result = run_task("gitops.rollback.rollback_report", args)

    assert result["status"] == "ok", result
    assert draft.read_text() == edited
    assert any("was edited since it was drafted, so it was kept" in w for w in result.get("warnings", [])), result


def test_missing_log_and_unknown_run_fail_with_the_way_out(audit_log, run_task, tmp_path):
    _run, missing = run_task("gitops.rollback.rollback_report",
                             report_args(audit_log, tmp_path, log_path=str(tmp_path / "none.jsonl")))
    assert missing["status"] == "ignored", missing  # the task fails
    assert "none.jsonl does not exist" in missing["msg"] and "log_path" in missing["msg"]

    _run, unknown = run_task("gitops.rollback.rollback_report", report_args(audit_log, tmp_path, run_id="r-x"))
    assert unknown["status"] == "ignored", unknown
    assert "'r-x' is not a rollback in the audit log" in unknown["msg"] and audit_log.failed_run in unknown["msg"]
    assert not (tmp_path / "out").exists()  # nothing written


def test_command_line_gives_the_same_numbers(audit_log, tmp_path):
    prom = tmp_path / "cli.prom"
    result = subprocess.run([sys.executable, "-m", "gitops_rollback", "report", "--log", str(audit_log.path),
                             "--prom", str(prom), "--json"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["rollbacks"]["total"] == 5 and summary["success_rate"] == 0.75
    assert prom_samples(prom.read_text())["gitops_rollback_failures_total"] == 1

    missing = subprocess.run([sys.executable, "-m", "gitops_rollback", "report", "--log",
                              str(tmp_path / "none.jsonl")], capture_output=True, text=True, check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def png_facts(path):
    """Width, height and the number of distinct byte values of the decoded pixel rows of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    chunks, offset = [], 8
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            chunks.append(data[offset + 8:offset + 8 + size])
        offset += 12 + size
    pixels = zlib.decompress(b"".join(chunks))
    return width, height, len(set(pixels[:: max(len(pixels) // 200000, 1)]))
