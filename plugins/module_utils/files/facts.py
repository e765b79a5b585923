# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host facts recorded in a checkpoint: installed package versions and service states."""

from __future__ import annotations

import shutil
from typing import Dict, Sequence

from ..common.errors import CommandError
from ..common.process import run


def installed_packages() -> Dict[str, str]:
    """Return {package: version} from dpkg or rpm."""
    if shutil.which("dpkg-query"):
        out = run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n"], "dpkg-query").stdout
        rows = (line.split("\t") for line in out.decode("utf-8", "replace").splitlines())
        return {row[0]: row[1] for row in rows if len(row) == 3 and row[2].startswith("ii")}
    if shutil.which("rpm"):
        out = run(["rpm", "-qa", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}\n"], "rpm -qa").stdout
        rows = (line.split("\t") for line in out.decode("utf-8", "replace").splitlines())
        return {row[0]: row[1] for row in rows if len(row) == 2}
    return {}


def service_states() -> Dict[str, str]:
    """Return {unit: active state} from systemd, or {} where systemd is not running."""
    if not shutil.which("systemctl"):
        return {}
    try:
        out = run(["systemctl", "list-units", "--type=service", "--all", "--no-legend", "--plain", "--no-pager"],
                  "systemctl list-units").stdout
    except CommandError:
        return {}
    states = {}
    for line in out.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 4:
            states[parts[0]] = parts[2]
    return states


def collect(names: Sequence[str]) -> Dict[str, object]:
    """Return the requested facts; a fact that cannot be read is recorded as an error string."""
    readers = {"packages": installed_packages, "services": service_states}
    facts: Dict[str, object] = {}
    for name in names:
        try:
            facts[name] = readers[name]()
        except CommandError as exc:
            facts[name] = {"error": str(exc)}
    return facts
