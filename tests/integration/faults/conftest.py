"""Fixtures of the fault tests: a local inventory, engine runs in killable processes, a small tmpfs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml


@pytest.fixture(scope="session")
def local_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An inventory of one host, ``local``, reached with the local connection and this Python."""
    path = tmp_path_factory.mktemp("faultinv") / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"local": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    return path


@pytest.fixture
def engine(collections_path: Path) -> Callable[[str], subprocess.Popen]:
    """``engine(code, *args)`` starts Python code that imports the engine, in its own process."""

    def start(code: str, *args: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(collections_path))
        return subprocess.Popen([sys.executable, "-c", code, *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    return start


@pytest.fixture
def tmpfs(tmp_path: Path) -> Callable[[str], Path]:
    """``tmpfs(size)`` mounts a small tmpfs (e.g. "2m") under tmp_path; unmounted afterwards."""
    mounts = []

    def mount(size: str) -> Path:
        target = tmp_path / ("tmpfs%d" % len(mounts))
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", str(target)], check=True)
        mounts.append(target)
        return target

    yield mount
    for target in reversed(mounts):
        subprocess.run(["umount", "-l", str(target)], check=False)
