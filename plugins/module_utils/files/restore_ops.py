# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore module's operation: find and check the checkpoint (from a repository when one is given: streamed
into the restored files, or fetched into the store first), restore the host's managed paths, and report a damaged object apart from the path it is for. Its own
file, so a checkpoint run never loads the restore engine (``files.restore``) or the repository client.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Optional, Sequence

from ..common.errors import IntegrityError, RollbackError
from ..store.allowed_roots import allowed_paths, check_roots
from .capture import roots_of
from .checkpoint_ops import CheckpointParams, damaged_message
from .restore import ContentSource, RestoreOptions, SourceFor, restore_checkpoint
from .restore_plan import RootPlan
from ..store.store import Store, checkpoint_summary

if TYPE_CHECKING:
    from ..replication.fetch import Fetcher


def damaged_object(manifest: dict, name: Optional[str], actual: Optional[str], problem: str,
                   restore_path: Optional[str]) -> dict:
    """Describe a damaged object of a checkpoint for a result: the object, its checkpoint, and apart the path it is for."""
    return {"object": name, "checkpoint": manifest["id"], "label": manifest.get("label"), "problem": problem,
            "actual": actual, "restore_path": restore_path}


def _restorable(store: Store, ref: str, verify_checkpoint: bool) -> dict:
    """Find the checkpoint to restore; with verify_checkpoint, refuse it unless every object re-hashes."""
    manifest = store.find(ref)
    if verify_checkpoint:
        problems = store.verify(manifest)
        if problems:
            raise IntegrityError(damaged_message({manifest["id"]: problems}) + " Nothing was changed.", damaged=[
                damaged_object(manifest, item["object"], item["actual"], item["problem"],
                               item["used_by"] if (item["used_by"] or "").startswith("/") else None)
                for item in problems])
    return manifest


def _restore(store: Store, params: CheckpointParams, options: RestoreOptions) -> tuple:
    """Find, check and restore the checkpoint; a damaged object is reported apart from the path it is for."""
    manifest = _restorable(store, params.checkpoint, params.verify_checkpoint)
    return manifest, _restore_reported(store, manifest, options)


def _restore_reported(store: Store, manifest: dict, options: RestoreOptions, source_for: Optional[SourceFor] = None) -> dict:
    """Restore a manifest's roots; a damaged object is reported apart from the path it is for."""
    try:
        return restore_checkpoint(store, manifest, options, source_for)
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


def _restore_options(params: CheckpointParams) -> RestoreOptions:
    """How the restore runs; from a repository it may write only below ``allowed_paths`` (default ``paths``)."""
    if params.repository:
        allowed: Optional[list] = allowed_paths(params.allowed_paths or params.paths)
    else:
        allowed = allowed_paths(params.allowed_paths) if params.allowed_paths else None
    return RestoreOptions(
        only_paths=params.paths, dry_run=params.check_mode, want_diff=params.diff,
        safety_checkpoint=params.safety_checkpoint, creator=params.owner, allowed_roots=allowed,
    )


def _restore_result(params: CheckpointParams, manifest: dict, outcome: dict) -> dict:
    result = {
        "changed": outcome["changed"],
        "checkpoint": checkpoint_summary(manifest),
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
    # The repository client only here: a restore from the host's own store never loads it, and every file a
    # module imports is compiled at its start (Ansible sends them as source).
    from ..replication.client import RepositorySpec  # pylint: disable=import-outside-toplevel
    from ..replication import fetch  # pylint: disable=import-outside-toplevel
    spec = RepositorySpec.from_options(params.repository)
    if params.check_mode:
        with fetch.Fetcher(store, spec, params.encryption_key) as fetcher:
            refuse_foreign_roots(store, fetcher, params.checkpoint, _restore_options(params))
            fetched = fetcher.plan(params.checkpoint)
        if fetched["source"] == "repository":
            return {"changed": True, "checkpoint": fetched["checkpoint"], "fetched": fetched["fetched"],
                    "changes": {}, "summary": {}, "safety_checkpoint": None, "verified": False,
                    "msg": "The checkpoint would be fetched from %s first; the changes are planned once it is "
                           "here." % spec.where()}
        manifest, outcome = _restore(store, params, _restore_options(params))
        return dict(_restore_result(params, manifest, outcome), fetched=fetched["fetched"])
    started = time.monotonic()
    with fetch.Fetcher(store, spec, params.encryption_key) as fetcher:
        fetcher.prepare()
        with params.lock(store, "restore"):
            manifest, outcome, fetched = rebuild(store, fetcher, params.checkpoint, _restore_options(params),
                                                 params.verify_checkpoint)
    result = _restore_result(params, manifest, outcome)
    result["fetched"] = fetched["fetched"]
    result["changed"] = result["changed"] or bool(fetched["fetched"]["objects"])
    result["recovery"] = {"source": fetched["source"], "newest_replicated": fetched.get("newest_replicated"),
                          "rpo_seconds": fetched.get("rpo_seconds"), "rto_seconds": round(time.monotonic() - started, 3)}
    return result


def rebuild(store: Store, fetcher: Fetcher, ref: str, options: RestoreOptions, verify_checkpoint: bool = False) -> tuple:
    """Restore checkpoint ``ref`` from the repository under the store lock; return (manifest, outcome, fetched).

    When the local store lacks the checkpoint and is plain, only its trees are fetched into the store,
    and the content the store lacks is streamed from the repository straight into the files being
    restored, each hashed as it is written and checked against its name before anything is renamed
    into place; the local store does not keep the checkpoint. A restore that also removes entries
    (the target is not empty), an encrypted store, or ``verify_checkpoint`` fetch the checkpoint into
    the store first (checked), then restore from it. A checkpoint that would write outside
    ``options.allowed_roots`` (none when unset) is refused before anything is fetched.
    """
    refuse_foreign_roots(store, fetcher, ref, options)
    manifest = None if verify_checkpoint else fetcher.trees_only(ref)
    if manifest is None:
        fetched = fetcher.fetch(ref)
        manifest = _restorable(store, fetched["checkpoint"]["id"], verify_checkpoint)
        return manifest, _restore_reported(store, manifest, options), fetched

    def source_for(plans: Sequence[RootPlan]):
        if any(plan.actions.counts().get(op) for plan in plans for op in ("delete", "retype")):
            fetcher.fetch(manifest["id"])  # nothing is removed before every object was checked in the store
            return ContentSource(store)
        return fetcher.stream([(sha, size) for plan in plans for sha, _rel, size in plan.blobs() if not store.has_blob(sha)])

    outcome = _restore_reported(store, manifest, options, source_for)
    return manifest, outcome, fetcher.rebuilt()


def refuse_foreign_roots(store: Store, fetcher: Fetcher, ref: str, options: RestoreOptions) -> None:
    """Refuse, before anything is fetched or written, a checkpoint whose roots would take the restore outside
    ``options.allowed_roots`` (none when unset): its manifest as the local store holds it, else as the repository does."""
    manifest = store.find_optional(ref) if store.exists() else None
    source = "the local store %s" % store.root
    if manifest is None:
        manifest = fetcher.view().find(ref, fetcher.spec.where())
        source = "the repository %s" % fetcher.spec.where()
    check_roots(manifest, options.allowed_roots or [], roots_of(manifest, options.only_paths), source)
