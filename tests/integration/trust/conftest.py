"""Fixtures of the trust end-to-end tests: a local inventory and one-task plays against it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import yaml


@pytest.fixture(scope="session")
def local_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An inventory of one host, ``local``, reached with the local connection and this Python."""
    path = tmp_path_factory.mktemp("trustinv") / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"local": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    return path


@pytest.fixture
def run_task(run_playbook, local_inventory: Path) -> Callable[..., Any]:
    """``run_task(module, args, check=False)`` runs one task on ``local``; returns (result, task result).

    The task result carries ``status``: ``ok``, or ``ignored`` when the module failed.
    """

    def run(module: str, args: dict, check: bool = False, diff: bool = False) -> tuple:
        play = [{"name": "trust", "hosts": "local", "gather_facts": False,
                 "tasks": [{"name": "task", module: args, "ignore_errors": True}]}]
        result = run_playbook(play, inventory=local_inventory, check=check, diff=diff)
        event = result.results("task", "local")[-1]
        return result, dict(event["result"], status=event["status"])

    return run


def tree_snapshot(root: Path) -> Dict[str, Any]:
    """Every entry under ``root``: type, mode and content (files) or target (symlinks)."""
    snap: Dict[str, Any] = {}
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            full = Path(base) / name
            rel = str(full.relative_to(root))
            st = full.lstat()
            if full.is_symlink():
                snap[rel] = ("link", os.readlink(full))
            elif full.is_dir():
                snap[rel] = ("dir", st.st_mode & 0o7777)
            else:
                snap[rel] = ("file", st.st_mode & 0o7777, full.read_bytes())
    return snap


def grep_store(store: Path, needle: bytes) -> list:
    """Files under the store whose bytes contain ``needle``."""
    hits = []
    for base, _dirs, files in os.walk(store):
        for name in files:
            path = Path(base) / name
            if needle in path.read_bytes():
                hits.append(str(path))
    return hits
