# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared controller state in PostgreSQL: run locks, guard cooldown, approvals and the audit log.

Local files under ``~/.local/state/gitops-rollback`` stay the default. A ``postgresql://`` URL
(``gitops_rollback_state``) moves that state into the schema ``gitops_rollback`` of one database,
so every controller sees it: AWX jobs whose execution-environment container is thrown away after
each job, and two operators on two machines. Each operation is one transaction serialised by a
transaction-scoped advisory lock, so a check and a take cannot interleave with another's. The audit
log keeps the hash chain of the file log (``controller.auditchain``): each row holds the record's canonical
JSON, exactly the bytes its hash is taken over.

Needs psycopg2 on the controller (``pip install psycopg2-binary``).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .auditchain import GENESIS, canonical, record_hash, seal
from ..common.errors import LockHeldError, RollbackError
from ..health.cooldown import CooldownDecision
from ..common.lock import DEFAULT_TTL, holder_record, is_stale
from ..common.secrets import MASK, redact_url

SCHEMA = "gitops_rollback"
URL_PATTERN = re.compile(r"^postgres(ql)?://")
_SCHEMA_SQL = (
    "CREATE SCHEMA IF NOT EXISTS gitops_rollback",
    "CREATE TABLE IF NOT EXISTS gitops_rollback.locks (name text PRIMARY KEY, holder jsonb NOT NULL)",
    "CREATE TABLE IF NOT EXISTS gitops_rollback.cooldown (key text PRIMARY KEY, last_rollback double precision "
    "NOT NULL)",
    "CREATE TABLE IF NOT EXISTS gitops_rollback.audit (seq bigint PRIMARY KEY, hash text NOT NULL, "
    "body text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS gitops_rollback.approvals (id bigserial PRIMARY KEY, record text NOT NULL, "
    "added timestamptz NOT NULL DEFAULT now())",
)
APPROVALS_READ = 1000  # the newest records a waiting rollback looks at


def is_state_url(value: Optional[str]) -> bool:
    """Tell whether ``value`` selects the PostgreSQL backend (an empty value means local files)."""
    return bool(value) and bool(URL_PATTERN.match(value or ""))


def open_state(url: Optional[str], dry_run: bool = False) -> Optional["PgState"]:
    """The shared state ``url`` names, or None for local files; a dry run creates no schema."""
    if not url:
        return None
    return PgState(url, create=not dry_run)


def redacted(url: str) -> str:
    """The URL for messages: its password, and every token-like query parameter (``?password=``,
    ``?sslpassword=``), masked; a ``key=value`` DSN (``password=...``) is masked whole, a path shown."""
    if "://" in url:
        return redact_url(url)
    return MASK if "=" in url else url


class PgState:
    """One connection to the shared state; every public method is one transaction."""

    def __init__(self, url: str, create: bool = True, connect_timeout: int = 10) -> None:
        if not is_state_url(url):
            raise RollbackError("gitops_rollback_state must be empty (local files) or a postgresql:// URL, "
                                "got %r." % redacted(url or ""))
        try:  # imported when the backend is chosen: not by every module start, nor when the collection loads
            import psycopg2  # pylint: disable=import-outside-toplevel
        except ImportError:
            raise RollbackError("The PostgreSQL state backend (%s) needs psycopg2 on the controller: "
                                "pip install psycopg2-binary." % redacted(url)) from None
        self.url = url
        self._errors = psycopg2.Error
        try:
            self.conn = psycopg2.connect(url, connect_timeout=connect_timeout,
                                         application_name="gitops-rollback state")
        except psycopg2.Error as exc:
            raise RollbackError("The shared state %s cannot be reached: %s. Check gitops_rollback_state and "
                                "that the database accepts this controller." % (redacted(url), _first_line(exc))) from exc
        self.ready = False
        if create:
            self.ensure_schema()
        else:  # a dry run reads what is there and creates nothing
            with self.transaction("schema") as cursor:
                cursor.execute("SELECT to_regclass('gitops_rollback.audit') IS NOT NULL")
                self.ready = bool(cursor.fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> "PgState":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, lock_key: str) -> Iterator[Any]:
        """A transaction holding the advisory lock named ``lock_key`` until it ends."""
        try:
            with self.conn:
                with self.conn.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                                   ("gitops_rollback:" + lock_key,))
                    yield cursor
        except self._errors as exc:
            raise RollbackError("The shared state %s refused an update: %s"
                                % (redacted(self.url), _first_line(exc))) from exc

    def ensure_schema(self) -> None:
        """Create the schema and its tables when missing."""
        with self.transaction("schema") as cursor:
            for statement in _SCHEMA_SQL:
                cursor.execute(statement)
        self.ready = True

    # -- run locks -------------------------------------------------------------------------------

    def lock_holder(self, name: str) -> Optional[dict]:
        """The holder record of lock ``name``, or None when it is free."""
        if not self.ready:
            return None
        with self.transaction("lock:" + name) as cursor:
            cursor.execute("SELECT holder FROM gitops_rollback.locks WHERE name = %s", (name,))
            row = cursor.fetchone()
        return row[0] if row else None

    def try_lock(self, name: str, holder: dict) -> Dict[str, Any]:
        """Take lock ``name`` for ``holder`` unless a live holder has it: {"taken", "holder", "recovered"}."""
        with self.transaction("lock:" + name) as cursor:
            cursor.execute("SELECT holder FROM gitops_rollback.locks WHERE name = %s", (name,))
            row = cursor.fetchone()
            current = row[0] if row else None
            if current and not is_stale(current):
                return {"taken": False, "holder": current, "recovered": None}
            cursor.execute("INSERT INTO gitops_rollback.locks (name, holder) VALUES (%s, %s) ON CONFLICT (name) "
                           "DO UPDATE SET holder = EXCLUDED.holder", (name, json.dumps(holder)))
        return {"taken": True, "holder": holder, "recovered": current}

    def unlock(self, name: str, token: str) -> bool:
        """Release lock ``name`` if ``token`` holds it; tell whether it was released."""
        with self.transaction("lock:" + name) as cursor:
            cursor.execute("DELETE FROM gitops_rollback.locks WHERE name = %s AND holder->>'token' = %s",
                           (name, token))
            return cursor.rowcount == 1

    # -- guard cooldown --------------------------------------------------------------------------

    def cooldown(self, key: str, seconds: float, record: bool, now: Optional[float] = None) -> CooldownDecision:
        """Check the cooldown of ``key`` and, when allowed and ``record``, record ``now`` as its last rollback."""
        now = time.time() if now is None else now
        if not self.ready and not record:
            return CooldownDecision(key, True, None, None, False)  # a pure check creates nothing
        with self.transaction("cooldown:" + key) as cursor:
            cursor.execute("SELECT last_rollback FROM gitops_rollback.cooldown WHERE key = %s", (key,))
            row = cursor.fetchone()
            last = row[0] if row else None
            next_allowed = last + seconds if last is not None else None
            allowed = next_allowed is None or now >= next_allowed
            if not (allowed and record):
                return CooldownDecision(key, allowed, last, next_allowed, False)
            cursor.execute("INSERT INTO gitops_rollback.cooldown (key, last_rollback) VALUES (%s, %s) "
                           "ON CONFLICT (key) DO UPDATE SET last_rollback = EXCLUDED.last_rollback", (key, now))
        return CooldownDecision(key, True, now, now + seconds, True)

    # -- approvals -------------------------------------------------------------------------------

    def add_approval(self, record: str) -> None:
        """Store an approval record (``gitops-rollback approve``); the waiting rollback checks its signature."""
        with self.transaction("approvals") as cursor:
            cursor.execute("INSERT INTO gitops_rollback.approvals (record) VALUES (%s)", (record,))

    def approvals(self) -> List[str]:
        """The newest approval records, oldest first (none before the schema exists)."""
        if not self.ready:
            return []
        with self.transaction("approvals-read") as cursor:
            cursor.execute("SELECT record FROM (SELECT id, record FROM gitops_rollback.approvals ORDER BY id DESC "
                           "LIMIT %s) newest ORDER BY id", (APPROVALS_READ,))
            return [record for (record,) in cursor.fetchall()]

    # -- audit log -------------------------------------------------------------------------------

    def append_audit(self, record: Dict[str, Any]) -> Dict[str, Any]:
        """Append ``record`` to the chained audit log; return it sealed (seq, prev_hash, hash)."""
        with self.transaction("audit") as cursor:
            cursor.execute("SELECT seq, hash FROM gitops_rollback.audit ORDER BY seq DESC LIMIT 1")
            row = cursor.fetchone()
            sealed = seal(record, row[0] + 1 if row else 1, row[1] if row else GENESIS)
            cursor.execute("INSERT INTO gitops_rollback.audit (seq, hash, body) VALUES (%s, %s, %s)",
                           (sealed["seq"], sealed["hash"], canonical(sealed).decode("ascii")))
        return sealed

    def audit_records(self) -> List[Dict[str, Any]]:
        """Every audit record, oldest first, with its hash."""
        if not self.ready:
            return []
        with self.transaction("audit-read") as cursor:
            cursor.execute("SELECT hash, body FROM gitops_rollback.audit ORDER BY seq")
            rows = cursor.fetchall()
        return [dict(json.loads(body), hash=digest) for digest, body in rows]

    def read_audit(self) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
        """Every audit record, and what checking the hash chain found (as ``controller.auditchain`` reports a file)."""
        records = self.audit_records()
        problems = []
        expected_seq, expected_prev = 1, GENESIS
        for record in records:
            seq = record.get("seq")
            if seq != expected_seq:
                problems.append(_problem(seq, "missing", "record %d is missing (removed or reordered); record %s "
                                                         "follows" % (expected_seq, seq)))
            elif record.get("prev_hash") != expected_prev:
                problems.append(_problem(seq, "broken", "record %s does not follow the record before it" % seq))
            if record_hash(record) != record["hash"]:
                problems.append(_problem(seq, "altered", "record %s was changed after it was written" % seq))
            expected_seq, expected_prev = int(seq or expected_seq) + 1, record["hash"]
        where = "%s: %d record(s)" % (redacted(self.url), len(records))
        summary = where + (", hash chain intact." if not problems else ". BROKEN: %s" % problems[0]["message"])
        return records, {"path": redacted(self.url), "ok": not problems, "records": len(records),
                         "legacy_records": 0, "chain_starts_at_line": 1 if records else None,
                         "last_seq": records[-1].get("seq") if records else None,
                         "first_problem": problems[0] if problems else None, "problems": problems[:100],
                         "problem_count": len(problems), "notes": [], "summary": summary}


class PgLock:
    """The run lock of :class:`~._lock.FileLock`, kept in the shared state."""

    def __init__(self, state: PgState, name: str, owner: str, operation: str, ttl: float = DEFAULT_TTL,
                 pid: int = 0) -> None:
        self.state = state
        self.name = name
        self.owner = owner
        self.operation = operation
        self.ttl = ttl
        self.pid = pid
        self.token = secrets.token_hex(8)
        self.recovered: Optional[dict] = None

    def read_holder(self) -> Optional[dict]:
        """The current holder's record, or None when free."""
        return self.state.lock_holder(self.name)

    def acquire(self, timeout: float = 0.0) -> "PgLock":
        """Take the lock, recovering an expired one; wait up to ``timeout`` seconds for a live one."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            outcome = self.state.try_lock(self.name, holder_record(self.owner, self.operation, self.pid, self.ttl,
                                                                   self.token))
            if outcome["taken"]:
                self.recovered = outcome["recovered"]
                return self
            if time.monotonic() >= deadline:
                holder = outcome["holder"]
                raise LockHeldError(
                    "%s is locked in the shared state %s by %s (%s, pid %s on %s) since %s until %s. Wait for it "
                    "to finish; the lock expires by itself at that time."
                    % (self.name, redacted(self.state.url), holder.get("owner"), holder.get("operation"),
                       holder.get("pid"), holder.get("host"), holder.get("started"), holder.get("expires")),
                    holder=holder)
            time.sleep(0.2)

    def release(self, token: Optional[str] = None) -> bool:
        """Remove the lock if it is still ours (or holds ``token``)."""
        return self.state.unlock(self.name, token or self.token)


def _problem(seq: Any, kind: str, message: str) -> Dict[str, Any]:
    return {"line": None, "seq": seq, "kind": kind, "message": message}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
