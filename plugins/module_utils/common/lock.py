# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An exclusive lock file with an owner, a process identity and an expiry.

A lock is stale when its expiry has passed, or when it was taken on this host and its
process is gone (or the pid now belongs to another process, told by its start time).
A stale lock is recovered by renaming it away, so only one contender wins.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import time
from datetime import datetime, timezone
from typing import Optional

from .errors import LockHeldError

DEFAULT_TTL = 3600.0


def default_owner(owner: Optional[str] = None) -> str:
    """Return the acting owner: the given one, else user@host of this process."""
    if owner:
        return owner
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return "%s@%s" % (user, socket.gethostname())


def process_start(pid: int) -> Optional[str]:
    """Return the kernel start time of ``pid`` (field 22 of /proc/pid/stat), or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw.rsplit(")", 1)[-1].split()[19]


def process_alive(pid: int, start: Optional[str]) -> bool:
    """Tell whether ``pid`` runs and is the process that started at ``start`` (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    current = process_start(pid)
    return start is None or current is None or current == start


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> str:
    """Return the current UTC time as an ISO 8601 string with a Z suffix (locks, audit records, manifests)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def holder_record(owner: str, operation: str, pid: int, ttl: float, token: str) -> dict:
    """The record a lock holder leaves: who, what, which process where, since and until when."""
    now = time.time()
    return {
        "owner": owner,
        "operation": operation,
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": process_start(pid),
        "started": _iso(now),
        "expires_epoch": now + ttl,
        "expires": _iso(now + ttl),
        "token": token,
    }


def is_stale(holder: dict) -> bool:
    """Tell whether a holder record belongs to an expired owner, or a dead process on this host."""
    if not holder:
        return True
    if time.time() > float(holder.get("expires_epoch", 0)):
        return True
    if holder.get("host") == socket.gethostname():
        return not process_alive(int(holder.get("pid", 0)), holder.get("pid_start"))
    return False


class FileLock:
    """An exclusive lock held as a JSON file created with O_EXCL."""

    def __init__(self, path: str, owner: str, operation: str, ttl: float = DEFAULT_TTL,
                 pid: Optional[int] = None) -> None:
        self.path = path
        self.pid = pid or os.getpid()
        self.owner = owner
        self.operation = operation
        self.ttl = ttl
        self.token = secrets.token_hex(8)
        self.recovered: Optional[dict] = None

    def _record(self) -> dict:
        return holder_record(self.owner, self.operation, self.pid, self.ttl, self.token)

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(self._record(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def read_holder(self) -> Optional[dict]:
        """Return the current holder's record, {} when unreadable, None when free."""
        try:
            with open(self.path, "r", encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    @staticmethod
    def is_stale(holder: dict) -> bool:
        """Tell whether a holder record belongs to an expired or dead owner."""
        return is_stale(holder)

    def _break_stale(self, holder: dict) -> None:
        aside = "%s.stale-%s" % (self.path, secrets.token_hex(4))
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        os.unlink(aside)
        self.recovered = holder

    def acquire(self, timeout: float = 0.0) -> "FileLock":
        """Take the lock, recovering a stale one; wait up to ``timeout`` seconds for a live one."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if self._try_create():
                return self
            holder = self.read_holder()
            if holder is None:
                continue
            if self.is_stale(holder):
                self._break_stale(holder)
                continue
            if time.monotonic() >= deadline:
                raise LockHeldError(
                    "%s is locked by %s (%s, pid %s on %s) since %s until %s. Wait for it to "
                    "finish, or if that process is gone on another host, remove %s."
                    % (
                        os.path.dirname(self.path), holder.get("owner"), holder.get("operation"),
                        holder.get("pid"), holder.get("host"), holder.get("started"),
                        holder.get("expires"), self.path,
                    ),
                    holder=holder,
                )
            time.sleep(0.2)

    def release(self, token: Optional[str] = None) -> bool:
        """Remove the lock if it is still ours (or holds ``token``); tell whether it was removed."""
        holder = self.read_holder()
        if holder and holder.get("token") == (token or self.token):
            os.unlink(self.path)
            return True
        return False

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def playbook_pid() -> int:
    """Return the pid of the outermost ansible-playbook (or ansible-runner) ancestor, else the parent.

    A lock taken from inside a module must outlive the module's own short-lived process, and the
    worker processes Ansible forks per task (whose command line also says ansible-playbook).
    """
    found = 0
    pid = os.getppid()
    while pid > 1:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                cmdline = handle.read().replace(b"\x00", b" ")
            with open("/proc/%d/stat" % pid, "rb") as handle:
                parent = int(handle.read().decode("ascii", "replace").rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if b"ansible-playbook" in cmdline or b"ansible-runner" in cmdline:
            found = pid
        pid = parent
    return found or os.getppid()
