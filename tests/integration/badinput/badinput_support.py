"""Helpers for the bad-input end-to-end tests (a uniquely named module: conftest modules share a name)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path


def tree_state(top: Path) -> dict[str, tuple]:
    """Every path under ``top`` (and ``top`` itself) with type, mode, owner, content hash or link target, mtime."""
    state: dict[str, tuple] = {}
    paths = [top] + ([Path(d) / n for d, dirs, files in os.walk(top) for n in dirs + files] if top.is_dir() else [])
    for full in paths:
        if not os.path.lexists(full):
            continue
        st = full.lstat()
        if stat.S_ISLNK(st.st_mode):
            detail = os.readlink(full)
        elif stat.S_ISREG(st.st_mode):
            detail = hashlib.sha256(full.read_bytes()).hexdigest()
        else:
            detail = None
        state[str(full)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, detail,
                            st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else None)
    return state


def checkpoint_v1(run_playbook, host) -> tuple[Path, dict]:
    """Give ``host`` an /srv/app holding index.html 'v1', checkpoint it as v1; return (manifest file, manifest)."""
    host.write_text("/srv/app/index.html", "v1\n")
    made = run_playbook([{"hosts": host.name, "gather_facts": False, "tasks": [
        {"name": "checkpoint", "gitops.rollback.checkpoint": {"paths": ["/srv/app"], "label": "v1"}}]}])
    assert made.ok, made
    manifest_path = next((host.store / "checkpoints").iterdir())
    return manifest_path, json.loads(manifest_path.read_text())


def play(host: str, tasks: list[dict]) -> list[dict]:
    """One play on ``host`` whose tasks each go on after a failure (so every refusal is seen)."""
    return [{"hosts": host, "gather_facts": False,
             "tasks": [{**task, "ignore_errors": True} for task in tasks]}]


def results_by_task(result, host: str) -> dict[str, dict]:
    """The last result of every task on ``host``, by task name."""
    found: dict[str, dict] = {}
    for event in result.events:
        if event.get("event") == "result" and event["host"] == host:
            found[event["task"]] = {**event["result"], "status": event["status"]}
    return found
