"""Helpers for the bad-input tests (a uniquely named module: conftest modules share a name).

The tests check what the modules refuse and change on a fleet host; the modules run there as
Ansible runs them (:meth:`harness.Host.module`: inside the host's namespaces, the arguments as the
JSON Ansible sends, no controller), each task going on after a failure as ``ignore_errors`` would."""

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


def checkpoint_v1(host) -> tuple[Path, dict]:
    """Give ``host`` an /srv/app holding index.html 'v1', checkpoint it as v1; return (manifest file, manifest)."""
    host.write_text("/srv/app/index.html", "v1\n")
    made = run_tasks(host, [{"name": "checkpoint", "gitops.rollback.checkpoint": {"paths": ["/srv/app"], "label": "v1"}}])
    assert made["checkpoint"]["status"] == "ok", made
    manifest_path = next((host.store / "checkpoints").iterdir())
    return manifest_path, json.loads(manifest_path.read_text())


def run_tasks(host, tasks: list[dict]) -> dict[str, dict]:
    """Run each task (``{"name": ..., "<module>": args, "check_mode": bool}``) on ``host`` in turn, going
    on after a failure; the result of every task by name, with ``status`` ``ok`` or ``ignored`` (failed)."""
    found: dict[str, dict] = {}
    for task in tasks:
        (module, args), = [(key, value) for key, value in task.items() if key not in ("name", "check_mode")]
        event = host.module(module, args, check=bool(task.get("check_mode"))).events[-1]
        found[task["name"]] = {**event["result"], "status": "ignored" if event["status"] == "failed" else "ok"}
    return found
