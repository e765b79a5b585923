# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cooldown of automatic rollbacks: a JSON state file with the last rollback time per key."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from dataclasses import dataclass
from typing import Optional

from ..common.errors import RollbackError, UnsafePathError
from ..common.fsutil import atomic_write_json
from ..common.nofollow import private_dir_problem

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


MAX_STATE = 4 << 20  # bytes of a cooldown state file


def _read_bytes(path: str) -> bytes:
    """Return the state file's content; it must be a regular file (no link) of at most MAX_STATE bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_STATE:
            raise RollbackError("Cooldown state %s is not a regular file of at most %d bytes. Nothing was read or "
                                "changed. Remove it and run again." % (path, MAX_STATE))
        return os.read(fd, MAX_STATE)
    finally:
        os.close(fd)


def _read_state(path: str) -> dict:
    try:
        document = json.loads(_read_bytes(path).decode("utf-8") or "{}")
    except FileNotFoundError:
        return {"format_version": FORMAT_VERSION, "last_rollback": {}}
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise UnsafePathError("Refusing the cooldown state %s: it is a symbolic link. Nothing was read or changed. "
                              "Remove the link and run again." % path, path=path) from None
    except ValueError as exc:
        raise RollbackError("Cooldown state %s is not valid JSON (%s). Fix or remove the file; removing it "
                            "forgets when the last automatic rollback ran." % (path, exc)) from exc
    if not isinstance(document, dict) or document.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise RollbackError("Cooldown state %s has an unknown format; remove it or use a newer collection." % path)
    document.setdefault("last_rollback", {})
    return document


def _check_directory(directory: str) -> None:
    """Refuse a state directory another user could change (they could plant a link this user would follow)."""
    unsafe = private_dir_problem(directory)
    if unsafe:
        raise UnsafePathError(
            "Refusing the cooldown state directory %s: %s, so another user could plant links or files in it. "
            "Nothing was read or changed. Give the state file a directory only this user can change (the "
            "default, ~/.local/state/gitops-rollback, is made 0700)." % (directory, unsafe), path=directory)


def _open_lock(path: str) -> int:
    """Open (creating it 0600) the lock file beside the state, following no link."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError("Refusing the cooldown lock %s: it is a symbolic link. Nothing was read or "
                                  "changed. Remove the link and run again." % path, path=path) from None
        raise


def acquire(path: str, key: str, cooldown: float, record: bool, now: Optional[float] = None) -> CooldownDecision:
    """Check the cooldown of ``key`` and, when allowed and ``record``, record ``now`` as its last rollback.

    The check and the record happen under an exclusive lock of ``<path>.lock``, so two guards
    racing for the same key cannot both start a rollback. The state's directory must be one only this
    user can change (``common.nofollow.private_dir_problem``); the lock and the state are opened
    following no link.
    """
    now = time.time() if now is None else now
    directory = os.path.dirname(os.path.abspath(path))
    _check_directory(directory)
    if not record and not os.path.lexists(path):
        return CooldownDecision(key, True, None, None, False)  # a pure check creates nothing
    os.makedirs(directory, mode=0o700, exist_ok=True)
    lock = _open_lock(path + ".lock")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    finally:
        os.close(lock)


def _iso(stamp: Optional[float]) -> Optional[str]:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
