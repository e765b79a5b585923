# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release operations (deploy, rollback, mark good, prune, record in a checkpoint, list) on a release root
(``release.root``), built by ``release.build``."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..common.fsutil import fsync_path, is_temp_name, temp_name
from ..common.nofollow import open_parent, open_root, remove_at
from ..store.manifest import Component
from .build import check_relative, checkout, leftovers, link_shared, ls_remote_argv, remote_commit, remove_tree, tree_digest
from .root import (COMPONENT_TYPE, ReleaseError, ReleaseRoot, new_release_id, previous_release,
                   release_component, release_summary, utc_now)
from ..common.secrets import redact_url
from ..store.store import DEFAULT_STORE, Store

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}\Z")


# ------------------------------------------------------------------------------------ operations
@dataclass
class ReleaseParams:
    """Parameters of the release and release_info modules."""

    root: str
    owner: str
    lock_timeout: float = 0.0
    check_mode: bool = False
    diff: bool = False
    src: Optional[str] = None
    repo: Optional[str] = None
    version: str = "HEAD"
    release_id: Optional[str] = None
    label: Optional[str] = None
    commit: Optional[str] = None
    shared: List[str] = field(default_factory=list)
    activate: bool = True
    to: Optional[str] = None
    checkpoint: Optional[str] = None
    store_path: Optional[str] = None
    encryption_key: Optional[str] = None
    keep_bad: bool = True
    reason: Optional[str] = None
    release: Optional[str] = None
    keep: int = 5
    prune_bad: bool = False


@dataclass
class Outcome:
    """What an operation did (or would do in check mode)."""

    root: ReleaseRoot
    before: Optional[str]
    after: Optional[str]
    changed: bool = False
    commands: List[List[str]] = field(default_factory=list)
    extra: Dict[str, object] = field(default_factory=dict)
    planned_label: Optional[str] = None

    def result(self, params: ReleaseParams) -> dict:
        """Return the module result."""
        root = self.root
        shown = {rid: release_summary(root, root.record(rid), self.after) for rid in (self.before, self.after)
                 if rid and root.record(rid)}
        if self.after and self.after not in shown:
            shown[self.after] = {"id": self.after, "label": self.planned_label, "state": "new"}
        result = dict(changed=self.changed, root=root.path, commands=self.commands,
                      release=shown.get(self.after) if self.after else None,
                      previous_release=shown.get(self.before) if self.before != self.after else None,
                      current=self.after, **self.extra)
        if params.diff:
            result["diff"] = {"before": describe_current(root, self.before),
                              "after": describe_current(root, self.after)}
        return result


def describe_current(root: ReleaseRoot, release_id: Optional[str]) -> str:
    """Return ``current -> releases/<id> (label)`` for a diff."""
    if release_id is None:
        return "current: (none)\n"
    rel = root.record(release_id) or {}
    return "current -> releases/%s%s\n" % (release_id, " (%s)" % rel["label"] if rel.get("label") else "")


def _locked(params: ReleaseParams, root: ReleaseRoot, operation: str):
    """Take the root lock unless in check mode (a plan reads only)."""
    if params.check_mode:
        return _NoLock()
    return root.lock(params.owner, operation, params.lock_timeout)


class _NoLock:
    """A stand-in for the lock in check mode."""

    def __enter__(self) -> "_NoLock":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _reopen(root: ReleaseRoot) -> ReleaseRoot:
    """Read the index again (under the lock, the file may have changed since the plan)."""
    return ReleaseRoot.open(root.path)


def deploy(params: ReleaseParams) -> dict:
    """state=present: reuse a matching release or build a new one; switch to it unless activate=false."""
    root = ReleaseRoot.open(params.root)
    shared = [check_relative(path, "Shared path") for path in params.shared]
    if params.src and not os.path.isdir(params.src):
        raise ReleaseError("Source directory %s does not exist on this host. Copy the build there first, or "
                           "deploy from Git with repo and version." % params.src)
    with _locked(params, root, "release present"):
        root = _reopen(root)
        current = root.current_id()
        outcome = Outcome(root, current, current)
        source_key, label = _source_identity(params, outcome)
        existing = _matching_release(root, params, source_key, label)
        if existing is None:
            outcome.changed = True
            target = params.release_id or new_release_id(root.ids())
            outcome.extra["created"] = True
            if not params.check_mode:
                _build(root, params, target, label, source_key, shared, outcome)
        else:
            target = existing["id"]
            root.check_complete(existing)
            outcome.extra["created"] = False
        if params.activate and target != current:
            outcome.changed = True
            outcome.after = target
            if not params.check_mode:
                root.switch(target)
                root.note("activate", release=target, previous=current)
                root.save()
        elif not params.activate:
            outcome.extra["staged"] = target
        if params.check_mode and existing is None:
            outcome.extra["would_create"] = target
            outcome.planned_label = label
        return outcome.result(params)


def _source_identity(params: ReleaseParams, outcome: Outcome) -> Tuple[dict, Optional[str]]:
    """Return what identifies the requested content (commit or tree digest) and the label to use."""
    if params.repo:
        commit, is_tag = remote_commit(params.repo, params.version)
        outcome.commands.append(ls_remote_argv(params.repo, params.version))
        label = params.label or (params.version if is_tag else None)
        return {"commit": commit, "source": "%s@%s" % (redact_url(params.repo), params.version)}, label
    return {"digest": tree_digest(params.src), "source": os.path.abspath(params.src),
            "commit": params.commit}, params.label


def _matching_release(root: ReleaseRoot, params: ReleaseParams, key: dict, label: Optional[str]) -> Optional[dict]:
    """Return the listed release this request names (id, else label, else same content); refuse conflicts."""
    if params.release_id:
        found = root.record(params.release_id)
    elif label:
        labelled = [rel for rel in root.releases if rel.get("label") == label]
        found = labelled[-1] if labelled else None
    else:
        same = [rel for rel in root.releases if _same_content(rel, key) and "bad" not in rel.get("marks", [])]
        found = same[-1] if same else None
    if found is not None and not _same_content(found, key):
        named = " (%s)" % found["label"] if found.get("label") else ""
        raise ReleaseError(
            "Release %s%s in %s holds other content (%s) than asked (%s). Use a new label or release_id, or "
            "remove the old release first." % (found["id"], named, root.path, _content_name(found), _content_name(key)))
    return found


def _same_content(rel: dict, key: dict) -> bool:
    if key.get("digest"):
        return rel.get("digest") == key["digest"]
    commit = key.get("commit") or ""
    known = rel.get("commit") or ""
    return bool(commit and known) and (known.startswith(commit) or commit.startswith(known))


def _content_name(item: dict) -> str:
    if item.get("digest"):
        return "tree sha256 %s" % item["digest"][:12]
    return "commit %s" % (item.get("commit") or "unknown")[:12]


def _build(root: ReleaseRoot, params: ReleaseParams, target: str, label: Optional[str], key: dict,
           shared: List[str], outcome: Outcome) -> None:
    """Build a release under a temporary name, link shared paths, rename it into place, list it."""
    if not _ID_RE.match(target):
        raise ReleaseError("Release id %r may hold only letters, digits and . _ + - (at most 100)." % target)
    final = root.release_dir(target)
    if os.path.lexists(final):
        raise ReleaseError("%s exists but is not a listed release (an interrupted deploy?). Remove it, or choose "
                           "another release_id." % final)
    for sub in ("releases", "shared"):  # made, or found to be directories reached through no link
        os.close(open_root(root.join(sub), create=True))
    building = temp_name(final)
    try:
        if params.repo:
            commit, commands = checkout(params.repo, params.version, building)
            outcome.commands.extend(commands)
            key = dict(key, commit=commit)
        else:
            shutil.copytree(params.src, building, symlinks=True)
        link_shared(root, building, shared)
        os.rename(building, final)
    except BaseException:
        if os.path.lexists(building):
            remove_tree(building)
        raise
    fsync_path(root.join("releases"))
    root.releases.append({"id": target, "label": label, "commit": key.get("commit"), "digest": key.get("digest"),
                          "source": key.get("source"), "created": utc_now(), "shared": shared, "marks": []})
    root.note("deploy", release=target, label=label)
    root.save()


def rollback(params: ReleaseParams) -> dict:
    """state=rolled_back: switch to the previous release, or to one by id, label or checkpoint."""
    root = ReleaseRoot.open(params.root)
    with _locked(params, root, "release rolled_back"):
        root = _reopen(root)
        current = root.current_id()
        target = _rollback_target(root, params, current)
        root.check_complete(target)
        outcome = Outcome(root, current, target["id"])
        if target["id"] == current:
            return outcome.result(params)
        outcome.changed = True
        abandoned = root.record(current) if current else None
        if abandoned is not None:
            outcome.extra["marked_bad"] = current
            outcome.extra["removed"] = [] if params.keep_bad else [current]
        if not params.check_mode:
            root.switch(target["id"])
            if abandoned is not None:
                _mark(abandoned, "bad", params.reason or "rolled back to %s" % (target.get("label") or target["id"]))
                if root.index.get("good") == current:
                    root.index["good"] = None
            root.note("rollback", release=target["id"], previous=current, reason=params.reason)
            root.save()
            if abandoned is not None and not params.keep_bad:
                _delete_release(root, abandoned)
            _verify_current(root, target["id"])
            outcome.extra["verified"] = True
        return outcome.result(params)


def _verify_current(root: "ReleaseRoot", expected: str) -> None:
    """Read ``current`` back from disk after a switch; refuse to report success if it is not ``expected``."""
    actual = root.current_id()
    if actual != expected:
        raise ReleaseError(
            "After the switch, current in %s points to %s, not %s. Another deploy may have run at the same "
            "time; inspect with gitops.rollback.release_info and roll back again." % (root.path, actual, expected))


def _rollback_target(root: ReleaseRoot, params: ReleaseParams, current: Optional[str]) -> dict:
    """Resolve the release to roll back to."""
    if params.checkpoint:
        return root.find(_release_in_checkpoint(root, params))
    if params.to:
        return root.find(params.to)
    previous = previous_release(root, current)
    if previous is None:
        raise ReleaseError(
            "There is no release before %s in %s that is not marked bad (have: %s). Name one with to=<id or "
            "label>." % (current or "(no current release)", root.path, root.describe()),
            available=root.ids())
    return previous


def _release_in_checkpoint(root: ReleaseRoot, params: ReleaseParams) -> str:
    """Return the release id a checkpoint recorded for this root."""
    store = Store(params.store_path or DEFAULT_STORE, params.encryption_key)
    manifest = store.find_manifest(params.checkpoint)
    component = manifest.component(COMPONENT_TYPE, root.path)
    if component is not None:
        return component.fields["release"]
    raise ReleaseError(
        "Checkpoint %s (%s) records no release of %s (components: %s). Record one with "
        "gitops.rollback.release state=recorded, or name the release with to=<id or label>."
        % (manifest.shown_label, manifest.id, root.path,
           ", ".join("%s %s" % (c.type, c.name) for c in manifest.components) or "none"))


def _mark(rel: dict, mark: str, reason: Optional[str] = None) -> None:
    marks = [m for m in rel.get("marks", []) if m not in ("bad", "good")]
    rel["marks"] = marks + [mark]
    rel["reason"] = reason
    rel["marked"] = utc_now()


def _delete_release(root: ReleaseRoot, rel: dict) -> None:
    """Unlist a release, then remove its directory (unlisted first: a crash leaves no listed half tree)."""
    root.index["releases"] = [r for r in root.releases if r["id"] != rel["id"]]
    root.note("remove", release=rel["id"])
    root.save()
    directory = root.release_dir(rel["id"])
    try:
        dir_fd, name = open_parent(directory)
    except FileNotFoundError:
        return
    try:
        aside = os.path.basename(temp_name(directory))
        try:
            os.rename(name, aside, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except FileNotFoundError:
            return
        remove_at(dir_fd, aside, directory)
    finally:
        os.close(dir_fd)


def mark_good(params: ReleaseParams) -> dict:
    """state=good: record the current release (or ``release``) as the last known good one."""
    root = ReleaseRoot.open(params.root)
    with _locked(params, root, "release good"):
        root = _reopen(root)
        current = root.current_id()
        if params.release:
            rel = root.find(params.release)
        elif current is None:
            raise ReleaseError("%s has no current release to mark good. Deploy one with state=present." % root.path)
        else:
            rel = root.record(current) or root.find(current)
        outcome = Outcome(root, current, current, extra={"marked_good": rel["id"]})
        if root.index.get("good") == rel["id"] and "good" in rel.get("marks", []):
            return outcome.result(params)
        outcome.changed = True
        if not params.check_mode:
            _mark(rel, "good", params.reason)
            root.index["good"] = rel["id"]
            root.note("good", release=rel["id"], reason=params.reason)
            root.save()
        return outcome.result(params)


def prune_plan(root: ReleaseRoot, current: Optional[str], keep: int, prune_bad: bool) -> List[dict]:
    """Choose releases to delete: beyond the newest ``keep``, never current, last good, or kept bad ones."""
    protected = {current, root.index.get("good")}
    doomed = []
    for rel in root.releases[: max(len(root.releases) - max(keep, 1), 0)]:
        if rel["id"] in protected or ("bad" in rel.get("marks", []) and not prune_bad):
            continue
        doomed.append(rel)
    return doomed


def prune_releases(params: ReleaseParams) -> dict:
    """state=pruned: remove old releases and leftovers of interrupted deploys."""
    root = ReleaseRoot.open(params.root)
    with _locked(params, root, "release pruned"):
        root = _reopen(root)
        current = root.current_id()
        doomed = prune_plan(root, current, params.keep, params.prune_bad)
        stale = leftovers(root)
        outcome = Outcome(root, current, current, changed=bool(doomed or stale),
                          extra={"removed": [rel["id"] for rel in doomed], "leftovers_removed": stale})
        if not params.check_mode:
            for rel in doomed:
                _delete_release(root, rel)
            for path in stale:
                remove_tree(path)
        return outcome.result(params)


def record_in_checkpoint(params: ReleaseParams) -> dict:
    """state=recorded: attach the current release to a checkpoint (created when the label is new)."""
    root = ReleaseRoot.open(params.root)
    current = root.current_id()
    component = release_component(root.path)
    if component is None:
        raise ReleaseError("%s has no current release to record. Deploy one with state=present." % root.path)
    outcome = Outcome(root, current, current, extra={"component": component})
    store = Store(params.store_path or DEFAULT_STORE, params.encryption_key)
    recorded = store.find_manifest_optional(params.checkpoint) if store.exists() else None
    if recorded is not None and recorded.component(COMPONENT_TYPE, root.path) == Component.from_json(component):
        outcome.extra["checkpoint"] = {"id": recorded.id, "label": recorded.label}
        return outcome.result(params)
    outcome.changed = True
    if params.check_mode:
        outcome.extra["checkpoint"] = {"id": recorded.id if recorded else None, "label": params.checkpoint}
        return outcome.result(params)
    with store.lock(params.owner, "release recorded", params.lock_timeout):
        manifest = store.find_optional(params.checkpoint)
        if manifest is None:
            manifest = store.new_manifest(label=params.checkpoint, reason=params.reason or "release recorded",
                                          creator=params.owner)
        store.attach_component(manifest, component)
    outcome.extra["checkpoint"] = {"id": manifest["id"], "label": manifest.get("label")}
    return outcome.result(params)


def list_releases(params: ReleaseParams) -> dict:
    """release_info: every release, oldest first, with its marks; or one by id or label."""
    if not os.path.isdir(params.root):
        raise ReleaseError("Release root %s does not exist on this host. Deploy a release there with "
                           "gitops.rollback.release state=present." % params.root)
    root = ReleaseRoot.open(params.root)
    current = root.current_id()
    chosen = [root.find(params.release)] if params.release else root.releases
    previous = previous_release(root, current)
    return dict(changed=False, root=root.path, current=current, good=root.index.get("good"),
                previous=previous["id"] if previous else None,
                releases=[release_summary(root, rel, current) for rel in chosen],
                incomplete=leftovers(root) + _unlisted(root))


def _unlisted(root: ReleaseRoot) -> List[str]:
    """Return release directories the index does not list (not temporary ones)."""
    releases = root.join("releases")
    if not os.path.isdir(releases):
        return []
    listed = set(root.ids())
    return sorted(os.path.join(releases, name) for name in os.listdir(releases)
                  if name not in listed and not is_temp_name(name))


OPERATIONS = {
    "present": deploy,
    "rolled_back": rollback,
    "good": mark_good,
    "pruned": prune_releases,
    "recorded": record_in_checkpoint,
}


def apply(state: str, params: ReleaseParams) -> dict:
    """Run the operation of a release module ``state``."""
    return OPERATIONS[state](params)
