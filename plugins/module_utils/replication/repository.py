# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Repositories: copies of checkpoint stores on a repository host, reached over SSH (docs/repository.md).

A repository is a directory on another host holding the objects of many stores (shared) and, per
host, the store's ``format`` document and its manifests (``hosts/<name>/``). :func:`sync_store`
sends what the repository lacks, objects first and manifests last; :class:`~.fetch.Fetcher` brings
one checkpoint (its manifest and the objects it needs) back into a local store, checking each object
before it is placed. Objects and manifests cross exactly as stored: an encrypted store's stay sealed,
and no key ever leaves the host.

The system ``ssh`` is run with an argument list; on the repository host it runs ``python3`` with a
constant bootstrap that reads the receiver (:mod:`replication.receiver`) from stdin, so no path, name or
option is ever parsed by a remote shell.

The files: :mod:`replication.client` (where the repository is, the SSH session), :mod:`replication.sync`
(sending), :mod:`replication.fetch` (fetching back), :mod:`replication.receiver` (the program on the
repository host); this one holds the checkpoint_sync module's operations (sync, prune).
"""

from __future__ import annotations

import tempfile
import time
from typing import Optional, Sequence

from ..common.errors import RollbackError
from ..common.lock import default_owner
from ..store.allowed_roots import allowed_paths
from .client import Connection, RepositorySpec, recorded_format
from .sync import sync_store
from ..store.retention import Policy, RetentionError, forgotten, plan
from ..store.store import Store, snapshots

# The fetch side only for state=fetched and state=pruned: a sync (state=present) never loads it, and every file a
# module imports is compiled at its start (Ansible sends them as source).
# pylint: disable=import-outside-toplevel


def prune_repository(spec: RepositorySpec, policy: Policy, key: Optional[str] = None, grace: float = 3600.0,
                     dry_run: bool = False) -> dict:
    """Forget this host's checkpoints in the repository that ``policy`` does not keep, then collect garbage there.

    The host reads its manifests from the repository (with its key, for an encrypted store) and
    decides; the receiver deletes the forgotten manifests, then, under the repository's exclusive
    lock, every object that no manifest of any host needs and that is older than ``grace`` seconds
    (so objects of a sync whose manifests are not recorded yet stay). The newest checkpoint is never
    forgotten. In a dry run nothing is deleted and nothing is collected.
    """
    from .fetch import RepositoryView
    with Connection(spec) as conn, tempfile.TemporaryDirectory(prefix="gitops-rollback-view-") as workdir:
        view = RepositoryView(conn, recorded_format(conn.hello(create=False), spec), key, workdir)
        try:
            decisions = plan(snapshots(view.store), policy, time.time())
        except RetentionError as exc:
            raise RollbackError(str(exc)) from exc
        doomed = forgotten(decisions)
        result = {
            "changed": bool(doomed), "repository": spec.where(), "host": spec.namespace, "deleted": doomed,
            "kept": [dict(id=dec.snapshot.id, label=dec.snapshot.label, reasons=dec.reasons)
                     for dec in reversed(decisions) if dec.kept],
        }
        if dry_run:
            return result
        if doomed:
            conn.request({"op": "forget", "ids": doomed}, "forgetting checkpoints")
        collected = conn.request({"op": "collect", "grace": grace}, "collecting garbage")
    result["collected"] = {"objects": collected["objects"], "bytes": collected["bytes"]}
    result["changed"] = bool(doomed or collected["objects"])
    return result


def fetch_into(store: Store, spec: RepositorySpec, refs: Sequence[str], key: Optional[str], owner: str,
               lock_timeout: float = 0.0, dry_run: bool = False, allowed: Optional[Sequence[str]] = None) -> dict:
    """Make the local store hold the checkpoints ``refs`` name, fetching from the repository what it lacks.

    A missing store is created with the format the repository recorded for the host; the fetch runs
    under the store lock. A checkpoint from the repository whose managed roots lie outside ``allowed`` (when
    given) is refused before any of its objects is fetched: a later restore from the local store trusts them.
    The result's ``recovery`` holds the recovery point (age of the host's newest checkpoint in the
    repository) and the time the fetch took.
    """
    if not refs:
        raise RollbackError("state=fetched needs the checkpoints to fetch (checkpoints: [<id or label>]). Nothing was "
                            "fetched.")
    from . import fetch
    started = time.monotonic()
    if dry_run:
        with fetch.Fetcher(store, spec, key) as fetcher:
            fetcher.allowed = allowed
            planned = [fetcher.plan(ref) for ref in refs]
        return {"changed": any(item["source"] == "repository" for item in planned), "repository": spec.where(),
                "host": spec.namespace, "checkpoints": [item["checkpoint"]["id"] for item in planned],
                "fetched": {"objects": sum(item["fetched"]["objects"] for item in planned), "bytes": None}}
    with fetch.Fetcher(store, spec, key) as fetcher:
        fetcher.allowed = allowed
        fetcher.prepare()
        with store.lock(owner, "fetch", lock_timeout):
            done = [fetcher.fetch(ref) for ref in refs]
    remote = [item for item in done if item["source"] == "repository"]
    return {
        "changed": bool(remote), "repository": spec.where(), "host": spec.namespace,
        "checkpoints": [item["checkpoint"]["id"] for item in done],
        "fetched": {"objects": sum(item["fetched"]["objects"] for item in done),
                    "bytes": sum(item["fetched"]["bytes"] for item in done)},
        "recovery": {"newest_replicated": remote[0].get("newest_replicated") if remote else None,
                     "rpo_seconds": remote[0].get("rpo_seconds") if remote else None,
                     "rto_seconds": round(time.monotonic() - started, 3)},
    }


# pylint: enable=import-outside-toplevel


def sync_host(store: Store, options: dict, check_mode: bool) -> dict:
    """The checkpoint_sync module: send the store's checkpoints (state=present), bring them back (state=fetched) or
    prune the repository (state=pruned)."""
    spec = RepositorySpec.from_options(options["repository"])
    if options.get("state") == "fetched":
        return fetch_into(store, spec, options.get("checkpoints") or (), options.get("encryption_key") or None,
                          default_owner(options.get("owner")), float(options.get("lock_timeout") or 0), check_mode,
                          allowed_paths(options.get("allowed_paths") or []))
    if options.get("state") == "pruned":
        retention = options.get("retention") or {}
        policy = Policy(**{name: retention.get(name) for name in Policy.__dataclass_fields__})
        return prune_repository(spec, policy, options.get("encryption_key") or None,
                                float(options.get("gc_grace_hours", 1.0)) * 3600, dry_run=check_mode)
    return sync_store(store, spec, options.get("checkpoints") or (), dry_run=check_mode)
