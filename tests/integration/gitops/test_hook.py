"""A real bare repository with the post-receive hook: pushed tags drive checkpoints and rollbacks.

The command is the one a user installs: pip-installed from the collection that ansible-galaxy
installed from the tarball, into a fresh virtualenv; pushes run with a plain environment (no
collections path, no virtualenv on PATH).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from gitops_support import RELEASES, ConfigRepo, InstalledCli, checkpoints, deploy, git, host_files

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # runs ansible-playbook (CLI, ansible-runner, molecule)


def expected_files(release: str) -> dict:
    return dict(sorted(RELEASES[release].items()))


@pytest.fixture
def short_home() -> Iterator[Path]:
    """The pusher's HOME, short like a real one: ssh's ControlPath under ~/.ansible/cp must fit a Unix
    socket path (108 bytes), which a HOME deep in pytest's (and xdist's) temporary tree does not."""
    home = Path(tempfile.mkdtemp(prefix="gr-home-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_pushed_tags_checkpoint_and_roll_back(clean_fleet, gitops_inventory: Path, config_repo: ConfigRepo,
                                              installed_cli: InstalledCli, tmp_path: Path, short_home: Path) -> None:
    fleet = clean_fleet
    home = short_home
    # Installed once with the collections path set; the hook needs nothing from the pusher's environment.
    installed = installed_cli.run(["install-hook", str(config_repo.bare), "-i", str(gitops_inventory)],
                                  config_repo.work, ANSIBLE_COLLECTIONS_PATH=str(installed_cli.collections))
    assert installed.returncode == 0, installed.stderr
    config_repo.env, config_repo.inherit = installed_cli.env(HOME=str(home)), False
    assert (config_repo.bare / "hooks" / "post-receive").stat().st_mode & 0o111

    # v1 is deployed, its tag is pushed: a checkpoint labelled v1 with v1's commit, on all 3 hosts.
    deploy(fleet, "v1")
    v1_commit = config_repo.commit_release("v1")
    pushed = config_repo.push("main", "v1")
    assert "release tag v1: checkpoint labelled v1" in pushed.stderr, pushed.stderr
    assert "successful (rc 0)" in pushed.stderr, pushed.stderr
    for host in fleet:
        labels = [(m["label"], m.get("commit")) for m in checkpoints(host)]
        assert labels == [("v1", v1_commit)], (host.name, labels)

    # A branch push (v2's commit), deleting v1 and pushing v1 again: nothing runs, each says why.
    deploy(fleet, "v2")
    config_repo.commit_release("v2")  # tagged in the clone only; every tag decision: tests/unit/.../test_tags.py
    branch = config_repo.push("main")
    assert "ignored: branch push (refs/heads/main)" in branch.stderr, branch.stderr
    deleted = config_repo.push(":refs/tags/v1")
    assert "ignored: tag v1 was deleted" in deleted.stderr, deleted.stderr
    again = config_repo.push("v1")
    assert "ignored: tag v1 was processed already" in again.stderr, again.stderr
    for host in fleet:
        assert [m["label"] for m in checkpoints(host)] == ["v1"], host.name

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
        "v1": ("checkpoint", "successful"), "rollback/v1": ("rollback", "successful")}
    # ...and each run left an AWX-like private data dir with ansible-runner's artifacts.
    runs = sorted((config_repo.bare / "gitops-rollback" / "runs").iterdir())
    assert len(runs) == 2
    status = [(r / "artifacts" / r.name / "status").read_text() for r in runs]
    assert status == ["successful"] * 2
    # The extra vars reach Ansible as data, never as templates: every string is !unsafe.
    text = (runs[-1] / "env" / "extravars").read_text()
    assert 'rollback_to: !unsafe "v1"' in text and 'tag: !unsafe "rollback/v1"' in text, text
    assert not [line for line in text.splitlines() if '"' in line and "!unsafe" not in line], text

    # An inventory Ansible cannot parse: the push prints Ansible's error, the audit log records the failure,
    # nothing is checkpointed (Ansible alone would match no host and succeed).
    broken = tmp_path / "broken.yml"
    broken.write_text("all:\n  hosts: [oops\n")
    reinstalled = installed_cli.run(["install-hook", str(config_repo.bare), "-i", str(broken)], config_repo.work,
                                    ANSIBLE_COLLECTIONS_PATH=str(installed_cli.collections))
    assert reinstalled.returncode == 0, reinstalled.stderr
    (config_repo.work / "CHANGES").write_text("v3\n")
    git(config_repo.work, "add", "CHANGES")
    git(config_repo.work, "commit", "-q", "-m", "release v3")
    git(config_repo.work, "tag", "-a", "v3", "-m", "release v3")
    v3_commit = git(config_repo.work, "rev-parse", "v3^{commit}").stdout.strip()
    before = {host.name: checkpoints(host) for host in fleet}
    failed = config_repo.push("main", "v3")
    assert "checkpoint v3: failed" in failed.stderr, failed.stderr
    assert "remote: gitops-rollback: checkpoint v3: [ERROR]: No inventory was parsed" in failed.stderr, failed.stderr
    assert f"Unable to parse {broken}" in failed.stderr, failed.stderr
    for host in fleet:
        assert checkpoints(host) == before[host.name], host.name
    log = home / ".local" / "state" / "gitops-rollback" / "audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]  # the rollback's records come first
    assert records[0]["operation"] == "rollback", records[0]
    failures = [r for r in records if r["operation"] == "trigger"]
    assert [(r["event"], r["tag"], r["commit"], r["status"]) for r in failures] == [
        ("failed", "v3", v3_commit, "failed")], failures
    assert records[-1] is failures[0] and "No inventory was parsed" in failures[0]["error"]
    verified = installed_cli.run(["audit", "verify", str(log)], tmp_path, HOME=str(home),
                                 ANSIBLE_COLLECTIONS_PATH=str(installed_cli.collections))
    assert verified.returncode == 0, verified.stdout + verified.stderr
