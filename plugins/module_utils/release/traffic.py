# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nginx upstream weights: render, parse and apply (write atomically, ``nginx -t``, reload, wait)."""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..common.errors import CommandError, RollbackError
from ..common.fsutil import atomic_write_bytes, unlink_quietly
from ..common.process import run

HEADER = "# Managed by gitops.rollback.traffic_weights; edits are overwritten.\n"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+\Z")
_ADDRESS = re.compile(r"^(unix:/[^\s;{}'\"]+|\[[0-9A-Fa-f:.]+\](:\d+)?|[A-Za-z0-9_.-]+(:\d+)?)\Z")
_PARAMETER = re.compile(r"^[a-z_]+(=[A-Za-z0-9_.:]+)?\Z")
_SERVER_LINE = re.compile(r"^\s*server\s+(\S+)((?:\s+[^;\s]+)*)\s*;", re.MULTILINE)
MAX_WEIGHT = 1000


class TrafficError(RollbackError):
    """Weights or an nginx configuration that cannot be applied."""


@dataclass(frozen=True)
class Server:
    """One upstream server and its weight (0 renders as ``down``: nginx has no weight 0)."""

    address: str
    weight: int
    parameters: Sequence[str] = field(default_factory=tuple)


def validate(upstream: str, servers: Sequence[Server]) -> None:
    """Refuse names, addresses, weights or parameters that would break or inject into the config."""
    problems = []
    if not _NAME.match(upstream or ""):
        problems.append("upstream name %r must be letters, digits, '_', '.', '-'" % upstream)
    if not servers:
        problems.append("give at least one server")
    seen = set()
    for server in servers:
        if not _ADDRESS.match(server.address or ""):
            problems.append("server address %r is not host[:port], [ipv6]:port or unix:/path" % server.address)
        if server.address in seen:
            problems.append("server %s is listed twice" % server.address)
        seen.add(server.address)
        if not 0 <= server.weight <= MAX_WEIGHT:
            problems.append("weight %s of %s must be 0..%d" % (server.weight, server.address, MAX_WEIGHT))
        bad = [item for item in server.parameters if not _PARAMETER.match(item) or item.startswith(("weight", "down"))]
        if bad:
            problems.append("parameters %s of %s are not plain nginx server parameters (weight/down are set "
                            "from weight)" % (bad, server.address))
    if servers and all(server.weight == 0 for server in servers):
        problems.append("every weight is 0: nginx would answer 502 to every request; keep one server above 0")
    if problems:
        raise TrafficError("Upstream %s cannot be written: %s." % (upstream, "; ".join(problems)))


def render(upstream: str, servers: Sequence[Server]) -> str:
    """The upstream block, one ``server`` line per server, in the order given."""
    validate(upstream, servers)
    lines = [HEADER, "upstream %s {\n" % upstream]
    for server in servers:
        extra = "".join(" " + item for item in server.parameters)
        state = " weight=%d" % server.weight if server.weight else " down"
        lines.append("    server %s%s%s;\n" % (server.address, state, extra))
    lines.append("}\n")
    return "".join(lines)


def parse_weights(text: str) -> Dict[str, int]:
    """Weights of the ``server`` lines of an upstream file (``down`` is 0, no weight is 1)."""
    weights = {}
    for match in _SERVER_LINE.finditer(text or ""):
        params = match.group(2).split()
        weight = 1
        for item in params:
            if item.startswith("weight="):
                weight = int(item.split("=", 1)[1])
        weights[match.group(1)] = 0 if "down" in params else weight
    return weights


def split(stable: Sequence[str], canary: Sequence[str], canary_percent: int,
          parameters: Sequence[str] = ()) -> List[Server]:
    """Servers whose weights give the canary group ``canary_percent`` % of requests in all.

    Each canary server gets ``percent * len(stable)`` and each stable one
    ``(100 - percent) * len(canary)``, so the groups' shares are exact whatever their sizes.
    """
    if not 0 <= canary_percent <= 100:
        raise TrafficError("canary_percent %s must be 0..100." % canary_percent)
    if not stable or not canary:
        raise TrafficError("Give at least one stable and one canary server (got %d stable, %d canary)."
                           % (len(stable), len(canary)))
    canary_weight = canary_percent * len(stable)
    stable_weight = (100 - canary_percent) * len(canary)
    divisor = math.gcd(canary_weight, stable_weight) or 1
    params = tuple(parameters)
    return ([Server(address, stable_weight // divisor, params) for address in stable]
            + [Server(address, canary_weight // divisor, params) for address in canary])


def shares(servers: Sequence[Server]) -> Dict[str, float]:
    """Percentage of requests each server gets under weighted round robin."""
    total = sum(server.weight for server in servers)
    return {server.address: round(100.0 * server.weight / total, 2) if total else 0.0 for server in servers}


@dataclass
class Nginx:
    """How to call nginx: binary, extra arguments (``-p``/``-c``), reload command, pid file."""

    binary: str = "nginx"
    args: Sequence[str] = ()
    reload_command: Sequence[str] = ()
    pid_file: Optional[str] = None
    reload_timeout: float = 10.0

    def test_argv(self) -> List[str]:
        return [self.binary, *self.args, "-t", "-q"]

    def reload_argv(self) -> List[str]:
        return list(self.reload_command) or [self.binary, *self.args, "-s", "reload"]


@dataclass
class Applied:
    """What applying the weights did."""

    commands: List[List[str]]
    reload_confirmed: Optional[bool]


def apply(path: str, content: str, previous: Optional[bytes], nginx: Nginx, validate_config: bool,
          reload: bool) -> Applied:
    """Write ``content`` atomically, test the whole config, reload and wait for new workers.

    A config that fails ``nginx -t`` is reverted to ``previous`` (or removed when there was none)
    before the error is raised, so a bad weight file never stays in place.
    """
    commands: List[List[str]] = []
    atomic_write_bytes(path, content.encode("utf-8"), mode=0o644)
    if validate_config:
        commands.append(nginx.test_argv())
        try:
            run(nginx.test_argv(), "nginx -t (configuration test)")
        except CommandError as exc:
            _revert(path, previous)
            raise TrafficError("%s. The previous %s was put back; nothing was reloaded." % (exc, path),
                               **exc.details) from exc
    confirmed = None
    if reload:
        before = workers(nginx.pid_file)
        commands.append(nginx.reload_argv())
        run(nginx.reload_argv(), "nginx reload")
        if nginx.pid_file:
            confirmed = wait_for_new_workers(nginx.pid_file, before, nginx.reload_timeout)
    return Applied(commands, confirmed)


def _revert(path: str, previous: Optional[bytes]) -> None:
    if previous is None:
        unlink_quietly(path)
    else:
        atomic_write_bytes(path, previous, mode=0o644)


def master_pid(pid_file: Optional[str]) -> Optional[int]:
    """The nginx master's pid from its pid file; None when unknown."""
    if not pid_file:
        return None
    try:
        with open(pid_file, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def workers(pid_file: Optional[str]) -> "set[int]":
    """Pids of the master's child processes (its workers), read from /proc."""
    master = master_pid(pid_file)
    if master is None:
        return set()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(master):
            found.add(int(entry))
    return found


def wait_for_new_workers(pid_file: str, before: "set[int]", timeout: float) -> bool:
    """Wait until the workers that served the old config are gone and new ones run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = workers(pid_file)
        if now and not now & before:
            return True
        time.sleep(0.02)
    return False
