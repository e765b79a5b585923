# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cooldown of automatic rollbacks: a JSON state file with the last rollback time per key."""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from typing import Optional

from ..common.errors import RollbackError
from ..common.fsutil import atomic_write_json

FORMAT_VERSION = 1


@dataclass
class CooldownDecision:
    """Whether an automatic rollback for ``key`` may run now, and since/until when it may not."""

    key: str
    allowed: bool
    last: Optional[float]
    next_allowed: Optional[float]
    recorded: bool

    def as_dict(self, now: float) -> dict:
        return {
            "key": self.key, "allowed": self.allowed, "recorded": self.recorded,
            "last": _iso(self.last), "next_allowed": _iso(self.next_allowed),
            "seconds_left": max(0, round(self.next_allowed - now, 1)) if self.next_allowed and not self.allowed else 0,
        }


def _read_state(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            document = json.loads(handle.read().decode("utf-8") or "{}")
    except FileNotFoundError:
        return {"format_version": FORMAT_VERSION, "last_rollback": {}}
    except ValueError as exc:
        raise RollbackError("Cooldown state %s is not valid JSON (%s). Fix or remove the file; removing it "
                            "forgets when the last automatic rollback ran." % (path, exc)) from exc
    if not isinstance(document, dict) or document.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise RollbackError("Cooldown state %s has an unknown format; remove it or use a newer collection." % path)
    document.setdefault("last_rollback", {})
    return document


def acquire(path: str, key: str, cooldown: float, record: bool, now: Optional[float] = None) -> CooldownDecision:
    """Check the cooldown of ``key`` and, when allowed and ``record``, record ``now`` as its last rollback.

    The check and the record happen under an exclusive lock of ``<path>.lock``, so two guards
    racing for the same key cannot both start a rollback.
    """
    now = time.time() if now is None else now
    if not record and not os.path.exists(path):
        return CooldownDecision(key, True, None, None, False)  # a pure check creates nothing
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(path + ".lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        state = _read_state(path)
        entry = state["last_rollback"].get(key) or {}
        last = entry.get("time")
        next_allowed = last + cooldown if last is not None else None
        allowed = next_allowed is None or now >= next_allowed
        if allowed and record:
            state["format_version"] = FORMAT_VERSION
            state["last_rollback"][key] = {"time": now, "at": _iso(now)}
            atomic_write_json(path, state)
            return CooldownDecision(key, True, now, now + cooldown, True)
        return CooldownDecision(key, allowed, last, next_allowed, False)


def _iso(stamp: Optional[float]) -> Optional[str]:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
