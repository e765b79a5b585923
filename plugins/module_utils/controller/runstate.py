# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's state on the controller: its audit records, its webhook and its run lock.

Kept in local files, or in the shared PostgreSQL state when ``state_url`` names one. The audit and
run_lock modules and the rollback_run action (which does a rollback's start and finish in-process
on the controller) all go through these functions, so a record, a webhook and a lock are the same
whoever writes them.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Union

from . import audit as _audit
from ..common.errors import LockHeldError, RollbackError
from ..common.lock import FileLock, is_stale, playbook_pid
from ..common.secrets import redact_url

if TYPE_CHECKING:
    from .state_pg import PgLock, PgState

RunLock = Union[FileLock, "PgLock"]


def open_state(url: Optional[str], dry_run: bool = False) -> Optional["PgState"]:
    """The shared state ``url`` names, or None for local files (``state_pg.open_state``). Its code is imported
    only when a URL is set: the local files are the default, and every start of a module that imports it pays."""
    if not url:
        return None
    from .state_pg import open_state as open_pg_state  # pylint: disable=import-outside-toplevel
    return open_pg_state(url, dry_run)


def append_record(state_url: str, log_path: str, record: dict) -> dict:
    """Append ``record`` to the shared state's audit log when one is set, else to the log file; return it sealed."""
    state = open_state(state_url)
    if state is None:
        return _audit.append(os.path.expanduser(log_path), record)
    with state:
        return state.append_audit(record)


def send_webhook(url: str, secret: Optional[str], record: dict, warn: Callable[[str], None],
                 retries: int = 3, timeout: float = 5.0) -> Optional[dict]:
    """POST ``record`` to the webhook (none: None); a drill's records are not sent. Problems are warnings."""
    if not url:
        return None
    if not _audit.alerts(record):
        return {"ok": True, "skipped": "a drill's records are not sent to the webhook"}
    shown = redact_url(url, origin_only=True)
    if not secret:
        warn("Webhook %s gets unsigned events: set webhook_secret so the receiver can authenticate them." % shown)
    outcome = _audit.post_webhook(url, record, retries, timeout, secret=secret)
    if not outcome["ok"]:
        warn("Webhook %s did not accept the %s event: %s" % (shown, record.get("event"), outcome.get("error")))
    return outcome


def run_lock(name: str, lock_dir: str, owner: str, operation: str, ttl: float, state_url: str,
             check_mode: bool) -> RunLock:
    """The lock named ``name``: a row of the shared state, or a file in ``lock_dir`` (created unless check mode)."""
    described = "%s of %s" % (operation, name)
    state = open_state(state_url, check_mode)
    if state is not None:
        from .state_pg import PgLock  # pylint: disable=import-outside-toplevel  # see open_state
        return PgLock(state, name, owner, described, ttl, pid=playbook_pid())
    lock_dir = os.path.expanduser(lock_dir)
    if not check_mode:  # check mode leaves no trace, not even the directory
        os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    path = os.path.join(lock_dir, hashlib.sha256(name.encode("utf-8")).hexdigest()[:24] + ".lock")
    return FileLock(path, owner, described, ttl, pid=playbook_pid())


def take_run_lock(lock: RunLock, name: str, operation: str, timeout: float, check_mode: bool) -> Dict[str, Any]:
    """Take the lock (check mode: only see that it is free); return token, holder and a recovered stale lock.

    A live holder raises LockHeldError naming it and the way out.
    """
    if check_mode:
        holder = lock.read_holder()
        if holder and not is_stale(holder):
            raise LockHeldError("A %s is already running: %s since %s (pid %s)." % (
                operation, holder.get("owner"), holder.get("started"), holder.get("pid")), holder=holder)
        return {"changed": False, "holder": holder or {}}
    try:
        lock.acquire(timeout)
    except LockHeldError as exc:
        holder = exc.details.get("holder", {})
        raise LockHeldError(
            "Refusing a second %s of %s: %s has been running one since %s (pid %s on %s). Wait for it to "
            "finish; a lock whose process died is recovered automatically."
            % (operation, name, holder.get("owner"), holder.get("started"), holder.get("pid"), holder.get("host")),
            holder=holder) from exc
    result: Dict[str, Any] = {"changed": True, "token": lock.token, "holder": lock.read_holder()}
    if lock.recovered:
        result["recovered"] = lock.recovered
    return result


def lock_name(given: str, variables: Dict[str, Any]) -> str:
    """The name a rollback's lock is taken under.

    ``given`` (gitops_rollback_lock_name), else the AWX job's inventory name (every AWX job's
    inventory is the same /runner/inventory path), else the inventory sources (two controllers
    sharing the state may keep one inventory at different paths: they name the lock).
    """
    for name in (given, variables.get("awx_inventory_name"), variables.get("tower_inventory_name")):
        if name:
            return str(name)
    return ",".join(str(source) for source in variables.get("ansible_inventory_sources") or [])


def audit_argument_spec() -> Dict[str, Any]:
    """The options of the audit module and action (a fresh dict)."""
    return {
        "event": {"type": "str", "required": True, "choices": list(_audit.EVENTS)},
        "operation": {"type": "str", "required": True, "choices": ["checkpoint", "rollback", "guard", "drill"]},
        "run_id": {"type": "str", "required": True},
        "target": {"type": "str"},
        "trigger": {"type": "str"},
        "reason": {"type": "str"},
        "level": {"type": "str", "default": "info", "choices": list(_audit.LEVELS)},
        "summary": {"type": "str"},
        "layers": {"type": "dict"},
        "hosts": {"type": "list", "elements": "str"},
        "measurements": {"type": "raw"},
        "result": {"type": "raw"},
        "duration": {"type": "float"},
        "dry_run": {"type": "bool"},
        "user": {"type": "str"},
        "awx_job_id": {"type": "str"},
        "awx_launcher": {"type": "str"},
        "log_path": {"type": "path", "default": _audit.DEFAULT_LOG},
        "webhook_url": {"type": "str", "no_log": True},
        "webhook_secret": {"type": "str", "no_log": True},
        "webhook_retries": {"type": "int", "default": 3},
        "webhook_timeout": {"type": "float", "default": 5},
        "state_url": {"type": "str", "default": "", "no_log": True},
    }


def write_record(state_url: str, log_path: str, record: dict) -> dict:
    """``append_record``, its failure a RollbackError that names where the record could not be written."""
    try:
        return append_record(state_url, log_path, record)
    except (OSError, RollbackError) as exc:
        where = "the shared state" if state_url else log_path
        raise RollbackError("The audit record could not be written to %s: %s" % (where, exc)) from exc


def record_event(params: Dict[str, Any], check_mode: bool, warn: Callable[[str], None]) -> Dict[str, Any]:
    """Write the audit record the audit module's ``params`` describe and send it to the webhook (in check mode:
    make it only); return the module's result. Raises RollbackError when the record cannot be written."""
    p = params
    record = _audit.make_record(
        p["event"], p["operation"], p["run_id"], target=p["target"], trigger=p["trigger"], reason=p["reason"],
        level=p["level"], message=p["summary"], layers=p["layers"], hosts=p["hosts"],
        measurements=p["measurements"], result=p["result"], duration=p["duration"], dry_run=p["dry_run"],
        who=_audit.who(p["user"], p["awx_job_id"], p["awx_launcher"]),
    )
    if check_mode:
        return {"changed": False, "record": record, "webhook": None}
    record = write_record(p["state_url"], p["log_path"], record)
    webhook = send_webhook(p["webhook_url"], p["webhook_secret"], record, warn, p["webhook_retries"], p["webhook_timeout"])
    return {"changed": True, "record": record, "webhook": webhook}


def run_argument_spec() -> Dict[str, Any]:
    """The options of the rollback_run action (a fresh dict)."""
    return {
        "step": {"type": "str", "required": True, "choices": ["policy", "start", "refuse", "finish"]},
        "run_id": {"type": "str", "required": True},
        "target": {"type": "str", "required": True},
        "trigger": {"type": "str", "default": "manual"},
        "reason": {"type": "str", "default": ""},
        "measurements": {"type": "raw"},
        "layers": {"type": "raw", "default": []},
        "dry_run": {"type": "bool", "default": False},
        "decision": {"type": "dict", "default": {}},
        "lock": {"type": "bool", "default": True},
        "lock_name": {"type": "str", "default": ""},
        "lock_dir": {"type": "path", "default": "~/.local/state/gitops-rollback/locks"},
        "lock_token": {"type": "str", "default": "", "no_log": False},  # an id of the lock, no secret
        "started": {"type": "float", "default": 0.0},
        "safety_label": {"type": "str", "default": ""},
        "log_path": {"type": "path", "default": _audit.DEFAULT_LOG},
        "webhook_url": {"type": "str", "default": "", "no_log": True},
        "webhook_secret": {"type": "str", "default": "", "no_log": True},
        "state_url": {"type": "str", "default": "", "no_log": True},
    }
