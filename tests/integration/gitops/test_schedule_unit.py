"""The scheduler's decisions (gitops_rollback/schedule.py): times, windows, recurring slots. Pure, fast."""

from __future__ import annotations

import argparse
import datetime
import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from gitops_rollback.cli import main as cli_main
from gitops_rollback.conditions import ConditionError, playbook_conditions
from gitops_rollback.collection import import_module_util
from gitops_rollback.schedule import (CANCELLED, MISSED, PENDING, Context, ScheduleError, ScheduleFile, checkpoint_vars,
                                      due_entries, entry_problem, parse_every, parse_time, rollback_vars, scheduled_label,
                                      timer_units)
from gitops_rollback.state import StateError

NOW = datetime.datetime(2026, 12, 24, 1, 30, tzinfo=datetime.timezone.utc)


def rollback(at: str, status: str = PENDING, window: int = 3600) -> dict:
    return {"id": "rollback-" + at, "kind": "rollback", "target": "v2.3.0", "at": at, "window": window,
            "status": status, "scheduled_by": "ops", "layers": []}


def test_times_need_a_zone_and_delays_count_from_now() -> None:
    assert parse_time("2026-12-24T02:00Z", NOW) == datetime.datetime(2026, 12, 24, 2, 0, tzinfo=datetime.timezone.utc)
    assert parse_time("2026-12-24T03:00+01:00", NOW) == parse_time("2026-12-24T02:00Z", NOW)
    assert parse_time("+30m", NOW) == NOW + datetime.timedelta(minutes=30)
    with pytest.raises(ScheduleError, match="no time zone: add Z"):
        parse_time("2026-12-24T02:00", NOW)
    with pytest.raises(ScheduleError, match="is not a time"):
        parse_time("tomorrow; rm -rf /", NOW)


def test_intervals_are_named_or_counted_and_at_least_a_minute() -> None:
    assert [parse_every(text) for text in ("hourly", "daily", "6h", "30m", "1w", "2 days")] == [
        3600, 86400, 21600, 1800, 604800, 172800]
    for bad in ("10s", "0m", "often", "1y"):
        with pytest.raises(ScheduleError):
            parse_every(bad)


def test_a_rollback_runs_in_its_window_is_missed_after_it_and_a_cancelled_one_never_runs() -> None:
    entries = [rollback("2026-12-24T01:00:00Z"), rollback("2026-12-24T00:00:00Z", window=3600),
               rollback("2026-12-24T01:10:00Z", status=CANCELLED), rollback("2026-12-24T02:00:00Z")]
    due = due_entries(entries, NOW)
    assert [(d.entry["at"], d.action) for d in due] == [("2026-12-24T00:00:00Z", MISSED), ("2026-12-24T01:00:00Z", "run")]


def test_a_recurring_checkpoint_runs_once_for_its_latest_slot() -> None:
    entry = {"id": "checkpoint-x", "kind": "checkpoint", "at": "2026-12-23T22:00:00Z", "every": 3600,
             "status": PENDING, "scheduled_by": "ops", "layers": ["config"]}
    [due] = due_entries([entry], NOW)
    assert due.slot == datetime.datetime(2026, 12, 24, 1, 0, tzinfo=datetime.timezone.utc)
    variables = checkpoint_vars(entry, due.slot)
    assert variables["checkpoint_label"] == scheduled_label(due.slot) == "scheduled/20261224T0100Z"
    assert variables["gitops_rollback_databases"] == [] and variables["gitops_rollback_terraform"] == []
    assert "gitops_rollback_paths" not in variables  # the chosen layer keeps its inventory entry


def test_a_scheduled_rollback_says_who_scheduled_it() -> None:
    entry = {**rollback("2026-12-24T02:00:00Z"), "reason": "bad release", "layers": ["config"]}
    variables = rollback_vars(entry)
    assert variables["rollback_to"] == "v2.3.0" and variables["rollback_trigger"] == "schedule"
    assert variables["rollback_layers"] == ["config"]
    assert variables["rollback_reason"] == "scheduled by ops as rollback-2026-12-24T02:00:00Z: bad release"


def test_the_schedule_file_refuses_another_format_and_names_the_entries_it_has(tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps({"format_version": 7, "entries": []}))
    with pytest.raises(StateError, match="format_version 7"):
        ScheduleFile(path).read()
    path.unlink()
    with ScheduleFile(path).transaction() as data:
        data["entries"].append(rollback("2026-12-24T02:00:00Z"))
    with pytest.raises(ScheduleError, match=r"pending: rollback-2026-12-24T02:00:00Z"):
        ScheduleFile.find(ScheduleFile(path).read(), "rollback-nope")


def test_the_timer_runs_run_due_every_minute(tmp_path: Path) -> None:
    units = timer_units(tmp_path / "my schedule.json", None)
    assert "OnCalendar=*-*-* *:*:00" in units["gitops-rollback-schedule.timer"]
    exec_line = [line for line in units["gitops-rollback-schedule.service"].splitlines() if line.startswith("ExecStart=")]
    assert exec_line and exec_line[0].endswith('run-due --schedule-file "%s"' % (tmp_path / "my schedule.json"))


def test_checkpoints_when_changed_ask_the_playbook_for_it() -> None:
    entry = {"id": "checkpoint-x", "kind": "checkpoint", "at": "2026-12-23T22:00:00Z", "every": 900,
             "status": PENDING, "scheduled_by": "ops", "layers": ["config"], "when_changed": True}
    assert checkpoint_vars(entry, NOW)["checkpoint_when_changed"] is True
    assert "checkpoint_when_changed" not in checkpoint_vars(dict(entry, when_changed=False), NOW)


def test_checkpoints_when_migrated_ask_the_playbook_for_it_and_need_the_database_layer_alone() -> None:
    entry = {"id": "checkpoint-x", "kind": "checkpoint", "at": "2026-12-23T22:00:00Z", "every": 900,
             "status": PENDING, "scheduled_by": "ops", "layers": ["database"], "when_migrated": True}
    assert checkpoint_vars(entry, NOW)["checkpoint_when_migrated"] is True
    assert "checkpoint_when_changed" not in checkpoint_vars(entry, NOW)
    args = argparse.Namespace(when_changed=False, when_migrated=True)
    assert playbook_conditions(args, ["database"]) == {"when_changed": False, "when_migrated": True}
    with pytest.raises(ConditionError, match="--when-migrated compares databases' migration versions only: give "
                                             "--layers database with it"):
        playbook_conditions(args, ["config", "database"])


def test_a_scheduled_rollback_takes_a_relative_target_resolved_when_it_runs(tmp_path: Path) -> None:
    (tmp_path / "prod.yml").write_text("all: {}\n")
    labels = import_module_util("common.labels", None)
    for target in ("previous", "previous~2:v*", "latest:v2.3.*"):
        entry = dict(rollback("2026-12-24T02:00:00Z"), id="rollback-20261224T0200Z-3fa2", target=target,
                     inventory=str(tmp_path / "prod.yml"))
        assert entry_problem(entry, labels) is None, target
        assert rollback_vars(entry)["rollback_to"] == target
    problem = entry_problem(dict(entry, target="previous~0"), labels)
    assert problem == "its target 'previous~0' is not a target: it counts back 0 checkpoints (from 1 to 99)"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian: systemd)")
def test_the_timer_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    folder = tmp_path / "units"
    folder.mkdir()
    for name, text in timer_units(tmp_path / "my schedule.json", str(tmp_path / "collections")).items():
        (folder / name).write_text(text)

    def verify(*names: str) -> subprocess.CompletedProcess:
        return subprocess.run(["systemd-analyze", "verify", "--man=no", *[str(folder / n) for n in names]],
                              capture_output=True, text=True, timeout=120, check=False)

    done = verify("gitops-rollback-schedule.timer", "gitops-rollback-schedule.service")
    assert (done.returncode, done.stderr) == (0, "")
    timer = folder / "gitops-rollback-schedule.timer"
    timer.write_text(timer.read_text().replace("OnCalendar=*-*-* *:*:00", "OnCalendar=every minute"))
    assert verify("gitops-rollback-schedule.timer").returncode != 0  # the check does catch a broken unit


class _Health(http.server.BaseHTTPRequestHandler):
    healthy = True

    def do_GET(self) -> None:  # noqa: N802  (the http.server name)
        body = json.dumps({"ok": 1 if _Health.healthy else 0}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # pylint: disable=arguments-differ
        pass


def test_a_conditional_checkpoint_runs_only_while_its_gate_passes_and_once_a_cooldown(tmp_path: Path, monkeypatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gate = tmp_path / "gate.yml"
    gate.write_text(json.dumps({"interval": 0, "count": 1, "metrics": [{
        "name": "ok", "success_condition": "result == 1",
        "provider": {"type": "http", "url": "http://127.0.0.1:%d/" % server.server_address[1], "value": "json",
                     "json_path": "ok"}}]}))
    (tmp_path / "inventory.yml").write_text("all: {}\n")
    schedule = tmp_path / "schedule.json"
    common = ["--schedule-file", str(schedule), "--audit-log", str(tmp_path / "audit.jsonl")]
    assert cli_main(["schedule", "checkpoint", "--every", "15m", "--when-gate", str(gate), "--cooldown", "1h",
                     "--start", "2026-12-24T00:00Z", "-i", str(tmp_path / "inventory.yml"), *common]) == 0
    played = []
    monkeypatch.setattr(Context, "play", lambda self, entry, ident, check, extravars, say: (
        played.append(extravars["checkpoint_label"]) or (True, [])))
    runs = [("2026-12-24T00:00:30Z", True), ("2026-12-24T00:15:30Z", True), ("2026-12-24T01:00:30Z", False),
            ("2026-12-24T01:15:30Z", True)]
    for moment, healthy in runs:
        _Health.healthy = healthy
        assert cli_main(["schedule", "run-due", "--now", moment, *common]) == 0
    server.shutdown()
    # 00:00 passes and is taken; 00:15 passes inside the cooldown; 01:00 fails its gate; 01:15 passes, cooled down
    assert played == ["scheduled/20261224T0000Z", "scheduled/20261224T0115Z"]
    skipped = [run.get("skipped", "") for run in json.loads(schedule.read_text())["entries"][0]["runs"]]
    assert skipped[1].startswith("the gate passes, but the cooldown allows the next checkpoint at 2026-12-24T01:00:30Z")
    assert skipped[2].startswith("the gate's verdict is fail")
    bad = tmp_path / "bad.yml"
    bad.write_text("metrics: [{name: x}]\n")
    assert cli_main(["schedule", "checkpoint", "--every", "15m", "--when-gate", str(bad),
                     "-i", str(tmp_path / "inventory.yml"), *common]) == 1  # refused, nothing scheduled
    assert len(json.loads(schedule.read_text())["entries"]) == 1
