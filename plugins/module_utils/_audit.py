# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit log: JSON lines on the controller, appended under an flock, plus webhook events.

One line per event. A rollback writes ``started``, ``progress`` (per layer), then ``completed``
or ``failed``; a refused run writes ``refused``; the guard writes ``alert`` lines. Lines are
never rewritten; readers group them by ``run_id``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import urllib.error
import urllib.request
from typing import Dict, Iterator, List, Optional

from ._store import utc_now

EVENTS = ("started", "progress", "completed", "failed", "refused", "alert")
LEVELS = ("info", "warning", "critical", "emergency")
DEFAULT_LOG = "~/.local/state/gitops-rollback/audit.jsonl"
# A plain opener: the engine runs without Ansible's module_utils (so no open_url here).
_OPENER = urllib.request.build_opener()


def who(user: Optional[str] = None, awx_job_id: Optional[str] = None, awx_launcher: Optional[str] = None) -> dict:
    """Return the actor: the AWX job id and launcher when present, else the local user."""
    actor = {"user": user or os.environ.get("USER") or "unknown"}
    job = awx_job_id or os.environ.get("AWX_JOB_ID") or os.environ.get("JOB_ID")
    if job:
        actor["awx_job_id"] = str(job)
    if awx_launcher:
        actor["awx_launcher"] = awx_launcher
    return actor


def make_record(event: str, operation: str, run_id: str, **fields: object) -> dict:
    """Return an audit record with the time and the non-empty fields."""
    record = {"time": utc_now(), "epoch": round(time.time(), 3), "event": event, "operation": operation,
              "run_id": run_id}
    record.update({key: value for key, value in fields.items() if value not in (None, "", [], {})})
    return record


def append(path: str, record: dict) -> None:
    """Append one record to the log (directory created 0700, file 0600), durably, under an flock."""
    path = os.path.expanduser(path)
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: str) -> Iterator[dict]:
    """Yield the records of a log; a damaged line is skipped, never fatal."""
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        return
    with open(path, "r", encoding="utf-8") as handle:
        for line in handle:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def runs(records: Iterator[dict]) -> Dict[str, List[dict]]:
    """Group records by run id, in log order."""
    grouped: Dict[str, List[dict]] = {}
    for record in records:
        grouped.setdefault(record.get("run_id", "?"), []).append(record)
    return grouped


def post_webhook(url: str, record: dict, retries: int = 3, timeout: float = 5.0, backoff: float = 0.5) -> dict:
    """POST the record as JSON; retry on errors and 5xx; return {ok, status, attempts, error}."""
    body = json.dumps(record, sort_keys=True, default=str).encode("utf-8")
    last_error = None
    for attempt in range(1, max(retries, 0) + 2):
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "gitops.rollback"})
        try:
            with _OPENER.open(request, timeout=timeout) as response:  # nosec: user-given URL
                return {"ok": True, "status": response.status, "attempts": attempt}
        except urllib.error.HTTPError as exc:
            last_error = "HTTP %s" % exc.code
            if exc.code < 500:
                return {"ok": False, "status": exc.code, "attempts": attempt, "error": last_error}
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(getattr(exc, "reason", exc))
        time.sleep(backoff * attempt)
    return {"ok": False, "status": None, "attempts": attempt, "error": last_error}
