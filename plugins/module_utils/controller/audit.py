# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit log: hash-chained JSON lines on the controller, plus signed webhook events.

One line per event. A rollback writes ``started``, ``progress`` (per layer), then ``completed``
or ``failed``; a refused run writes ``refused``; the guard writes ``alert`` lines. Lines are
never rewritten; readers group them by ``run_id``. Each line is chained to the one before it
(``auditchain.py``), so a changed, removed or truncated record is found by
``gitops-rollback audit verify`` and by the report.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
from typing import Dict, Optional

from . import auditchain
from .policy import os_user_name
from ..common.lock import utc_now
from ..common.secrets import SIGNATURE_HEADER, signature

EVENTS = ("started", "progress", "completed", "failed", "refused", "alert")
LEVELS = ("info", "warning", "critical", "emergency")
DEFAULT_LOG = "~/.local/state/gitops-rollback/audit.jsonl"


def who(user: Optional[str] = None, awx_job_id: Optional[str] = None, awx_launcher: Optional[str] = None) -> dict:
    """Return the actor: the AWX job id and launcher when present; the user defaults to the process' OS user
    (never ``$USER``, which the invoker sets)."""
    actor = {"user": user or os_user_name()}
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


def alerts(record: dict) -> bool:
    """Tell whether a record goes to the webhook: a drill's records never do (a rehearsal pages
    nobody; the audit log and the report's drill section hold them)."""
    return record.get("trigger") != "drill"


def append(path: str, record: dict) -> dict:
    """Append one record to the log, chained to the previous one; return it as written.

    The directory is created 0700 and the file 0600; the line is fsynced and the head file
    replaced, all under an exclusive flock (see ``auditchain.append``).
    """
    return auditchain.append(path, record)


def webhook_headers(body: bytes, secret: Optional[str]) -> Dict[str, str]:
    """Headers of a webhook POST: with a secret, the HMAC-SHA256 signature of the exact body."""
    headers = {"Content-Type": "application/json", "User-Agent": "gitops.rollback"}
    if secret:
        headers[SIGNATURE_HEADER] = signature(body, secret)
    return headers


def post_webhook(url: str, record: dict, retries: int = 3, timeout: float = 5.0, backoff: float = 0.5,
                 secret: Optional[str] = None) -> dict:
    """POST the record as JSON (signed when a secret is given); retry on errors and 5xx.

    Returns {ok, status, attempts, signed, error}; errors never contain the URL.
    """
    # A plain opener: the engine runs without Ansible's module_utils (so no open_url here). urllib.request (its
    # HTTP, TLS and mail code) is imported here, by a POST, not by every start of a module that imports this file.
    from urllib.request import Request, build_opener  # pylint: disable=import-outside-toplevel
    opener = build_opener()
    body = json.dumps(record, sort_keys=True, default=str).encode("utf-8")
    headers = webhook_headers(body, secret)
    signed = SIGNATURE_HEADER in headers
    last_error = None
    for attempt in range(1, max(retries, 0) + 2):
        request = Request(url, data=body, method="POST", headers=headers)
        try:
            with opener.open(request, timeout=timeout) as response:  # nosec: user-given URL
                return {"ok": True, "status": response.status, "attempts": attempt, "signed": signed}
        except urllib.error.HTTPError as exc:
            last_error = "HTTP %s" % exc.code
            if exc.code < 500:
                return {"ok": False, "status": exc.code, "attempts": attempt, "signed": signed, "error": last_error}
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = "%s: %s" % (type(exc).__name__, getattr(exc, "reason", None) or exc)
            if url in last_error:
                last_error = type(exc).__name__
        time.sleep(backoff * attempt)
    return {"ok": False, "status": None, "attempts": attempt, "signed": signed, "error": last_error}
