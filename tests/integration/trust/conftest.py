"""Fixtures of the trust tests: a local inventory for their playbook runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def local_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An inventory of one host, ``local``, reached with the local connection and this Python."""
    path = tmp_path_factory.mktemp("trustinv") / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"local": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    return path
