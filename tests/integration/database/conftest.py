"""Fixtures of the database tests: a local inventory (role runs), a private store, unique names."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Callable

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
