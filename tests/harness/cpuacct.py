"""CPU per test, the processes it started included (``GITOPS_HARNESS_CPU_LOG``).

With ``GITOPS_HARNESS_CPU_LOG=<file>`` each pytest process (each xdist worker) moves itself into a
cgroup of its own (cgroup v1 ``cpuacct``, as root), so everything it starts afterwards is counted
there: ``ansible-playbook`` and its forks, the SSH hosts' sshd and module processes, the database
servers a fixture starts. Each test appends one line ``test<TAB>cpu seconds<TAB>wall seconds``, its
setup and teardown included: a fixture's server is counted in the first test that asks for it, its
idle CPU in the tests that run while it lives. Other sessions' processes on the machine are not
counted, so the figures hold on a busy machine (the wall time does not).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest

CPU_LOG_ENV = "GITOPS_HARNESS_CPU_LOG"
CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")


def own_cgroup() -> Path | None:
    """A new cpuacct cgroup holding this process, or None where cgroups cannot be made."""
    group = CPUACCT_ROOT / f"gitops-harness-{os.getpid()}"
    try:
        group.mkdir(exist_ok=True)
        (group / "cgroup.procs").write_text(f"{os.getpid()}\n", encoding="ascii")
    except OSError:
        return None
    return group


class CpuLog:
    """The pytest plugin: one line per test into the log file."""

    def __init__(self, log: str, group: Path) -> None:
        self.log = log
        self.group = group
        self.usage = group / "cpuacct.usage"

    def _cpu_seconds(self) -> float:
        return int(self.usage.read_text(encoding="ascii")) / 1e9

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        cpu, wall = self._cpu_seconds(), time.monotonic()
        yield
        line = f"{item.nodeid}\t{self._cpu_seconds() - cpu:.2f}\t{time.monotonic() - wall:.1f}\n"
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(line)

    def pytest_unconfigure(self) -> None:
        """Leave the cgroup and remove it (it stays while a process started here still runs)."""
        try:
            (CPUACCT_ROOT / "cgroup.procs").write_text(f"{os.getpid()}\n", encoding="ascii")
            self.group.rmdir()
        except OSError:
            pass


def register(config: pytest.Config) -> None:
    """Register the plugin when ``GITOPS_HARNESS_CPU_LOG`` names a file and a cgroup can be made."""
    log = os.environ.get(CPU_LOG_ENV)
    if not log:
        return
    group = own_cgroup()
    if group is None:
        print(f"{CPU_LOG_ENV}: no cpuacct cgroup could be made under {CPUACCT_ROOT} (root and cgroup v1 needed)")
        return
    config.pluginmanager.register(CpuLog(log, group), "gitops-harness-cpu-log")
