"""The state file: which tags and event ids were processed, written atomically under a lock.

Format (JSON, ``format_version`` 1)::

    {"format_version": 1,
     "tags": {"v2": {"action": "checkpoint", "target": "", "commit": "<sha>", "event_id": "",
                     "source": "post-receive", "status": "successful", "started": "...",
                     "finished": "...", "run": "<runner ident>"}},
     "events": {"<delivery id>": "<time seen>"},
     "baselines": {"<repository>": "<time>"},
     "refused": [{"ref": "'refs/tags/v\\x7b\\x7b...'", "reason": "Tag ... is refused: ...",
                  "event_id": "", "source": "post-receive", "time": "..."}]}

A ref whose tag, rollback target or commit is outside the label grammar is recorded under
``refused`` (its name and the reason escaped, the newest ``MAX_REFUSED`` kept) and nothing runs.
A tag is recorded *before* its playbook starts (status ``running``), so a second trigger for the
same tag, concurrent or later, is ignored: each tag runs at most once. A failed run stays
recorded (status ``failed``); run it again with ``trigger --force`` or ``forget`` it first.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

FORMAT_VERSION = 1
MAX_EVENTS = 5000
MAX_REFUSED = 1000
BASELINE = "baseline"


class StateError(RuntimeError):
    """The state file cannot be read or written."""


def now() -> str:
    """UTC time as ISO 8601 text."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_state_path() -> Path:
    """$GITOPS_ROLLBACK_STATE, else $XDG_STATE_HOME/gitops-rollback/state.json."""
    explicit = os.environ.get("GITOPS_ROLLBACK_STATE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "gitops-rollback" / "state.json"


class State:
    """The decoded state; mutate through the methods, saved by :meth:`StateFile.transaction`."""

    def __init__(self, data: Optional[Dict[str, Any]] = None) -> None:
        data = data or {}
        self.tags: Dict[str, Dict[str, Any]] = dict(data.get("tags") or {})
        self.events: Dict[str, str] = dict(data.get("events") or {})
        self.baselines: Dict[str, str] = dict(data.get("baselines") or {})
        self.refused: List[Dict[str, Any]] = list(data.get("refused") or [])

    def to_json(self) -> Dict[str, Any]:
        """The JSON document."""
        return {"format_version": FORMAT_VERSION, "tags": self.tags, "events": self.events,
                "baselines": self.baselines, "refused": self.refused}

    def refuse(self, decision: Any) -> None:
        """Record a refused ref (``decision`` carries the ref and the reason escaped already)."""
        self.refused.append({"ref": decision.ref, "reason": decision.reason, "event_id": decision.event_id,
                             "source": decision.source, "time": now()})
        del self.refused[:-MAX_REFUSED]

    def start(self, decision: Any, run: str) -> None:
        """Record that the run for ``decision`` starts now (the tag counts as processed from here)."""
        self.tags[decision.tag] = {
            "action": decision.action, "target": decision.target, "commit": decision.commit,
            "event_id": decision.event_id, "source": decision.source, "status": "running",
            "started": now(), "finished": None, "run": run,
        }
        self.see_event(decision.event_id)

    def finish(self, tag: str, status: str, rc: Optional[int]) -> None:
        """Record the outcome of a tag's run."""
        entry = self.tags.setdefault(tag, {})
        entry.update({"status": status, "rc": rc, "finished": now()})

    def see_event(self, event_id: str) -> None:
        """Remember a delivery id (the oldest are forgotten past MAX_EVENTS)."""
        if not event_id:
            return
        self.events[event_id] = now()
        if len(self.events) > MAX_EVENTS:
            for old in sorted(self.events, key=self.events.__getitem__)[: len(self.events) - MAX_EVENTS]:
                del self.events[old]

    def set_baseline(self, repository: str, tags: List[str]) -> None:
        """Mark the tags a repository had when first watched: they are history, not new pushes."""
        for tag in tags:
            self.tags.setdefault(tag, {"action": BASELINE, "status": BASELINE, "started": now()})
        self.baselines[repository] = now()

    def forget(self, tag: str) -> bool:
        """Drop a tag so it can run again; tell whether it was there."""
        return self.tags.pop(tag, None) is not None


class JsonFile:
    """A JSON document guarded by an exclusive ``flock`` on ``<path>.lock``, written atomically.

    Subclasses name the document (``kind``), its ``format_version`` and what an absent file reads as
    (``empty``); ``decode``/``encode`` turn the JSON into the object handed out and back.
    """

    kind = "JSON file"
    format_version = FORMAT_VERSION

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def empty(self) -> Dict[str, Any]:
        """What an absent file holds."""
        return {"format_version": self.format_version}

    def decode(self, data: Dict[str, Any]) -> Any:
        """The object handed out for the file's JSON."""
        return data

    def encode(self, value: Any) -> Dict[str, Any]:
        """The JSON written for the object."""
        return value

    def read(self) -> Any:
        """Read without locking (for display); refuse a link, a non-file and a file others could have written."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return self.decode(self.empty())
        except OSError as exc:
            raise StateError(self._unreadable(exc)) from exc
        try:
            self._check_trusted(os.fstat(fd))
            with os.fdopen(fd, "rb") as handle:
                fd = -1
                data = json.loads(handle.read().decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise StateError(self._unreadable(exc)) from exc
        finally:
            if fd >= 0:
                os.close(fd)
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != self.format_version:
            raise StateError(f"{self.kind} {self.path} has format_version {version!r}; this gitops-rollback "
                             f"reads {self.format_version}. Use the gitops-rollback that wrote it.")
        return self.decode(data)

    def _unreadable(self, exc: BaseException) -> str:
        if getattr(exc, "errno", None) == errno.ELOOP:
            return (f"{self.kind} {self.path} is a symbolic link; it is never followed. Remove the link and give "
                    "the real path.")
        return f"{self.kind} {self.path} is unreadable ({exc}). Fix or move it away; a new one starts empty."

    def _check_trusted(self, info: os.stat_result) -> None:
        """Refuse what is not a regular file owned by this user (or root) and writable by its owner only."""
        if not stat.S_ISREG(info.st_mode):
            raise StateError(f"{self.kind} {self.path} is not a regular file. Move it away; a new one starts empty.")
        if info.st_uid not in (os.geteuid(), 0):
            raise StateError(f"{self.kind} {self.path} belongs to uid {info.st_uid}, not to this user "
                             f"(uid {os.geteuid()}): its entries are not trusted. Check it, then chown it.")
        if info.st_mode & 0o022:
            raise StateError(f"{self.kind} {self.path} is writable by others (mode {info.st_mode & 0o777:04o}): its "
                             f"entries are not trusted. Check it, then `chmod go-w {self.path}`.")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """Lock, read, yield the document, then write it back atomically (also when unchanged)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            lock = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                           0o600)
        except OSError as exc:
            raise StateError(f"The lock {self.lock_path} of {self.kind.lower()} {self.path} cannot be opened ({exc}); "
                             "a symbolic link there is never followed: remove it.") from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            value = self.read()
            yield value
            self._write(self.encode(value))
        finally:
            os.close(lock)  # releases the flock

    def _write(self, data: Dict[str, Any]) -> None:
        text = json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=str(self.path.parent))
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(str(self.path.parent), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class StateFile(JsonFile):
    """The state file of processed tags and event ids."""

    kind = "State file"

    def decode(self, data: Dict[str, Any]) -> State:
        return State(data)

    def encode(self, value: State) -> Dict[str, Any]:
        return value.to_json()
