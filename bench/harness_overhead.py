# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one ``playbooks/rollback.yml`` run of the test harness costs (config layer, three SSH hosts), with
and without the harness's Ansible settings (docs/benchmarks.md, "The test suite").

Usage: ``python bench/harness_overhead.py [--rounds N] [setting ...]`` with settings ``harness`` (what the
tests run with), ``no-bytecode`` (the payloads carry source alone, which the hosts compile at every task, and
PYTHONUNBUFFERED is set as a CI environment may set it), ``no-shared-cache`` (each run builds its module payloads)
and ``no-preload`` (none of these: each worker imports the collection's plugins again). CPU is user + sys of
ansible-playbook and its workers; "all" adds the hosts' side (sshd, the module processes), measured in a cpuacct
cgroup of this process where one can be made (root, cgroup v1). The settings alternate, round after round.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import collections_path, run_playbook, start_hosts  # noqa: E402  pylint: disable=wrong-import-position
from harness.cpuacct import own_cgroup  # noqa: E402  pylint: disable=wrong-import-position

SETTINGS = {
    "harness": {},
    "no-bytecode": {"GITOPS_HARNESS_BYTECODE": "0", "PYTHONUNBUFFERED": "1"},
    "no-shared-cache": {"GITOPS_HARNESS_ANSIBALLZ_CACHE": ""},
    "no-preload": {"GITOPS_HARNESS_PRELOAD": "0"},
}


def children_cpu() -> float:
    """User + sys seconds of the waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    group = own_cgroup()  # before the hosts start: their processes are counted too

    def all_cpu() -> float:
        return int((group / "cpuacct.usage").read_text(encoding="ascii")) / 1e9 if group else float("nan")

    work = Path(tempfile.mkdtemp(prefix="harness-overhead-"))
    collections = collections_path(work / "collections")
    fleet = start_hosts(3, work / "fleet")
    inventory = fleet.write_inventory(work / "inventory.yml")
    common = {"gitops_rollback_paths": ["/srv/app", "/etc/app"], "gitops_rollback_audit_log": str(work / "audit.jsonl"),
              "rollback_lock_dir": str(work / "locks")}

    def deploy(version: str) -> None:
        for host in fleet:
            host.write_text("/srv/app/index.html", f"{host.name} {version}\n")
            host.write_text("/etc/app/app.conf", f"release={version}\n")

    try:
        deploy("v1")
        taken = run_playbook(REPO / "playbooks" / "checkpoint.yml", inventory, {**common, "checkpoint_label": "v1"},
                             collections_dir=collections, cwd=work)
        assert taken.ok, taken
        for _round in range(args.rounds):
            for name in args.settings:
                deploy("v2")
                cpu, started, everything = children_cpu(), time.monotonic(), all_cpu()
                done = run_playbook(REPO / "playbooks" / "rollback.yml", inventory, {**common, "rollback_to": "v1"},
                                    env=SETTINGS[name], collections_dir=collections, cwd=work)
                assert done.ok, done
                assert all(host.read_text("/etc/app/app.conf") == "release=v1\n" for host in fleet)
                print(f"{name:16s} {time.monotonic() - started:6.1f} s wall {children_cpu() - cpu:6.1f} s CPU "
                      f"{all_cpu() - everything:6.1f} s CPU all "
                      f"({len(done.events)} task results)", flush=True)
    finally:
        fleet.stop()


if __name__ == "__main__":
    main()
