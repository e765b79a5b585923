"""``gitops-rollback report``: the rollback report from the audit log, without Ansible.

The engine is the collection's ``plugins/module_utils/report/files.py`` (standard library only), the one
the ``rollback_report`` module runs. Exit codes: 0 written (or nothing to change), 1 a problem with
the input (the message says which and what to do), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .collection import find_collection, load_module_util

DEFAULT_LOG = "~/.local/state/gitops-rollback/audit.jsonl"


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report, the Prometheus text file and the post-mortem draft that were asked for."""
    engine = load_module_util(find_collection(args.collections_path), "report.files")
    state_url = args.state or os.environ.get("GITOPS_ROLLBACK_STATE", "")
    try:
        outcome = engine.write_reports(
            args.log, html_path=args.html, prom_path=args.prom, postmortem_path=args.postmortem, run_id=args.run_id,
            days=args.days, title=args.title, postmortem_overwrite=args.overwrite_postmortem, check=args.check,
            max_runs=args.max_runs, state_url=state_url)
    except (engine.ReportError, engine.RollbackError, OSError) as exc:
        print("gitops-rollback report: %s" % exc, file=sys.stderr)
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


def add_parser(sub: Any) -> None:
    """Add the ``report`` subcommand to the ``gitops-rollback`` parser."""
    report = sub.add_parser("report", help="HTML report, Prometheus metrics and post-mortem draft from the audit log",
                            description=__doc__.split("\n\n", maxsplit=1)[0])
    report.add_argument("--log", default=DEFAULT_LOG, help="audit log (default %(default)s)")
    report.add_argument("--state", metavar="URL",
                        help="read the audit log of the shared state (postgresql://...; default: the "
                             "GITOPS_ROLLBACK_STATE environment variable) instead of --log")
    report.add_argument("--html", help="write the HTML report here")
    report.add_argument("--prom", help="write the Prometheus text file here (node_exporter textfile collector)")
    report.add_argument("--postmortem", help="write the post-mortem draft here ({run_id} is replaced)")
    report.add_argument("--overwrite-postmortem", action="store_true", help="replace an edited post-mortem draft")
    report.add_argument("--run-id", help="rollback or guard run for the post-mortem (default: the latest)")
    report.add_argument("--days", type=int, default=30, help="days in the daily trend (default %(default)s)")
    report.add_argument("--max-runs", type=int, default=20, help="timelines in the HTML report (default %(default)s)")
    report.add_argument("--title", default="Rollback report")
    report.add_argument("--check", action="store_true", help="say what would change, write nothing")
    report.add_argument("--json", action="store_true", help="print the summary as JSON")
    report.add_argument("--collections-path", help="collections path holding gitops.rollback")
    report.set_defaults(func=cmd_report)
