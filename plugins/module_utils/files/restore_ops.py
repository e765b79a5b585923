# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore module's operation: find and check the checkpoint (fetched from a repository first when one is
given), restore the host's managed paths, and report a damaged object apart from the path it is for. Its own
file, so a checkpoint run never loads the restore engine (``files.restore``) or the repository client.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Optional

from ..common.errors import IntegrityError, RollbackError
from .checkpoint_ops import CheckpointParams, damaged_message
from ..replication.client import RepositorySpec
from ..replication.fetch import Fetcher
from .restore import RestoreOptions, restore_checkpoint
from ..store.store import Store, checkpoint_summary


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


def _restore(store: Store, params: CheckpointParams, options: RestoreOptions) -> tuple:
    """Find, check and restore the checkpoint; a damaged object is reported apart from the path it is for."""
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


def _restore_options(params: CheckpointParams) -> RestoreOptions:
    return RestoreOptions(
        only_paths=params.paths, dry_run=params.check_mode, want_diff=params.diff,
        safety_checkpoint=params.safety_checkpoint, creator=params.owner,
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
    spec = RepositorySpec.from_options(params.repository)
    if params.check_mode:
        with Fetcher(store, spec, params.encryption_key) as fetcher:
            fetched = fetcher.plan(params.checkpoint)
        if fetched["source"] == "repository":
            return {"changed": True, "checkpoint": fetched["checkpoint"], "fetched": fetched["fetched"],
                    "changes": {}, "summary": {}, "safety_checkpoint": None, "verified": False,
                    "msg": "The checkpoint would be fetched from %s first; the changes are planned once it is "
                           "here." % spec.where()}
        manifest, outcome = _restore(store, params, _restore_options(params))
        return dict(_restore_result(params, manifest, outcome), fetched=fetched["fetched"])
    started = time.monotonic()
    with Fetcher(store, spec, params.encryption_key) as fetcher:
        fetcher.prepare()
        with params.lock(store, "restore"):
            fetched = fetcher.fetch(params.checkpoint)
            exact = replace(params, checkpoint=fetched["checkpoint"]["id"])
            manifest, outcome = _restore(store, exact, _restore_options(exact))
    result = _restore_result(params, manifest, outcome)
    result["fetched"] = fetched["fetched"]
    result["changed"] = result["changed"] or bool(fetched["fetched"]["objects"])
    result["recovery"] = {"source": fetched["source"], "newest_replicated": fetched.get("newest_replicated"),
                          "rpo_seconds": fetched.get("rpo_seconds"), "rto_seconds": round(time.monotonic() - started, 3)}
    return result
