# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback report files from the audit log: HTML page, Prometheus text file, post-mortem draft.

:func:`write_reports` reads the log, computes the numbers (``report.runs``, ``report.analytics``), draws the asked
files (``report.html``, ``report.prometheus``, ``report.markdown``) and writes those whose content
changed. The ``rollback_report`` module and the ``gitops-rollback report`` command call it.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

from ..common.errors import RollbackError, StoreFullError
from ..common.fsutil import atomic_write_bytes
from .analytics import analyze, select_run
from .runs import ReportError, read_log
from .text import format_rate, format_seconds

# what callers use besides write_reports (the command line prints the summary with the format helpers)
__all__ = ["ReportError", "format_rate", "format_seconds", "plan_file", "write_reports"]

RUN_ID_PLACEHOLDER = "{run_id}"
REPORT_FILE_MODE = 0o644  # whatever the umask: node_exporter or a web server reads them


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def _write(path: str, text: str) -> None:
    """Write a report file atomically (readers never see half), readable by all (node_exporter, a web server)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        atomic_write_bytes(path, text.encode("utf-8"), mode=REPORT_FILE_MODE, exact_mode=True)
    except StoreFullError as exc:
        raise ReportError("No space left on the device while writing %s; free space and run again." % path) from exc


def plan_file(path: str, text: str, keep_edits: bool = False) -> dict:
    """What writing ``text`` to ``path`` would do: {path, changed, kept, before}."""
    before = _read_text(path)
    kept = keep_edits and before is not None and before != text
    return {"path": path, "changed": before != text and not kept, "kept": kept, "before": before}


def read_state_log(state_url: str) -> Tuple[List[dict], dict]:
    """The records of the shared state's audit log and what checking its hash chain found."""
    # The shared state's code (and each renderer below) only when used: every file a module imports is compiled at
    # its start (Ansible sends them as source).
    from ..controller.state_pg import PgState  # pylint: disable=import-outside-toplevel
    try:
        with PgState(state_url, create=False) as state:
            return state.read_audit()
    except RollbackError as exc:
        raise ReportError(str(exc)) from exc


def write_reports(log_path: str, html_path: Optional[str] = None, prom_path: Optional[str] = None,
                  postmortem_path: Optional[str] = None, run_id: Optional[str] = None, days: int = 30,
                  title: str = "Rollback report", postmortem_overwrite: bool = False, check: bool = False,
                  max_runs: int = 20, state_url: str = "") -> dict:
    """Read the log, compute the summary and write the asked files; in check mode only say what would change.

    The log is the shared state's when ``state_url`` is set, else the file ``log_path``.

    Files are rewritten only when their content differs. A post-mortem draft that exists with other
    content (someone edited it) is kept unless ``postmortem_overwrite``. ``{run_id}`` in
    ``postmortem_path`` is replaced by the run's id.
    """
    records, integrity = read_state_log(state_url) if state_url else read_log(log_path)
    rollbacks, drills, summary = analyze(records, days)
    summary["integrity"] = integrity
    files: Dict[str, dict] = {}
    texts: Dict[str, str] = {}
    chosen = None
    # pylint: disable=import-outside-toplevel  # each renderer only for its file (see read_state_log)
    if html_path:
        from .html import render_html
        source = integrity["path"] if state_url else os.path.expanduser(log_path)
        texts["html"] = render_html(rollbacks, summary, title, source, max_runs)
        files["html"] = plan_file(os.path.expanduser(html_path), texts["html"])
    if prom_path:
        from .prometheus import render_prometheus
        texts["prom"] = render_prometheus(summary)
        files["prom"] = plan_file(os.path.expanduser(prom_path), texts["prom"])
    if postmortem_path or run_id:  # a drill's rollback only when asked for by its id
        chosen = select_run(rollbacks + ([r for d in drills for r in d.rollbacks] if run_id else []), run_id)
    if postmortem_path:
        from .markdown import render_postmortem
        texts["postmortem"] = render_postmortem(chosen, summary)
        path = os.path.expanduser(postmortem_path).replace(RUN_ID_PLACEHOLDER, chosen.run_id if chosen else "none")
        files["postmortem"] = plan_file(path, texts["postmortem"], keep_edits=not postmortem_overwrite)
    if not check:
        for kind, planned in files.items():
            if planned["changed"]:
                _write(planned["path"], texts[kind])
    summary = dict(summary)
    summary.pop("runs")
    return {"summary": summary, "files": files, "texts": texts,
            "rollback": chosen.as_dict() if chosen else None, "changed": any(f["changed"] for f in files.values())}
