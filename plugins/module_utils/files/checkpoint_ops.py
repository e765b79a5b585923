# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host-file operations behind the checkpoint and checkpoint_info modules (the restore module: ``files.restore_ops``).

Each function takes a small params object and returns the module result as a dict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from ..common.errors import RollbackError
from ..common.lock import default_owner
from ..store.retention import Policy, RetentionError, Snapshot, forgotten, plan
from ..store.store import Store, snapshots, checkpoint_summary


@dataclass
class CheckpointParams:
    """Parameters of the checkpoint, checkpoint_info and restore modules."""

    store_path: str
    owner: str
    lock_timeout: float = 0.0
    check_mode: bool = False
    paths: List[str] = field(default_factory=list)
    allowed_paths: List[str] = field(default_factory=list)  # restore: where a checkpoint may write (from a repository)
    roots: List[str] = field(default_factory=list)  # the managed roots paths may lie below (a safety checkpoint)
    include: List[str] = field(default_factory=list)
    exclude: List[str] = field(default_factory=list)
    label: Optional[str] = None
    commit: Optional[str] = None
    reason: Optional[str] = None
    facts: List[str] = field(default_factory=list)
    force: bool = False
    when_changed: bool = False
    checkpoint: Optional[str] = None
    policy: Policy = field(default_factory=Policy)  # retention, for state=pruned
    details: bool = False
    diff: bool = False
    safety_checkpoint: bool = True
    verify_checkpoint: bool = False
    verify: bool = False  # a capture re-hashes the objects of the checkpoint it reports
    encryption_key: Optional[str] = None
    new_encryption_key: Optional[str] = None
    repository: Optional[dict] = None  # restore: fetch the checkpoint from this repository when the store lacks it
    keep_caches: bool = False  # a capture leaves the store's stat caches as they are (a safety checkpoint taken early)

    @classmethod
    def from_module(cls, params: dict, check_mode: bool, diff: bool = False) -> "CheckpointParams":
        """Pick the known fields out of module params."""
        known = {name: params[name] for name in cls.__dataclass_fields__ if name in params}
        known["owner"] = default_owner(params.get("owner"))
        known["policy"] = Policy(**{name: params.get(name) for name in Policy.__dataclass_fields__})
        return cls(check_mode=check_mode, diff=diff, **known)

    def store(self) -> Store:
        """Return the store (with its encryption key, if any)."""
        store = Store(self.store_path, self.encryption_key)
        store.keep_caches = self.keep_caches
        return store

    def lock(self, store: Store, operation: str):
        """Take the store lock for a write."""
        return store.lock(self.owner, operation, self.lock_timeout)


def make_checkpoint(params: CheckpointParams) -> dict:
    """Create a checkpoint (state=present)."""
    # The capture's code only here: checkpoint_info, restore and the plan's listing never capture, and every file a
    # module imports is compiled at its start (Ansible sends them as source).
    from .capture import CheckpointRequest, create_checkpoint, root_specs  # pylint: disable=import-outside-toplevel
    from .facts import collect as collect_facts  # pylint: disable=import-outside-toplevel
    store = params.store()
    request = CheckpointRequest(
        roots=root_specs(params.paths, params.roots, params.include, params.exclude),
        label=params.label, commit=params.commit, reason=params.reason, creator=params.owner,
        facts=collect_facts(params.facts), force=params.force, when_changed=params.when_changed,
    )
    if params.check_mode:
        manifest, changed, stats = create_checkpoint(store, request, dry_run=True)
    else:
        with params.lock(store, "checkpoint"):
            manifest, changed, stats = create_checkpoint(store, request)
    result = {"changed": changed, "checkpoint": checkpoint_summary(manifest), "stats": stats}
    if params.verify and not params.check_mode:
        problems = store.verify(manifest)
        if problems:
            return dict(result, failed=True, problems={manifest["id"]: problems},
                        msg=damaged_message({manifest["id"]: problems}))
    if params.policy != Policy():  # a retention policy given with a capture: the prune after it
        # a dry run counts the checkpoint it would create as the newest, as the real prune will see it
        pending = [_snapshot(manifest)] if params.check_mode and changed else []
        pruned = prune_checkpoints(params, pending)
        result["pruned"] = {name: pruned[name] for name in ("deleted", "collected") if name in pruned}
        result["changed"] = result["changed"] or pruned["changed"]
    return result


def delete_checkpoint(params: CheckpointParams) -> dict:
    """Delete one checkpoint (state=absent); absent already is no change."""
    store = params.store()
    if not store.exists():
        return {"changed": False, "deleted": []}
    manifest = store.find_optional(params.checkpoint)
    if manifest is None:
        return {"changed": False, "deleted": []}
    result = {"changed": True, "deleted": [manifest["id"]], "checkpoint": checkpoint_summary(manifest)}
    if not params.check_mode:
        with params.lock(store, "delete"):
            store.delete(manifest["id"])
            removed, freed = store.collect_garbage()
        result["collected"] = {"objects": removed, "bytes": freed}
    return result


def prune_checkpoints(params: CheckpointParams, pending: Sequence[Snapshot] = ()) -> dict:
    """Delete the checkpoints a retention policy forgets; never the newest (state=pruned).

    Check mode is the dry run: the same plan, with what would go and why each kept one stays (``pending``: the
    checkpoints a dry-run capture would have added, newest last).
    """
    store = params.store()
    if not store.exists():
        return {"changed": False, "deleted": [], "kept": [], "forgotten": []}
    try:
        decisions = plan(snapshots(store) + list(pending), params.policy, time.time())
    except RetentionError as exc:
        raise RollbackError(str(exc)) from exc
    doomed = forgotten(decisions)
    result = {
        "changed": bool(doomed), "deleted": doomed,
        "kept": [dict(_brief(dec.snapshot), reasons=dec.reasons) for dec in reversed(decisions) if dec.kept],
        "forgotten": [_brief(dec.snapshot) for dec in reversed(decisions) if not dec.kept],
    }
    if doomed and not params.check_mode:
        with params.lock(store, "prune"):
            for checkpoint_id in doomed:
                store.delete(checkpoint_id)
            removed, freed = store.collect_garbage()
        result["collected"] = {"objects": removed, "bytes": freed}
    return result


def _snapshot(manifest: dict) -> Snapshot:
    """What retention needs of a checkpoint a dry run would create (its time is now)."""
    return Snapshot(manifest["id"], time.time(), manifest.get("label"), manifest.get("kind") or "checkpoint")


def _brief(snapshot: Snapshot) -> dict:
    """Return id, label, kind and created time (UTC text) of a checkpoint for a prune result."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(snapshot.created))
    return {"id": snapshot.id, "label": snapshot.label, "kind": snapshot.kind, "created": created}


def verify_checkpoints(params: CheckpointParams) -> dict:
    """Re-hash the objects of one or every checkpoint (state=verified)."""
    store = params.store()
    manifests = [store.find(params.checkpoint)] if params.checkpoint else store.manifests()
    problems = {man["id"]: store.verify(man) for man in manifests}
    problems = {cid: items for cid, items in problems.items() if items}
    result = {"changed": False, "problems": problems, "verified": [man["id"] for man in manifests]}
    if params.checkpoint:
        result["checkpoint"] = checkpoint_summary(manifests[0])
    if problems:
        result["failed"] = True
        result["msg"] = damaged_message(problems)
    return result


def damaged_message(problems: dict) -> str:
    """Describe the damaged objects of checkpoints ({id: problems}) and the way out."""
    details = "; ".join(
        "%s: %s object %s is %s%s" % (
            cid, item["used_by"], item["object"], item["problem"],
            " (content hashes to %s)" % item["actual"] if item.get("actual") else "")
        for cid, items in sorted(problems.items()) for item in items[:5]
    )
    return ("%d checkpoint(s) have missing or corrupted objects: %s. Restore from another checkpoint "
            "and delete the damaged one (state=absent)." % (len(problems), details))


def rekey_store(params: CheckpointParams) -> dict:
    """Re-encrypt every object and manifest under a new key and the current scheme (state=rekeyed); resumable.

    Without ``new_encryption_key`` the key stays and only the scheme moves on.
    """
    store = params.store()
    if not store.exists():
        raise RollbackError("There is no checkpoint store at %s on this host; there is nothing to rekey."
                            % store.root)
    if params.check_mode:
        outcome = store.rekey(params.new_encryption_key or params.encryption_key or "", dry_run=True)
    else:
        with store.lock(params.owner, "rekey", params.lock_timeout, check_format=False):
            outcome = store.rekey(params.new_encryption_key or params.encryption_key or "")
    return {"changed": outcome.pop("changed"), "rekey": outcome}


def list_checkpoints(params: CheckpointParams) -> dict:
    """List checkpoints, or show one (checkpoint_info)."""
    store = params.store()
    if not store.exists():
        if params.checkpoint:
            raise RollbackError("There is no checkpoint store at %s on this host, so no checkpoint %r. "
                                "Create one with gitops.rollback.checkpoint." % (store.root, params.checkpoint))
        return {"changed": False, "checkpoints": []}
    if params.checkpoint:
        manifests = [store.find(params.checkpoint)]
    else:
        manifests = [man for man in store.manifests() if params.label is None or man.get("label") == params.label]
    return {"changed": False, "checkpoints": [_describe(store, man, params.details) for man in manifests]}


def _describe(store: Store, manifest: dict, details: bool) -> dict:
    summary = checkpoint_summary(manifest)
    if details:
        summary["facts"] = manifest.get("facts", {})
        summary["components"] = manifest.get("components", [])
        summary["tree"] = {
            root["path"]: list(store.iter_tree(root["tree"])) for root in manifest.get("roots", [])
        }
    return summary
