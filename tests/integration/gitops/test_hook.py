"""A real bare repository with the post-receive hook: pushed tags drive checkpoints and rollbacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitops_support import RELEASES, ConfigRepo, checkpoints, deploy, git, host_files, run_cli

pytestmark = pytest.mark.slow


def expected_files(release: str) -> dict:
    return dict(sorted(RELEASES[release].items()))


def test_pushed_tags_checkpoint_and_roll_back(clean_fleet, gitops_inventory: Path, config_repo: ConfigRepo) -> None:
    fleet = clean_fleet
    installed = run_cli(["install-hook", str(config_repo.bare), "-i", str(gitops_inventory)],
                        config_repo.env, config_repo.work)
    assert installed.returncode == 0, installed.stderr
    assert (config_repo.bare / "hooks" / "post-receive").stat().st_mode & 0o111

    # v1 is deployed, its tag is pushed: a checkpoint labelled v1 on every host.
    deploy(fleet, "v1")
    config_repo.commit_release("v1")
    pushed = config_repo.push("main", "v1")
    assert "release tag v1: checkpoint labelled v1" in pushed.stderr, pushed.stderr
    # v2 is deployed and pushed: a checkpoint labelled v2 with v2's commit, on all 3 hosts.
    deploy(fleet, "v2")
    v2_commit = config_repo.commit_release("v2")
    pushed = config_repo.push("main", "v2")
    assert "successful (rc 0)" in pushed.stderr, pushed.stderr
    for host in fleet:
        labels = [(m["label"], m.get("commit")) for m in checkpoints(host)]
        assert labels == [("v1", config_repo.commits["v1"]), ("v2", v2_commit)], (host.name, labels)

    # A branch push, deleting v2 and pushing v2 again: nothing runs, each says why.
    (config_repo.work / "README").write_text("docs only\n")
    git(config_repo.work, "add", "README")
    git(config_repo.work, "commit", "-q", "-m", "docs")
    branch = config_repo.push("main")
    assert "ignored: branch push (refs/heads/main)" in branch.stderr, branch.stderr
    deleted = config_repo.push(":refs/tags/v2")
    assert "ignored: tag v2 was deleted" in deleted.stderr, deleted.stderr
    again = config_repo.push("v2")
    assert "ignored: tag v2 was processed already" in again.stderr, again.stderr
    for host in fleet:
        assert [m["label"] for m in checkpoints(host)] == ["v1", "v2"], host.name

    # rollback/v1: every host's managed files are v1 again, byte for byte.
    git(config_repo.work, "tag", "-a", "rollback/v1", "-m", "v2 is bad", "v2")
    rolled = config_repo.push("rollback/v1")
    assert "rollback tag rollback/v1: roll back to v1" in rolled.stderr, rolled.stderr
    assert "successful (rc 0)" in rolled.stderr, rolled.stderr
    for host in fleet:
        assert host_files(host) == expected_files("v1"), host.name

    # The state file records each tag once, with its outcome.
    state = json.loads((config_repo.bare / "gitops-rollback" / "state.json").read_text())
    assert {t: (e["action"], e["status"]) for t, e in state["tags"].items()} == {
        "v1": ("checkpoint", "successful"), "v2": ("checkpoint", "successful"),
        "rollback/v1": ("rollback", "successful")}
    # ...and each run left an AWX-like private data dir with ansible-runner's artifacts.
    runs = sorted((config_repo.bare / "gitops-rollback" / "runs").iterdir())
    assert len(runs) == 3
    status = [(r / "artifacts" / r.name / "status").read_text() for r in runs]
    assert status == ["successful"] * 3
    # The extra vars reach Ansible as data, never as templates: every string is !unsafe.
    text = (runs[-1] / "env" / "extravars").read_text()
    assert 'rollback_to: !unsafe "v1"' in text and 'tag: !unsafe "rollback/v1"' in text, text
    assert not [line for line in text.splitlines() if '"' in line and "!unsafe" not in line], text
