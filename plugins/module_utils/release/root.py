# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A release root and its index: the releases under it, their marks, and the atomic ``current`` symlink.

Layout of a release root (ansistrano-like)::

    releases/<id>/             one complete tree per release (never modified after it is listed)
    shared/<path>              files and directories linked into every release (log, config/app.yml)
    current -> releases/<id>   the live release; replaced by renaming a new symlink over it
    releases.json              the index: every release with label, commit, marks; written atomically
    .gitops-rollback-release.lock   held while anything changes

A release directory is built under a temporary name and renamed into place, then listed in the
index; a directory under ``releases/`` that the index does not list is incomplete and never used.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, Optional

from ..common.errors import RollbackError, UnsafePathError
from ..common.nofollow import link_file, read_file, read_link, write_file
from ..common.labels import escape, show_label
from ..common.lock import FileLock

INDEX = "releases.json"
LOCK = ".gitops-rollback-release.lock"
INDEX_FORMAT = 1
HISTORY_LIMIT = 100
MAX_INDEX = 64 << 20  # bytes of releases.json read at most
COMPONENT_TYPE = "release"  # the checkpoint component that records a root's current release


class ReleaseError(RollbackError):
    """A release operation cannot be done as asked."""


# ------------------------------------------------------------------------------------- the index
def utc_now() -> str:
    """Return the current UTC time, ISO 8601 with a Z suffix."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_release_id(taken: List[str]) -> str:
    """Return a release id that sorts by time: UTC to the millisecond (``20261121T221530.123Z``)."""
    moment = datetime.now(timezone.utc)
    rid = "%s.%03dZ" % (moment.strftime("%Y%m%dT%H%M%S"), moment.microsecond // 1000)
    suffix = 1
    candidate = rid
    while candidate in taken:
        suffix += 1
        candidate = "%s-%d" % (rid, suffix)
    return candidate


@dataclass
class ReleaseRoot:
    """A release root directory and its index."""

    path: str
    index: Dict[str, object] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str) -> "ReleaseRoot":
        """Read the root's index (an empty one when the root is new)."""
        root = cls(os.path.abspath(path))
        index_path = root.join(INDEX)
        try:
            index = json.loads(read_file(index_path, MAX_INDEX).decode("utf-8"))
        except FileNotFoundError:
            index = None
        if index is not None:
            if not isinstance(index, dict) or index.get("format_version") != INDEX_FORMAT:
                raise ReleaseError(
                    "%s has an index format this collection does not read (format_version %r). Upgrade "
                    "gitops.rollback." % (index_path, index.get("format_version") if isinstance(index, dict) else None))
            root.index = index
        else:
            root.index = {"format_version": INDEX_FORMAT, "releases": [], "good": None, "history": []}
        return root

    # ------------------------------------------------------------------ paths
    def join(self, *parts: str) -> str:
        """Return a path inside the root."""
        return os.path.join(self.path, *parts)

    def release_dir(self, release_id: str) -> str:
        """Return the directory of a release."""
        return self.join("releases", release_id)

    # --------------------------------------------------------------- records
    @property
    def releases(self) -> List[dict]:
        """Every listed release, oldest deploy first."""
        return self.index.setdefault("releases", [])  # type: ignore[return-value]

    def ids(self) -> List[str]:
        """Return every release id, oldest first."""
        return [rel["id"] for rel in self.releases]

    def record(self, release_id: str) -> Optional[dict]:
        """Return the record of a release id, or None."""
        for rel in self.releases:
            if rel["id"] == release_id:
                return rel
        return None

    def describe(self) -> str:
        """Return 'label (id), ...' of every release, newest first, for an error message."""
        if not self.releases:
            return "none"
        return ", ".join("%s (%s)" % (show_label(rel["label"]), rel["id"]) if rel.get("label") else rel["id"]
                         for rel in reversed(self.releases))

    def find(self, ref: str) -> dict:
        """Resolve a release id or label (newest with that label wins); fail listing what there is."""
        found = self.record(ref)
        if found is None:
            labelled = [rel for rel in self.releases if rel.get("label") == ref]
            found = labelled[-1] if labelled else None
        if found is None:
            raise ReleaseError(
                "Release %s is not in %s (have: %s). Use a release id or label from "
                "gitops.rollback.release_info." % (escape(ref), self.path, self.describe()),
                available=[rel["id"] for rel in self.releases],
                labels=[rel.get("label") for rel in self.releases if rel.get("label")])
        return found

    # ---------------------------------------------------------------- current
    def current_target(self) -> Optional[str]:
        """Return where ``current`` points (None when absent); refuse a ``current`` that is no symlink."""
        link = self.join("current")
        try:
            return read_link(link)
        except UnsafePathError as exc:
            mode = exc.details.get("mode")
            if mode is None:
                raise
            raise ReleaseError(
                "%s is a %s, not a symlink, so it cannot be switched atomically. Move it into "
                "releases/<id>/ (or away) and deploy with gitops.rollback.release state=present, which "
                "creates the symlink." % (link, "directory" if stat.S_ISDIR(mode) else "file")) from None

    def current_id(self) -> Optional[str]:
        """Return the id of the release ``current`` points to, or None."""
        target = self.current_target()
        if target is None:
            return None
        resolved = os.path.normpath(os.path.join(self.path, target))
        if os.path.dirname(resolved) != self.join("releases"):
            raise ReleaseError(
                "%s points to %s, which is not a release under %s. Switch it with "
                "gitops.rollback.release state=rolled_back to=<id>." % (self.join("current"), target,
                                                                        self.join("releases")))
        return os.path.basename(resolved)

    # ------------------------------------------------------------- changing
    def lock(self, owner: str, operation: str, timeout: float) -> FileLock:
        """Take the root's exclusive lock."""
        os.makedirs(self.path, exist_ok=True)
        return FileLock(self.join(LOCK), owner, operation).acquire(timeout)

    def save(self) -> None:
        """Write the index atomically."""
        history = self.index.setdefault("history", [])
        del history[:-HISTORY_LIMIT]  # type: ignore[index]
        data = json.dumps(self.index, sort_keys=True, indent=1).encode("utf-8")
        write_file(self.join(INDEX), data, 0o644)  # readable by the application

    def note(self, operation: str, **fields: object) -> None:
        """Append an event to the index history."""
        self.index.setdefault("history", []).append(  # type: ignore[union-attr]
            dict(at=utc_now(), op=operation, **{k: v for k, v in fields.items() if v is not None}))

    def check_complete(self, rel: dict) -> None:
        """Refuse a release whose directory is missing or incomplete."""
        directory = self.release_dir(rel["id"])
        if not os.path.isdir(directory) or os.path.islink(directory):
            raise ReleaseError(
                "Release %s%s is listed in %s but its directory %s is missing. Deploy it again with "
                "state=present, or choose another release (have: %s)."
                % (rel["id"], " (%s)" % show_label(rel["label"]) if rel.get("label") else "", self.join(INDEX), directory,
                   self.describe()))
        for shared in rel.get("shared", []):
            if not os.path.lexists(os.path.join(directory, shared)):
                raise ReleaseError(
                    "Release %s is incomplete: its shared path %s is missing. Deploy it again with "
                    "state=present." % (rel["id"], shared))

    def switch(self, release_id: str) -> None:
        """Point ``current`` at a release: a new symlink renamed over the old one (atomic)."""
        link_file(self.join("current"), os.path.join("releases", release_id))


def release_summary(root: ReleaseRoot, rel: dict, current: Optional[str]) -> dict:
    """Return a release as the modules show it, with its marks."""
    previous = previous_release(root, current)
    good = root.index.get("good")
    marks = list(rel.get("marks", []))
    if rel["id"] == current:
        state = "active"
    elif "bad" in marks:
        state = "bad"
    elif previous and rel["id"] == previous["id"]:
        state = "previous"
    elif rel["id"] == good:
        state = "good"
    else:
        state = "inactive"
    shown = {key: rel.get(key) for key in ("id", "label", "commit", "created", "source", "digest", "reason")}
    shown.update(path=root.release_dir(rel["id"]), state=state, marks=marks, current=rel["id"] == current,
                 good=rel["id"] == good, bad="bad" in marks)
    return shown


def previous_release(root: ReleaseRoot, current: Optional[str]) -> Optional[dict]:
    """Return the newest release deployed before ``current`` that is not marked bad."""
    ids = root.ids()
    if current not in ids:
        return None
    older = root.releases[: ids.index(current)]
    for rel in reversed(older):
        if "bad" not in rel.get("marks", []):
            return rel
    return None


def current_release(path: str) -> Optional[dict]:
    """Return the current release of a root (id, label, commit, path...), or None when there is none.

    Used by the orchestrator to record the live release in a host checkpoint.
    """
    if not os.path.isdir(path):
        return None
    root = ReleaseRoot.open(path)
    current = root.current_id()
    if current is None:
        return None
    rel = root.record(current) or {"id": current}
    return release_summary(root, rel, current)


def release_component(path: str) -> Optional[dict]:
    """Return the checkpoint component recording the current release of a root, or None."""
    rel = current_release(path)
    if rel is None:
        return None
    return {"type": COMPONENT_TYPE, "name": os.path.abspath(path), "release": rel["id"], "label": rel.get("label"),
            "commit": rel.get("commit"), "blobs": []}
