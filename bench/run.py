# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark runner: every figure is a ratio against the tool a user would otherwise use,
both measured in the same run on the same data.

Each ``bench/bench_<area>.py`` defines ``run(workdir: pathlib.Path, quick: bool) -> list[dict]``
returning figures: ``{"name", "ours_s", "baseline", "baseline_s", "target"}`` (a ratio
ours/baseline is computed and compared with ``target``, the highest acceptable ratio), or
``{"name", "value", "unit", "target"}`` for absolute figures (restore seconds, peak memory MB).

Usage: ``python bench/run.py [--quick] [area ...]``; prints a table, writes bench/results.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(area_file: Path):
    """Import a bench module from its file."""
    spec = importlib.util.spec_from_file_location(area_file.stem, area_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def verdict(figure: dict) -> str:
    """Return 'ok' or 'MISS' against the figure's target."""
    value = figure.get("ratio", figure.get("value"))
    target = figure.get("target")
    if target is None or value is None:
        return "-"
    return "ok" if value <= target else "MISS"


def row(area: str, figure: dict) -> str:
    """Format one figure."""
    if "baseline_s" in figure:
        figure["ratio"] = figure["ours_s"] / figure["baseline_s"] if figure["baseline_s"] else float("inf")
        text = "%.3fs vs %s %.3fs = %.2fx" % (figure["ours_s"], figure["baseline"], figure["baseline_s"], figure["ratio"])
        target = "<= %.2fx" % figure["target"] if figure.get("target") is not None else ""
    else:
        text = "%.3f %s" % (figure["value"], figure.get("unit", ""))
        target = "<= %s %s" % (figure["target"], figure.get("unit", "")) if figure.get("target") is not None else ""
    return "%-12s %-48s %-52s %-12s %s" % (area, figure["name"], text, target, verdict(figure))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("areas", nargs="*", help="areas to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller data, for a smoke run")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    files = sorted(HERE.glob("bench_*.py"))
    chosen = [f for f in files if not args.areas or f.stem[len("bench_"):] in args.areas]
    results = {}
    for area_file in chosen:
        area = area_file.stem[len("bench_"):]
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="gr-bench-", dir=args.workdir) as tmp:
            figures = load(area_file).run(Path(tmp), args.quick)
        for figure in figures:
            print(row(area, figure), flush=True)
        results[area] = figures
        print("%-12s (%.1fs)" % (area, time.monotonic() - started), flush=True)
    saved = HERE / "results.json"
    merged = json.loads(saved.read_text()) if saved.exists() else {}
    merged.update(results)  # areas not run this time keep their last figures
    saved.write_text(json.dumps(merged, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
