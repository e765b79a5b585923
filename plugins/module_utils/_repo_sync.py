# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sending a store's checkpoints to a repository (docs/repository.md, "What a sync does").

:func:`sync_store` sends what the repository lacks, objects first (in batches the receiver makes
durable before it answers) and manifests last, so the repository never shows a checkpoint whose
objects are incomplete. Objects and manifests cross exactly as stored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from ._errors import IntegrityError, RollbackError
from ._repo_client import CHUNK, Connection, RepositoryError, RepositorySpec, compatible, needed_objects, read_file
from ._store import Store

BATCH_BYTES = 32 * 1024 * 1024  # objects sent per request (one durable sync on the repository each), by stored size
BATCH_OBJECTS = 2000
Progress = Callable[[str, int], None]  # ("sent" | "stored", objects so far)


def _select(store: Store, refs: Sequence[str]) -> List[dict]:
    if not refs:
        return store.manifests()
    chosen = {}
    for ref in refs:
        manifest = store.find(ref)
        chosen[manifest["id"]] = manifest
    return [chosen[key] for key in sorted(chosen)]


def _batches(store: Store, names: Sequence[str]) -> Iterator[List[Tuple[str, Tuple[str, int, int]]]]:
    """Group objects into requests of at most BATCH_BYTES (a larger object goes alone)."""
    batch: List[Tuple[str, Tuple[str, int, int]]] = []
    size = 0
    for name in names:
        location = store.object_location(name)
        if batch and (size + location[2] > BATCH_BYTES or len(batch) >= BATCH_OBJECTS):
            yield batch
            batch, size = [], 0
        batch.append((name, location))
        size += location[2]
    if batch:
        yield batch


def _send_object(conn: Connection, name: str, location: Tuple[str, int, int], plain: bool) -> None:
    """Send one object's stored bytes and its digest: its name (plain store) or the envelope's SHA-256."""
    path, offset, length = location
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(offset)
        left = length
        while left:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                raise IntegrityError("Object %s is truncated in the local store (%s); it was not sent. Run "
                                     "gitops.rollback.checkpoint state=verified." % (name, path))
            if not plain:
                digest.update(chunk)
            conn.write(chunk)
            left -= len(chunk)
    conn.write((name if plain else digest.hexdigest()).encode("ascii"))


def _send_objects(conn: Connection, store: Store, names: Sequence[str], progress: Optional[Progress]) -> Tuple[int, int]:
    """Send objects in batches; return (objects, bytes) stored by the repository."""
    plain = store.cipher is None
    sent = stored = stored_bytes = 0
    for batch in _batches(store, names):
        conn.send({"op": "put", "objects": [[name, location[2]] for name, location in batch]})
        for name, location in batch:
            _send_object(conn, name, location, plain)
            sent += 1
            if progress:
                progress("sent", sent)
        reply = conn.reply("storing objects")
        if reply.get("problems"):
            first = reply["problems"][0]
            raise IntegrityError(
                "The repository %s received object %s with SHA-256 %s instead of %s: the local object is damaged or "
                "changed on the way. Nothing that needs it was recorded there. Run gitops.rollback.checkpoint "
                "state=verified here." % (conn.spec.where(), first["object"], first["actual"], first["expected"]))
        stored += len(reply["stored"])
        stored_bytes += sum(location[2] for _name, location in batch)
        if progress:
            progress("stored", stored)
    return stored, stored_bytes


def sync_store(store: Store, spec: RepositorySpec, refs: Sequence[str] = (), dry_run: bool = False,
               progress: Optional[Progress] = None) -> dict:
    """Send the checkpoints of ``store`` (or those ``refs`` name) that the repository lacks or holds in another version.

    Objects go first, in batches each made durable and renamed into place by the receiver before it
    answers; then each manifest, which the receiver accepts only when every object it needs is there.
    A rerun after an interruption sends only what the repository does not hold yet.
    """
    if not store.exists():
        raise RollbackError("There is no checkpoint store at %s on this host; there is nothing to send to the "
                            "repository. Create checkpoints with gitops.rollback.checkpoint." % store.root)
    local_format = store.read_format()
    store.check_format()
    manifests = _select(store, refs)
    with Connection(spec) as conn:
        hello = conn.hello(create=not dry_run)
        problem = compatible(local_format, hello.get("host_format"))
        if problem:
            raise RepositoryError(
                "The store %s cannot be sent to host namespace %s of the repository %s: %s. Nothing was sent. Use "
                "another name (repository.name) or another repository path." % (
                    store.root, spec.namespace, spec.where(), problem))
        remote = hello.get("manifests", {})
        raw = {man["id"]: read_file(store.manifest_path(man["id"])) for man in manifests}
        todo = [man for man in manifests if remote.get(man["id"]) != hashlib.sha256(raw[man["id"]]).hexdigest()]
        needs = {man["id"]: needed_objects(store, man) for man in todo}
        wanted = list(dict.fromkeys(name for man in todo for name in needs[man["id"]]))
        held = conn.have(wanted) if hello.get("exists") else set()
        missing = [name for name in wanted if name not in held]
        absent = [name for name in missing if not store.has_blob(name)]
        if absent:
            raise IntegrityError("The local store %s lacks object %s (and %d more) that checkpoints to send need; "
                                 "nothing was sent. Run gitops.rollback.checkpoint state=verified." % (
                                     store.root, absent[0], len(absent) - 1))
        result = {
            "changed": bool(todo), "repository": spec.where(), "host": spec.namespace,
            "checkpoints": [man["id"] for man in todo],
            "up_to_date": [man["id"] for man in manifests if man not in todo],
            "objects": {"needed": len(wanted), "present": len(held), "sent": len(missing),
                        "bytes": sum(store.object_size(name) for name in missing)},
        }
        if dry_run:
            return result
        if hello.get("host_format") != local_format:
            conn.request({"op": "set_format", "size": len(json.dumps(local_format).encode("utf-8"))},
                         "recording the store format", json.dumps(local_format).encode("utf-8"))
        stored, stored_bytes = _send_objects(conn, store, missing, progress)
        result["objects"].update(sent=stored, bytes=stored_bytes)
        for man in todo:
            body = raw[man["id"]]
            reply = conn.request({"op": "put_manifest", "id": man["id"], "size": len(body),
                                  "sha256": hashlib.sha256(body).hexdigest(), "needs": needs[man["id"]]},
                                 "recording checkpoint %s" % man["id"], body)
            if not reply.get("ok"):
                raise RepositoryError("The repository %s did not record checkpoint %s: %s. Run the sync again." % (
                    spec.where(), man["id"], reply.get("missing") or reply.get("problems")))
    return result
