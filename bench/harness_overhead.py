# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one ``playbooks/rollback.yml`` run of the test harness costs (config layer, three SSH hosts), with
and without the harness's Ansible settings (docs/benchmarks.md, "The test suite").

Usage: ``python bench/harness_overhead.py [--rounds N] [setting ...]`` with settings ``harness`` (what the
tests run with), ``no-shared-cache`` (each run builds its module payloads) and ``no-preload`` (neither:
each worker imports the collection's plugins again). CPU is user + sys of ansible-playbook and its
workers (the hosts' side is not counted); the settings alternate, round after round.
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

SETTINGS = {
    "harness": {},
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
                cpu, started = children_cpu(), time.monotonic()
                done = run_playbook(REPO / "playbooks" / "rollback.yml", inventory, {**common, "rollback_to": "v1"},
                                    env=SETTINGS[name], collections_dir=collections, cwd=work)
                assert done.ok, done
                assert all(host.read_text("/etc/app/app.conf") == "release=v1\n" for host in fleet)
                print(f"{name:16s} {time.monotonic() - started:6.1f} s wall {children_cpu() - cpu:6.1f} s CPU "
                      f"({len(done.events)} task results)", flush=True)
    finally:
        fleet.stop()


if __name__ == "__main__":
    main()
