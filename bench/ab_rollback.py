# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A/B of the ordered rollback between two checkouts, interleaved in one run (for a busy machine).

    git worktree add /tmp/before <commit>      # or: git archive <commit> | tar -x -C /tmp/before
    python bench/ab_rollback.py /tmp/before . [--rounds 3] [--modes check,rollback] [--hosts 20]

Each checkout gets its own 3-host drill (``--hosts`` sets the number; bench_rollback.py's drill: v1 checkpointed,
a bad v2 in every layer) on its own fleet, one PostgreSQL for both. Each round runs ``--check`` and the rollback of both
checkouts, the order alternating between rounds, then deploys v2 again. Printed per run: wall time,
the controller's CPU seconds (ansible-playbook and what it ran on the controller), the load average
before it, tasks run and task results. Under load compare CPU and counts, not wall times.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, List


def _load(root: Path, index: int) -> Any:
    spec = importlib.util.spec_from_file_location("bench_rollback_%d" % index, root / "bench" / "bench_rollback.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("checkouts", nargs=2, type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="check,rollback")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gr-bench-ab"))
    args = parser.parse_args()
    roots = [path.resolve() for path in args.checkouts]
    modes = [("check", True), ("rollback", False)]
    modes = [mode for mode in modes if mode[0] in args.modes.split(",")]
    benches = [_load(root, index) for index, root in enumerate(roots)]
    work = args.workdir
    work.mkdir(parents=True)
    pg = benches[0].start_postgres(work / "pg")
    fleets: List[Any] = []
    drills: List[Any] = []
    try:
        for index, (root, bench) in enumerate(zip(roots, benches)):
            collections = work / ("collections%d" % index)
            link = collections / "ansible_collections" / "gitops" / "rollback"
            link.parent.mkdir(parents=True)
            link.symlink_to(root, target_is_directory=True)
            fleets.append(bench.start_hosts(args.hosts, work / ("fleet%d" % index)))
            drills.append(bench._make_drill(fleets[-1], pg, work / ("drill%d" % index), collections,
                                            {"ANSIBLE_FORKS": bench.DEFAULT_FORKS}))
        order = list(range(len(roots)))
        for round_no in range(args.rounds):
            for index in order if round_no % 2 == 0 else order[::-1]:
                bench, drill = benches[index], drills[index]
                for label, check in modes:
                    load, cpu, started = os.getloadavg()[0], _cpu(), time.monotonic()
                    result = drill.playbook("rollback.yml", check=check, rollback_to="v1")
                    if not result.ok:
                        raise AssertionError("%s %s failed: %s" % (roots[index], label, bench._failed(result)))
                    print("round %d  %-40s %-8s wall %6.1f s  CPU %5.1f s  load %4.1f  tasks %3d  results %3d" % (
                        round_no, roots[index], label, time.monotonic() - started, _cpu() - cpu, load,
                        len({(e["play"], e["task"]) for e in result.events}), len(result.events)), flush=True)
                if any(not check for _label, check in modes):
                    bench._assert_v1(drill, ours=True)
                    drill.deploy("v2")
    finally:
        for fleet in fleets:
            fleet.stop()
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
