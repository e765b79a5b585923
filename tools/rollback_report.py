# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the rollback report from the audit log, without Ansible.

    python3 tools/rollback_report.py [--log ~/.local/state/gitops-rollback/audit.jsonl]
        [--html report.html] [--prom gitops_rollback.prom] [--postmortem 'pm-{run_id}.md']
        [--run-id RUN] [--days 30] [--check] [--json]

The engine is the collection's plugins/module_utils/_report.py (standard library only), loaded
from this checkout or from an installed collection. Exit codes: 0 written (or nothing to change),
1 a problem with the input (the message says which and what to do), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import List, Optional

DEFAULT_LOG = "~/.local/state/gitops-rollback/audit.jsonl"
RELATIVE = Path("plugins") / "module_utils" / "_report.py"


def candidates() -> List[Path]:
    """Where _report.py may be: this checkout, then the collections paths."""
    found = [Path(__file__).resolve().parents[1] / RELATIVE]
    entries = os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep)
    entries += ["~/.ansible/collections", "/usr/share/ansible/collections"]
    for entry in filter(None, entries):
        base = Path(entry).expanduser()
        if base.name != "ansible_collections":
            base = base / "ansible_collections"
        found.append(base / "gitops" / "rollback" / RELATIVE)
    return found


def load_engine() -> ModuleType:
    """Import the collection's _report.py as a plain module."""
    for path in candidates():
        if path.is_file():
            spec = importlib.util.spec_from_file_location("gitops_rollback_report_engine", path)
            if spec and spec.loader:
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
                return module
    raise SystemExit("gitops.rollback's plugins/module_utils/_report.py was not found (looked in: %s). Run this "
                     "from a checkout, or install the collection." % ", ".join(str(p) for p in candidates()))


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rollback_report", description=__doc__.splitlines()[0])
    parser.add_argument("--log", default=DEFAULT_LOG, help="audit log (default %(default)s)")
    parser.add_argument("--html", help="write the HTML report here")
    parser.add_argument("--prom", help="write the Prometheus text file here (node_exporter textfile collector)")
    parser.add_argument("--postmortem", help="write the post-mortem draft here ({run_id} is replaced)")
    parser.add_argument("--overwrite-postmortem", action="store_true", help="replace an edited post-mortem draft")
    parser.add_argument("--run-id", help="rollback or guard run for the post-mortem (default: the latest)")
    parser.add_argument("--days", type=int, default=30, help="days in the daily trend (default %(default)s)")
    parser.add_argument("--max-runs", type=int, default=20, help="timelines in the HTML report (default %(default)s)")
    parser.add_argument("--title", default="Rollback report")
    parser.add_argument("--check", action="store_true", help="say what would change, write nothing")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    engine = load_engine()
    try:
        outcome = engine.write_reports(
            args.log, html_path=args.html, prom_path=args.prom, postmortem_path=args.postmortem, run_id=args.run_id,
            days=args.days, title=args.title, postmortem_overwrite=args.overwrite_postmortem, check=args.check,
            max_runs=args.max_runs)
    except (engine.ReportError, OSError) as exc:
        print("rollback_report: %s" % exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"summary": outcome["summary"], "rollback": outcome["rollback"],
                          "files": {k: {"path": v["path"], "changed": v["changed"], "kept": v["kept"]}
                                    for k, v in outcome["files"].items()}}, indent=2, sort_keys=True))
        return 0
    counts = outcome["summary"]["rollbacks"]
    print("%d rollbacks: %d succeeded, %d failed, %d refused, %d incomplete; success rate %s; MTTR %s"
          % (counts["total"], counts["success"], counts["failed"], counts["refused"], counts["incomplete"],
             engine.format_rate(outcome["summary"]["success_rate"]),
             engine.format_seconds(outcome["summary"]["mttr_seconds"])))
    for kind, planned in sorted(outcome["files"].items()):
        state = "kept (edited; --overwrite-postmortem replaces it)" if planned["kept"] else (
            ("would change" if args.check else "written") if planned["changed"] else "unchanged")
        print("%-10s %s: %s" % (kind, planned["path"], state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
