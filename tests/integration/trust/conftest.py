"""Fixtures of the trust end-to-end tests: a local inventory and one-task plays against it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

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
