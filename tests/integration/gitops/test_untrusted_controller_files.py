"""Files the gitops-rollback command reads back and writes on the controller, attacked from outside.

A hand-edited or planted schedule entry never runs and never crashes the timer; a link planted where
the command keeps its state, schedule, lock, audit log, run directories or hook temporary file is
never followed; an error about extra vars never shows their text. Pure, fast: no Ansible run.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest

from gitops_rollback.cli import main
from gitops_rollback.collection import import_module_util
from gitops_rollback.extravars import ExtraVarsError, parse_extra_vars
from gitops_rollback.hooks import install_hook
from gitops_rollback.runner import RunRequest, UnsafeRunDir, prepare, prune_runs
from gitops_rollback.schedule import REFUSED, Context, ScheduleFile, run_due
from gitops_rollback.state import StateError, StateFile

NOW = datetime.datetime(2026, 12, 24, 2, 0, 30, tzinfo=datetime.timezone.utc)
SECRET = "hunter2-Pa55-do-not-print"
TEMPLATE = "{{ lookup('pipe', 'touch /tmp/gr-redteam-pwned') }}"


def _entry(tmp_path: Path, **changes: Any) -> Dict[str, Any]:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all: {}\n")
    entry = {"id": "rollback-20261224T0200Z-ab12", "kind": "rollback", "target": "v1", "at": "2026-12-24T02:00:00Z",
             "window": 600, "layers": [], "status": "pending", "inventory": str(inventory), "extravars": {},
             "scheduled_by": "ops", "scheduled": "2026-12-23T00:00:00Z", "reason": ""}
    entry.update(changes)
    return entry


PLANTED = {
    "an id that climbs out of the run directory": {"id": "../../../../tmp/gr-redteam-escape"},
    "an absolute id": {"id": "/tmp/gr-redteam-escape"},
    "a target that is a template": {"target": TEMPLATE},
    "a relative inventory": {"inventory": "inventory.yml"},
    "a connection variable in the extra vars": {"extravars": {"ansible_python_interpreter": "/bin/sh -c id"}},
    "an extra var name that is a template": {"extravars": {TEMPLATE: "x"}},
    "extra vars that are not a mapping": {"extravars": ["x"]},
    "an unknown kind": {"kind": "shell"},
    "an interval of zero": {"kind": "checkpoint", "every": 0, "id": "checkpoint-20261224T0200Z-ab12"},
    "a window that is text": {"window": "forever"},
    "a relative time": {"at": "+0s"},
    "a time that is no date": {"at": "2026-13-45T02:00:00Z"},
    "an unknown layer": {"layers": ["everything"]},
}


@pytest.mark.parametrize("change", list(PLANTED.values()), ids=list(PLANTED))
def test_a_planted_schedule_entry_is_refused_and_nothing_runs(tmp_path: Path, change: Dict[str, Any],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    schedule = tmp_path / "state" / "schedule.json"
    schedule.parent.mkdir()
    schedule.write_text(json.dumps({"format_version": 1, "entries": [_entry(tmp_path, **change), "not an entry"]}))
    audit_log = tmp_path / "audit.jsonl"
    context = Context(ScheduleFile(schedule), None, str(audit_log), 20)
    lines: list = []
    assert run_due(context, NOW, lines.append) is False
    [stored] = json.loads(schedule.read_text())["entries"]
    assert stored["status"] == REFUSED and stored["problem"]
    assert not (schedule.parent / "runs").exists() and not Path("/tmp/gr-redteam-escape-20261224T020000Z").exists()
    assert not Path("/tmp/gr-redteam-pwned").exists()
    records = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert [r["event"] for r in records] == ["refused", "refused"]
    assert all("refused, not run" in line for line in lines) and len(lines) == 2
    assert run_due(context, NOW, lines.append) is True  # refused once, then left alone
    main(["schedule", "list", "--schedule-file", str(schedule)])
    assert "\x1b" not in capsys.readouterr().out


def test_schedule_list_escapes_what_a_planted_entry_says(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = tmp_path / "schedule.json"
    schedule.write_text(json.dumps({"format_version": 1, "entries": [
        _entry(tmp_path, scheduled_by="ops\x1b]0;owned\x07\x1b[2J"), _entry(tmp_path, id="rollback-\x1b[2J")]}))
    assert main(["schedule", "list", "--schedule-file", str(schedule)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "rollback-20261224T0200Z-ab12" in out


def test_a_connection_variable_is_never_scheduled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = tmp_path / "schedule.json"
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all: {}\n")
    code = main(["schedule", "checkpoint", "--every", "1h", "-i", str(inventory), "--schedule-file", str(schedule),
                 "--audit-log", str(tmp_path / "audit.jsonl"), "-e", "ansible_ssh_common_args=-oProxyCommand=id"])
    assert code == 1 and not schedule.exists()
    assert "ansible_ssh_common_args" in capsys.readouterr().err


@pytest.mark.parametrize("planted", ["link", "group-writable", "foreign"])
def test_a_state_or_schedule_file_others_could_have_written_is_refused(tmp_path: Path, planted: str) -> None:
    real = tmp_path / "elsewhere.json"
    real.write_text(json.dumps({"format_version": 1, "entries": [], "tags": {}}))
    path = tmp_path / "schedule.json"
    if planted == "link":
        path.symlink_to(real)
    else:
        path.write_text(real.read_text())
        if planted == "group-writable":
            path.chmod(0o664)
        else:
            os.chown(path, 65534, 65534)
    for document in (ScheduleFile(path), StateFile(path)):
        with pytest.raises(StateError, match="symbolic link|writable by others|belongs to uid 65534"):
            document.read()
        with pytest.raises(StateError):
            with document.transaction():
                pass
    assert json.loads(real.read_text())["entries"] == []


def test_a_lock_link_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (tmp_path / "state.json.lock").symlink_to(victim)
    with pytest.raises(StateError, match="lock"):
        with StateFile(tmp_path / "state.json").transaction():
            pass
    assert not victim.exists() and not (tmp_path / "state.json").exists()


def test_run_directories_are_never_made_or_pruned_through_a_link(tmp_path: Path) -> None:
    precious = tmp_path / "home"
    for name in ("a", "b", "c"):
        (precious / name).mkdir(parents=True)
    state = tmp_path / "state"
    state.mkdir()
    (state / "runs").symlink_to(precious)
    assert prune_runs(state / "runs", 1) == []
    assert sorted(p.name for p in precious.iterdir()) == ["a", "b", "c"]
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all: {}\n")
    request = RunRequest(playbook="checkpoint", inventory=inventory, extravars={"db_password": SECRET},
                         collection_root=tmp_path, run_dir=state / "runs" / "run-1", ident="run-1")
    with pytest.raises(UnsafeRunDir, match="symbolic link"):
        prepare(request)
    (state / "runs").unlink()
    (state / "runs").mkdir()
    (state / "runs" / "run-1").symlink_to(precious)
    with pytest.raises(UnsafeRunDir, match="symbolic link"):
        prepare(request)
    assert sorted(p.name for p in precious.iterdir()) == ["a", "b", "c"]


def test_the_audit_log_is_never_written_through_a_link(tmp_path: Path) -> None:
    audit = import_module_util("controller.audit", None)
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    log = tmp_path / "audit.jsonl"
    log.symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        audit.append(str(log), audit.make_record("started", "rollback", "run-1"))
    assert victim.read_text() == "untouched\n"


def test_the_hook_is_never_written_through_a_planted_temporary_file(tmp_path: Path) -> None:
    bare = tmp_path / "config.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    (bare / "hooks" / ".post-receive.tmp").symlink_to(victim)
    hook = install_hook(str(bare), ["--inventory", str(tmp_path / "inventory.yml")])
    assert victim.read_text() == "untouched\n" and not hook.is_symlink() and os.access(hook, os.X_OK)


@pytest.mark.parametrize("argument", [
    '{"db_password": "%s", }' % SECRET,         # inline JSON with a typo
    SECRET,                                      # a value given without its KEY=
    "@{file}",                                   # a YAML vars file (Ansible takes it; this command does not)
])
def test_an_extra_vars_error_never_shows_the_secret(tmp_path: Path, argument: str) -> None:
    vars_file = tmp_path / "vault.yml"
    vars_file.write_text("db_password: %s\n" % SECRET)
    with pytest.raises(ExtraVarsError) as raised:
        parse_extra_vars(["checkpoint_label=v1", argument.replace("{file}", str(vars_file))])
    assert SECRET not in str(raised.value) and "--extra-vars #2" in str(raised.value)


@pytest.mark.parametrize("inline", [
    "db_password=" + SECRET,
    '{"gitops_rollback_databases": [{"name": "app", "password": "%s"}]}' % SECRET,
    "gitops_rollback_state=postgresql://gr:%s@db/state" % SECRET,
])
def test_the_hook_never_holds_a_secret_in_clear(tmp_path: Path, inline: str, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "config.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all: {}\n")
    code = main(["install-hook", str(bare), "-i", str(inventory), "-e", "checkpoint_reason=release", "-e", inline])
    assert code == 2 and not (bare / "hooks" / "post-receive").exists()
    err = capsys.readouterr().err
    assert "--extra-vars #2" in err and "@FILE" in err and SECRET not in err
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"db_password": SECRET}))
    monkeypatch.chdir(tmp_path)
    assert main(["install-hook", str(bare), "-i", str(inventory), "-e", "@secrets.json"]) == 0
    hook = (bare / "hooks" / "post-receive").read_text()
    assert SECRET not in hook and "@" + str(secrets_file) in hook  # by absolute path: the hook runs elsewhere
