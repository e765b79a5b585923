"""Fixtures of the database end-to-end tests: a local inventory, a private store, one-task plays."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml


@pytest.fixture(scope="session")
def local_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An inventory of one host, ``db``, reached with the local connection and this Python."""
    path = tmp_path_factory.mktemp("dbinv") / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"db": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    return path


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A fresh checkpoint store directory (created by the modules)."""
    return tmp_path / "store"


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Factory of database names unique to the session."""
    return lambda prefix: "%s_%s" % (prefix, uuid.uuid4().hex[:8])


@pytest.fixture
def run_task(run_playbook, local_inventory: Path) -> Callable[..., Any]:
    """``run_task(module, args, check=False, diff=False, name='task')`` runs one task on ``db``.

    Returns ``(result, task_result)``; ``task_result`` is the module's return value plus
    ``status`` (``ok``, or ``ignored`` when the module failed).
    """

    def run(module: str, args: dict, check: bool = False, diff: bool = False, name: str = "task",
            extra_tasks: list | None = None) -> tuple:
        play = [{"name": "db", "hosts": "db", "gather_facts": False,
                 "tasks": [{"name": name, module: args, "ignore_errors": True}] + (extra_tasks or [])}]
        result = run_playbook(play, inventory=local_inventory, check=check, diff=diff)
        event = result.results(name, "db")[-1]
        return result, dict(event["result"], status=event["status"])

    return run
