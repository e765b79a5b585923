# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each module's imports cost before it does any work.

Ansible sends a module and the module_utils it imports as source in its zip, and the host
compiles every one of them at every run (no ``__pycache__``). Per module: the CPU time (user +
sys) of ``python -c "import ansible.module_utils.basic, <the module>"`` minus that of
``python -c "import ansible.module_utils.basic"`` alone (the start every module pays anyway),
each the median of 5 runs (``GITOPS_ROLLBACK_BENCH_ROUNDS``) in fresh processes with
``PYTHONDONTWRITEBYTECODE=1`` on a fresh copy of the collection's ``plugins`` (nothing compiled
is cached; Ansible's own files are imported from the virtualenv, as compiled as they are there).
The target: within 0.06 s of the baseline.

With ``GITOPS_ROLLBACK_BENCH_BEFORE=<another checkout of the collection>`` the same figures of
that checkout too, in the same rounds, each module's two sides one after the other (ours vs before).

Usage: ``python bench/run.py start`` (``--quick``: 3 runs, a few modules), or
``python bench/bench_start.py [module ...]``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
BEFORE = os.environ.get("GITOPS_ROLLBACK_BENCH_BEFORE")
ROUNDS = int(os.environ.get("GITOPS_ROLLBACK_BENCH_ROUNDS") or 5)
TARGET_S = 0.06
QUICK_MODULES = ("checkpoint", "rollback_safety", "feature_flags")
BASELINE = "import ansible.module_utils.basic"


def modules_of(checkout: Path) -> List[str]:
    """The module names of a checkout."""
    return sorted(path.stem for path in (checkout / "plugins" / "modules").glob("*.py") if path.stem != "__init__")


def fresh_copy(checkout: Path, into: Path) -> Path:
    """Copy the checkout's plugins to ``into/ansible_collections/gitops/rollback`` (no compiled
    files); return the collections directory to put on ``PYTHONPATH``."""
    target = into / "ansible_collections" / "gitops" / "rollback"
    shutil.copytree(checkout / "plugins", target / "plugins",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return into


def cpu_of(code: str, collections: Path) -> float:
    """User + sys seconds of one fresh ``python -c code`` with the collection importable."""
    env = dict(os.environ, PYTHONPATH=str(collections), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONSTARTUP", None)
    process = subprocess.Popen([sys.executable, "-c", code], env=env,  # pylint: disable=consider-using-with
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("%s failed: %s" % (code, stderr.strip()[-2000:]))
    return usage.ru_utime + usage.ru_stime


def module_code(name: str) -> str:
    """The import a module's measurement runs."""
    return "%s, ansible_collections.gitops.rollback.plugins.modules.%s" % (BASELINE, name)


def measure(sides: Dict[str, Path], names: Dict[str, List[str]], rounds: int) -> Dict[str, Dict[str, float]]:
    """Per side, per module it has (and ``""`` for the baseline): the median CPU seconds. The sides' runs of one
    module follow each other (in turn first), so that a change of the machine's load touches both alike."""
    samples: Dict[str, Dict[str, List[float]]] = {side: {} for side in sides}
    order = list(sides)
    everything = [""] + sorted({name for wanted in names.values() for name in wanted})
    for round_number in range(rounds):
        for name in everything:
            for side in order[round_number % len(order):] + order[:round_number % len(order)]:
                if name == "" or name in names[side]:
                    code = module_code(name) if name else BASELINE
                    samples[side].setdefault(name, []).append(cpu_of(code, sides[side]))
    return {side: {name: statistics.median(values) for name, values in by_name.items()}
            for side, by_name in samples.items()}


def run(workdir: Path, quick: bool, names: Optional[List[str]] = None) -> List[dict]:
    """The figures: per module, its import CPU above the baseline (and the before checkout's)."""
    chosen = names or (list(QUICK_MODULES) if quick else modules_of(REPO))
    sides = {"ours": fresh_copy(REPO, workdir / "ours")}
    side_names = {"ours": chosen}
    if BEFORE:
        sides["before"] = fresh_copy(Path(BEFORE), workdir / "before")
        side_names["before"] = [name for name in chosen if name in modules_of(Path(BEFORE))]
    medians = measure(sides, side_names, 3 if quick else ROUNDS)
    figures = [{"name": "baseline: %s" % BASELINE, "value": medians["ours"][""], "unit": "s CPU", "target": None}]
    for name in chosen:
        above = medians["ours"][name] - medians["ours"][""]
        figures.append({"name": "%s above baseline" % name, "value": above, "unit": "s CPU", "target": TARGET_S})
        if name in medians.get("before", {}):
            figures.append({"name": "%s above baseline vs before" % name, "ours_s": max(above, 0.001),
                            "baseline": "before",
                            "baseline_s": max(medians["before"][name] - medians["before"][""], 0.001),
                            "target": None})
    return figures


def main() -> int:
    """Print the figures of the named modules (default: all)."""
    sys.path.insert(0, str(REPO / "bench"))
    from run import row  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory(prefix="gr-bench-start-") as tmp:
        for figure in run(Path(tmp), False, sys.argv[1:] or None):
            print(row("start", figure), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
