# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host-file operations behind the checkpoint, checkpoint_info and restore modules.

Each function takes a small params object and returns the module result as a dict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import List, Optional

from . import _facts
from ._checkpoint import CheckpointRequest, RootSpec, create_checkpoint
from ._errors import IntegrityError, RollbackError
from ._options import default_owner
from ._retention import Policy, RetentionError, Snapshot, forgotten, plan
from ._store import Store, snapshots, summarize


@dataclass
class CheckpointParams:
    """Parameters of the checkpoint, checkpoint_info and restore modules."""

    store_path: str
    owner: str
    lock_timeout: float = 0.0
    check_mode: bool = False
    paths: List[str] = field(default_factory=list)
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
    encryption_key: Optional[str] = None
    new_encryption_key: Optional[str] = None
    repository: Optional[dict] = None  # restore: fetch the checkpoint from this repository when the store lacks it

    @classmethod
    def from_module(cls, params: dict, check_mode: bool, diff: bool = False) -> "CheckpointParams":
        """Pick the known fields out of module params."""
        known = {name: params[name] for name in cls.__dataclass_fields__ if name in params}
        known["owner"] = default_owner(params.get("owner"))
        known["policy"] = Policy(**{name: params.get(name) for name in Policy.__dataclass_fields__})
        return cls(check_mode=check_mode, diff=diff, **known)

    def store(self) -> Store:
        """Return the store (with its encryption key, if any)."""
        return Store(self.store_path, self.encryption_key)

    def lock(self, store: Store, operation: str):
        """Take the store lock for a write."""
        return store.lock(self.owner, operation, self.lock_timeout)


def make_checkpoint(params: CheckpointParams) -> dict:
    """Create a checkpoint (state=present)."""
    store = params.store()
    request = CheckpointRequest(
        roots=[RootSpec(path, params.include, params.exclude) for path in params.paths],
        label=params.label, commit=params.commit, reason=params.reason, creator=params.owner,
        facts=_facts.collect(params.facts), force=params.force, when_changed=params.when_changed,
    )
    if params.check_mode:
        manifest, changed, stats = create_checkpoint(store, request, dry_run=True)
    else:
        with params.lock(store, "checkpoint"):
            manifest, changed, stats = create_checkpoint(store, request)
    return {"changed": changed, "checkpoint": summarize(manifest), "stats": stats}


def delete_checkpoint(params: CheckpointParams) -> dict:
    """Delete one checkpoint (state=absent); absent already is no change."""
    store = params.store()
    if not store.exists():
        return {"changed": False, "deleted": []}
    manifest = store.find_optional(params.checkpoint)
    if manifest is None:
        return {"changed": False, "deleted": []}
    result = {"changed": True, "deleted": [manifest["id"]], "checkpoint": summarize(manifest)}
    if not params.check_mode:
        with params.lock(store, "delete"):
            store.delete(manifest["id"])
            removed, freed = store.collect_garbage()
        result["collected"] = {"objects": removed, "bytes": freed}
    return result


def prune_checkpoints(params: CheckpointParams) -> dict:
    """Delete the checkpoints a retention policy forgets; never the newest (state=pruned).

    Check mode is the dry run: the same plan, with what would go and why each kept one stays.
    """
    store = params.store()
    if not store.exists():
        return {"changed": False, "deleted": [], "kept": [], "forgotten": []}
    try:
        decisions = plan(snapshots(store), params.policy, time.time())
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
        result["checkpoint"] = summarize(manifests[0])
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
    summary = summarize(manifest)
    if details:
        summary["facts"] = manifest.get("facts", {})
        summary["components"] = manifest.get("components", [])
        summary["tree"] = {
            root["path"]: list(store.iter_tree(root["tree"])) for root in manifest.get("roots", [])
        }
    return summary


def damaged_object(manifest: dict, name: Optional[str], actual: Optional[str], problem: str,
                   restore_path: Optional[str]) -> dict:
    """Describe a damaged object of a checkpoint for a result: the object, its checkpoint, and apart the path it is for."""
    return {"object": name, "checkpoint": manifest["id"], "label": manifest.get("label"), "problem": problem,
            "actual": actual, "restore_path": restore_path}


def _restorable(store: Store, params: CheckpointParams) -> dict:
    """Find the checkpoint to restore; with verify_checkpoint, refuse it unless every object re-hashes."""
    manifest = store.find(params.checkpoint)
    if params.verify_checkpoint:
        problems = store.verify(manifest)
        if problems:
            raise IntegrityError(damaged_message({manifest["id"]: problems}) + " Nothing was changed.", damaged=[
                damaged_object(manifest, item["object"], item["actual"], item["problem"],
                               item["used_by"] if (item["used_by"] or "").startswith("/") else None)
                for item in problems])
    return manifest


def _restore(store: Store, params: CheckpointParams, options) -> tuple:
    """Find, check and restore the checkpoint; a damaged object is reported apart from the path it is for."""
    # imported here: a checkpoint run (every module start compiles what it imports) never needs it
    from ._restore import restore_checkpoint  # pylint: disable=import-outside-toplevel

    manifest = _restorable(store, params)
    try:
        return manifest, restore_checkpoint(store, manifest, options)
    except IntegrityError as exc:
        if not exc.details.get("expected"):
            raise
        actual = exc.details.get("actual")
        raise IntegrityError(str(exc), damaged=[damaged_object(
            manifest, exc.details["expected"], actual, "missing" if actual is None else "corrupted",
            exc.details.get("path"))]) from exc


def restore_host(params: CheckpointParams) -> dict:
    """Restore managed paths to a checkpoint (restore module); with a repository, fetch what the store lacks first."""
    store = params.store()
    if params.repository:
        return _restore_from_repository(store, params)
    if not store.exists():
        raise RollbackError("There is no checkpoint store at %s on this host, so nothing to restore %r from. "
                            "Create checkpoints with gitops.rollback.checkpoint, or restore from a repository "
                            "(repository)." % (store.root, params.checkpoint))
    if params.check_mode:
        manifest, outcome = _restore(store, params, _restore_options(params))
    else:
        with params.lock(store, "restore"):
            manifest, outcome = _restore(store, params, _restore_options(params))
    return _restore_result(params, manifest, outcome)


def _restore_options(params: CheckpointParams):
    # imported here: a checkpoint run (every module start compiles what it imports) never needs it
    from ._restore import RestoreOptions  # pylint: disable=import-outside-toplevel

    return RestoreOptions(
        only_paths=params.paths, dry_run=params.check_mode, want_diff=params.diff,
        safety_checkpoint=params.safety_checkpoint, creator=params.owner,
    )


def _restore_result(params: CheckpointParams, manifest: dict, outcome: dict) -> dict:
    result = {
        "changed": outcome["changed"],
        "checkpoint": summarize(manifest),
        "changes": outcome["changes"],
        "summary": outcome["summary"],
        "safety_checkpoint": outcome["safety_checkpoint"],
        "verified": outcome["verified"],
    }
    if params.diff:
        result["diff"] = outcome["diffs"]
    return result


def _restore_from_repository(store: Store, params: CheckpointParams) -> dict:
    """Fetch the checkpoint's manifest and the objects the store lacks (creating a missing store), then restore.

    Check mode changes nothing here or there: it reports what would be fetched, and plans the restore
    only when the local store already holds the whole checkpoint.
    """
    # imported here: only restores from a repository need ssh and the receiver
    from ._repository import RepositorySpec, fetch_checkpoint, plan_fetch, prepare_store  # pylint: disable=import-outside-toplevel

    spec = RepositorySpec.from_options(params.repository)
    if params.check_mode:
        fetched = plan_fetch(store, spec, params.checkpoint, params.encryption_key)
        if fetched["source"] == "repository":
            return {"changed": True, "checkpoint": fetched["checkpoint"], "fetched": fetched["fetched"],
                    "changes": {}, "summary": {}, "safety_checkpoint": None, "verified": False,
                    "msg": "The checkpoint would be fetched from %s first; the changes are planned once it is "
                           "here." % spec.where()}
        manifest, outcome = _restore(store, params, _restore_options(params))
        return dict(_restore_result(params, manifest, outcome), fetched=fetched["fetched"])
    started = time.monotonic()
    prepare_store(store, spec)
    with params.lock(store, "restore"):
        fetched = fetch_checkpoint(store, spec, params.checkpoint, params.encryption_key)
        exact = replace(params, checkpoint=fetched["checkpoint"]["id"])
        manifest, outcome = _restore(store, exact, _restore_options(exact))
    result = _restore_result(params, manifest, outcome)
    result["fetched"] = fetched["fetched"]
    result["changed"] = result["changed"] or bool(fetched["fetched"]["objects"])
    result["recovery"] = {"source": fetched["source"], "newest_replicated": fetched.get("newest_replicated"),
                          "rpo_seconds": fetched.get("rpo_seconds"), "rto_seconds": round(time.monotonic() - started, 3)}
    return result
