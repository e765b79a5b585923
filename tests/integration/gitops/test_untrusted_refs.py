"""Git refs are untrusted data: a tag that holds a template runs nothing through trigger, the hook or watch.

Each hostile name would run ``touch <marker>`` on the controller if Ansible rendered it; after each
entry point the marker must not exist, no playbook may have run (no run directory, no checkpoint),
and the state file must record the refusal with the name escaped. A valid tag still checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from gitops_support import ConfigRepo, checkpoints, deploy, git, run_cli

from gitops_rollback import cli

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # runs ansible-playbook (CLI, ansible-runner, molecule)


def hostile(marker: Path) -> List[Tuple[str, bool]]:
    """(tag name, whether ``git check-ref-format`` accepts it) for each variant of the exploit."""
    touch = f"lookup('pipe','touch${{IFS}}{marker}')"
    return [
        (f"rollback/{{{{ lookup('pipe', 'touch {marker}') }}}}", False),  # the example (spaces)
        (f"rollback/{{{{{touch}}}}}", True),
        (f"v{{{{{touch}}}}}", True),
        (f"v{{%print({touch})%}}", True),
        (f"v{{#{touch}#}}", True),
        ("rollback/v1${IFS}x", True),
        (f"v1\n{{{{{touch}}}}}", False),
        ("v1\x00x", False),
        ("v" + ("1" * 200 + "/") * 5 + "x", True),  # a name of 1 KB
        ("\u0440ollback/v1", True),  # Cyrillic er for the r of rollback
        ("v1\u2024" + "0", True),  # one dot leader for the dot
        ("\uff561", True),  # fullwidth v
    ]


def state_of(path: Path) -> Dict:
    return json.loads(path.read_text()) if path.exists() else {}


def assert_refused_and_recorded(state_path: Path, count: int) -> None:
    state = state_of(state_path)
    refused = state.get("refused", [])
    assert len(refused) == count, refused
    for entry in refused:
        assert "is refused" in entry["reason"], entry
        for raw in ("{{", "{%", "{#", "\n", "\x00", "${", "\u0440", "\uff56", "\u2024"):
            assert raw not in entry["reason"] + entry["ref"], entry
    assert state.get("tags", {}) == {}, state


def test_trigger_refuses_hostile_tags_and_runs_nothing(clean_fleet, gitops_inventory: Path, config_repo: ConfigRepo,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The first variant through the command (a tag name and a webhook body), the others through its
    ``main`` in this process (the same code and environment, one Python start for them all)."""
    marker = tmp_path / "marker"
    state = tmp_path / "state" / "state.json"
    common = ["-i", str(gitops_inventory), "--state", str(state)]
    for name, value in config_repo.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)

    def trigger(number: int, args: List[str]) -> Tuple[int, str]:
        if number == 0:
            done = run_cli(["trigger", *args, *common], config_repo.env, tmp_path)
            return done.returncode, done.stderr
        code = cli.main(["trigger", *args, *common])
        return code, capsys.readouterr().err

    outcomes = []
    for number, (name, _git_ok) in enumerate(hostile(marker)):
        if "\x00" not in name:  # argv cannot hold a NUL
            outcomes.append((name, trigger(number, [name])))
        body = tmp_path / f"push{number}.json"
        body.write_text(json.dumps({"ref": "refs/tags/" + name, "before": "0" * 40, "after": "a" * 40}))
        outcomes.append((name, trigger(number, ["--payload", str(body), "--event-type", "push",
                                                "--event-id", f"guid-{number}"])))
    assert not marker.exists()
    for name, (code, stderr) in outcomes:
        assert code == 1, (name, stderr)
        assert "refused: Tag " in stderr or "refused: Rollback target " in stderr, stderr
    payloads = len(outcomes)
    assert not (state.parent / "runs").exists() or not list((state.parent / "runs").iterdir())
    assert_refused_and_recorded(state, payloads)
    for host in clean_fleet:
        assert checkpoints(host) == [], host.name
    # A commit that is no object name is refused too, before any git command sees it.
    bad_commit = cli.main(["trigger", "v9", "--new=--upload-pack=touch", "--repo", str(config_repo.bare), *common])
    stderr = capsys.readouterr().err
    assert bad_commit == 1 and "is not a Git object name" in stderr, stderr
    status = run_cli(["status", "--state", str(state)], config_repo.env, tmp_path)
    assert status.returncode == 0 and "refused" in status.stdout and "{{" not in status.stdout


def test_pushed_hostile_tags_are_refused_by_the_hook_and_a_valid_one_checkpoints(
        clean_fleet, gitops_inventory: Path, config_repo: ConfigRepo, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    installed = run_cli(["install-hook", str(config_repo.bare), "-i", str(gitops_inventory)], config_repo.env,
                        config_repo.work)
    assert installed.returncode == 0, installed.stderr
    deploy(clean_fleet, "v1")
    commit = config_repo.commit_release("v1")
    names = [name for name, git_accepts in hostile(marker) if git_accepts]
    for name in names:
        git(config_repo.work, "tag", name, "v1")
    pushed = config_repo.push("main", "v1", *[f"refs/tags/{name}" for name in names])
    assert pushed.stderr.count("rollback: refused: ") == len(names), pushed.stderr
    assert "release tag v1: checkpoint labelled v1" in pushed.stderr and "successful (rc 0)" in pushed.stderr
    assert not marker.exists()
    for host in clean_fleet:
        assert [(m["label"], m.get("commit")) for m in checkpoints(host)] == [("v1", commit)], host.name
    state_path = config_repo.bare / "gitops-rollback" / "state.json"
    state = state_of(state_path)
    assert {t: e["status"] for t, e in state["tags"].items()} == {"v1": "successful"}
    assert len(state["refused"]) == len(names)
    assert all("{{" not in e["reason"] + e["ref"] and "\u0440" not in e["ref"] for e in state["refused"])
    assert len(list((config_repo.bare / "gitops-rollback" / "runs").iterdir())) == 1


def test_watch_refuses_hostile_tags_and_checkpoints_a_valid_one(clean_fleet, gitops_inventory: Path,
                                                                config_repo: ConfigRepo, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    deploy(clean_fleet, "v1")
    config_repo.commit_release("v1")
    names = [name for name, git_accepts in hostile(marker) if git_accepts]
    for name in names:
        git(config_repo.work, "tag", name, "v1")
    state = tmp_path / "watch-state.json"
    watched = run_cli(["watch", str(config_repo.work), "--once", "--catch-up", "-i", str(gitops_inventory),
                       "--state", str(state)], config_repo.env, tmp_path)
    assert watched.returncode == 1, watched.stderr  # refusals make the exit status a failure
    assert watched.stderr.count("rollback: refused: ") == len(names), watched.stderr
    assert "release tag v1: checkpoint labelled v1" in watched.stderr
    assert not marker.exists()
    for host in clean_fleet:
        assert [m["label"] for m in checkpoints(host)] == ["v1"], host.name
    recorded = state_of(state)
    assert list(recorded["tags"]) == ["v1"] and len(recorded["refused"]) == len(names)
