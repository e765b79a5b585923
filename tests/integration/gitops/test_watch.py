"""`gitops-rollback watch`: new tags trigger once, existing ones are the baseline, SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from gitops_support import REPO_ROOT, cli_env, git


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_watch_decides_new_tags_once_and_stops_on_sigterm(tmp_path: Path, collections_path: Path) -> None:
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    git(repo, "commit", "-q", "--allow-empty", "-m", "one")
    git(repo, "tag", "v1")
    state = tmp_path / "state.json"
    log = tmp_path / "watch.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gitops_rollback", "watch", str(repo), "--interval", "0.1",
                                 "--decide-only", "--state", str(state)], env=cli_env(collections_path),
                                cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: "watching" in log.read_text() and "every" in log.read_text()), log.read_text()
        git(repo, "tag", "-a", "v2", "-m", "v2")
        git(repo, "tag", "nightly")
        git(repo, "tag", "rollback/v1")
        git(repo, "tag", "-d", "v1")
        assert wait_for(lambda: "tag v1 was deleted" in log.read_text()), log.read_text()
        assert wait_for(lambda: "would rollback" in log.read_text()), log.read_text()
        time.sleep(0.3)  # a few more polls: nothing is decided twice
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "baseline" in text  # v1 existed before the first watch: not a trigger
    assert text.count("would checkpoint: release tag v2") == 1, text
    assert text.count("would rollback: rollback tag rollback/v1: roll back to v1") == 1, text
    assert "tag nightly matches no pattern" in text
    assert "received SIGTERM: stopping after the current run" in text and "watch stopped" in text
    assert json.loads(state.read_text())["baselines"] == {str(repo): json.loads(state.read_text())["baselines"][str(repo)]}
