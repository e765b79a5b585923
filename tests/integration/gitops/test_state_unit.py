"""The state file of the command (gitops_rollback/state.py) and the hook installer: pure, fast."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from gitops_rollback.hooks import HookError, install_hook
from gitops_rollback.state import StateError, StateFile
from gitops_rollback.tags import decide, event_from_ref, patterns_from


def test_state_records_tags_once_under_concurrency(tmp_path: Path) -> None:
    state_file = StateFile(tmp_path / "state.json")
    decision = decide(event_from_ref("v2", "0" * 40, "a" * 40), patterns_from())
    winners = []

    def claim() -> None:
        with state_file.transaction() as state:
            if decide(event_from_ref("v2", "0" * 40, "a" * 40), patterns_from(), state.tags).runs:
                state.start(decision, "run")
                winners.append(1)

    threads = [threading.Thread(target=claim) for _number in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert winners == [1]
    data = json.loads((tmp_path / "state.json").read_text())
    assert data["format_version"] == 1 and data["tags"]["v2"]["status"] == "running"


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(StateError, match="format_version 99"):
        StateFile(tmp_path / "state.json").read()


def test_install_hook_refuses_a_foreign_hook(tmp_path: Path) -> None:
    bare = tmp_path / "r.git"
    for sub in ("objects", "refs", "hooks"):
        (bare / sub).mkdir(parents=True)
    (bare / "hooks" / "post-receive").write_text("#!/bin/sh\necho mine\n")
    with pytest.raises(HookError, match="not written by gitops-rollback"):
        install_hook(str(bare), ["--inventory", "/x"])
    hook = install_hook(str(bare), ["--inventory", "/x"], force=True)
    assert "'trigger', '--stdin-refs', '--inventory', '/x'" in hook.read_text()
    with pytest.raises(HookError, match="not a Git repository"):
        install_hook(str(tmp_path), [])
