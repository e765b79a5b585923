# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sending a store's checkpoints to a repository (docs/repository.md, "What a sync does").

:func:`sync_store` sends what the repository lacks, objects first (in batches the receiver makes
durable before it answers) and manifests last, so the repository never shows a checkpoint whose
objects are incomplete. Objects and manifests cross exactly as stored, with two savings against the
newest checkpoint the repository already holds (the *base*): a plain store's tree objects go as a
delta against the base's tree of the same root (the receiver rebuilds the object and checks its
hash), and a manifest's list of needed objects as the difference to the base's list.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..common.errors import IntegrityError, RollbackError
from .client import CHUNK, Connection, RepositoryError, RepositorySpec, compatible, needed_objects, read_file
from .held import held_sealed, refuse_foreign
from ..store.store import Store

BATCH_BYTES = 32 * 1024 * 1024  # objects sent per request (one durable sync on the repository each), by stored size
BATCH_OBJECTS = 2000
DELTA_AT_MOST = 0.5  # a tree goes as a delta when that is at most half its size
TREE_DELTAS = True
Progress = Callable[[str, int], None]  # ("sent" | "stored", objects so far; "recorded", checkpoints so far)
Deltas = Dict[str, Tuple[str, bytes]]  # object name -> (base object name, delta)


def encode_delta(base: bytes, new: bytes) -> bytes:
    """A delta that rebuilds ``new`` from ``base`` (the receiver's :func:`apply_delta`, docs/repository.md).

    Each line of ``new`` found in ``base`` is copied from there (consecutive lines in one ``C``
    instruction), every other run of lines is inserted (``I``). Linear in the sizes; meant for tree
    objects, whose lines are entries in tree order, so a few changed entries give a few instructions.
    Any split of the bytes gives a correct delta (lines only make the matches likely).
    """
    base_lines = base.splitlines(keepends=True)
    where: Dict[bytes, int] = {}
    for offset, line in zip(itertools.accumulate(map(len, base_lines), initial=0), base_lines):
        where.setdefault(line, offset)
    out: List[bytes] = []
    literal: List[bytes] = []
    start = end = -1  # the copy being extended: [start, end) in the base
    for line in new.splitlines(keepends=True):
        at = where.get(line)
        if at is not None and at == end:
            end += len(line)
            continue
        if start >= 0:
            out.append(b"C %d %d\n" % (start, end - start))
            start = end = -1
        if at is None:
            literal.append(line)
            continue
        if literal:
            data = b"".join(literal)
            out += [b"I %d\n" % len(data), data]
            literal = []
        start, end = at, at + len(line)
    if start >= 0:
        out.append(b"C %d %d\n" % (start, end - start))
    if literal:
        data = b"".join(literal)
        out += [b"I %d\n" % len(data), data]
    return b"".join(out)


def _select(store: Store, refs: Sequence[str]) -> List[dict]:
    if not refs:
        return store.manifests()
    chosen = {}
    for ref in refs:
        manifest = store.find(ref)
        chosen[manifest["id"]] = manifest
    return [chosen[key] for key in sorted(chosen)]


def _base(store: Store, remote: Dict[str, str]) -> Optional[dict]:
    """The newest local checkpoint the repository holds in this very version (so it holds its objects), or None."""
    for checkpoint_id in reversed(store.ids()):
        if checkpoint_id in remote and hashlib.sha256(read_file(store.manifest_path(checkpoint_id))).hexdigest() \
                == remote[checkpoint_id]:
            return store.load(checkpoint_id)
    return None


def _tree_deltas(store: Store, base: Optional[dict], todo: Sequence[dict], missing: Sequence[str]) -> Deltas:
    """Deltas for the missing tree objects of a plain store, against the base's tree of the same root."""
    if base is None or store.cipher is not None or not TREE_DELTAS:
        return {}
    base_trees = {root.get("path"): root["tree"] for root in base.get("roots", []) if root.get("tree")}
    missing_set = set(missing)
    deltas: Deltas = {}
    for man in todo:
        for root in man.get("roots", []):
            tree, against = root.get("tree"), base_trees.get(root.get("path"))
            if tree in missing_set and against and tree not in deltas:
                delta = encode_delta(store.read_blob(against), store.read_blob(tree))
                if len(delta) <= DELTA_AT_MOST * store.object_size(tree):
                    deltas[tree] = (against, delta)
    return deltas


def _batches(store: Store, names: Sequence[str], deltas: Deltas) -> Iterator[List[Tuple[str, int]]]:
    """Group objects into requests of at most BATCH_BYTES (a larger object goes alone), with the size each sends."""
    batch: List[Tuple[str, int]] = []
    size = 0
    for name in names:
        length = len(deltas[name][1]) if name in deltas else store.object_size(name)
        if batch and (size + length > BATCH_BYTES or len(batch) >= BATCH_OBJECTS):
            yield batch
            batch, size = [], 0
        batch.append((name, length))
        size += length
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


def _send_objects(conn: Connection, store: Store, names: Sequence[str], progress: Optional[Progress],
                  deltas: Deltas) -> Tuple[int, int]:
    """Send objects in batches; return (objects stored by the repository, bytes sent).

    An object sent as a delta that the receiver could not rebuild (its base gone, or the base there
    not what it is here) is sent again whole.
    """
    plain = store.cipher is None
    sent = stored = sent_bytes = 0
    again: List[str] = []
    for batch in _batches(store, names, deltas):
        conn.send({"op": "put", "objects": [[name, length] + ([deltas[name][0]] if name in deltas else [])
                                            for name, length in batch]})
        for name, length in batch:
            if name in deltas:
                conn.write(deltas[name][1])
                conn.write(name.encode("ascii"))
            else:
                _send_object(conn, name, store.object_location(name), plain)
            sent += 1
            sent_bytes += length
            if progress:
                progress("sent", sent)
        reply = conn.reply("storing objects")
        problems = [problem for problem in reply.get("problems", []) if problem["object"] not in deltas]
        other = [problem["object"] for problem in problems if problem.get("kind") == "other_bytes"]
        if other:  # sent meanwhile by another host, with other bytes: kept if it opens under this store's key
            again += refuse_foreign(conn, store, other)
            problems = [problem for problem in problems if problem.get("kind") != "other_bytes"]
        held = [problem["object"] for problem in problems if "problem" in problem]
        if held:
            raise RepositoryError(
                "The repository %s holds object %s (and %d more) sealed under another key than this store's, and never "
                "replaces an object it holds. Nothing that needs it was recorded there. After a key rotation, sync the "
                "store to another repository path." % (conn.spec.where(), held[0], len(held) - 1))
        if problems:
            first = problems[0]
            raise IntegrityError(
                "The repository %s received object %s with SHA-256 %s instead of %s: the local object is damaged or "
                "changed on the way. Nothing that needs it was recorded there. Run gitops.rollback.checkpoint "
                "state=verified here." % (conn.spec.where(), first["object"], first["actual"], first["expected"]))
        again += [problem["object"] for problem in reply.get("problems", []) if problem.get("kind") != "other_bytes"]
        stored += len(reply["stored"])
        if progress:
            progress("stored", stored)
    if again:
        more, more_bytes = _send_objects(conn, store, again, None, {})
        stored, sent_bytes = stored + more, sent_bytes + more_bytes
    return stored, sent_bytes


def _record(conn: Connection, man: dict, body: bytes, needs: List[str], base: Optional[dict],
            base_needs: List[str]) -> None:
    """Record a manifest with the objects it needs: as the difference to the base's list, else (or when the
    repository no longer holds the base, or its list there differs) in full."""
    document = {"op": "put_manifest", "id": man["id"], "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    what = "recording checkpoint %s" % man["id"]
    reply = {}
    if base is not None:
        mine, theirs = set(needs), set(base_needs)
        reply = conn.request(dict(document, needs_base=base["id"], needs_sha256=needs_digest(needs),
                                  needs_added=[name for name in needs if name not in theirs],
                                  needs_removed=[name for name in base_needs if name not in mine]), what, body)
    if base is None or reply.get("needs_in_full"):
        reply = conn.request(dict(document, needs=needs), what, body)
    if not reply.get("ok"):
        raise RepositoryError("The repository %s did not record checkpoint %s: %s. Run the sync again." % (
            conn.spec.where(), man["id"], reply.get("missing") or reply.get("problems")))


def needs_digest(names: Sequence[str]) -> str:
    """The SHA-256 of a list of object names, sorted, one a line (what the receiver checks a rebuilt list against)."""
    return hashlib.sha256("".join(name + "\n" for name in sorted(set(names))).encode("ascii")).hexdigest()


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
        base = _base(store, remote) if todo else None
        base_needs = needed_objects(store, base) if base is not None else []
        known = set(base_needs)  # a recorded checkpoint's objects are in the repository
        key_id = (local_format.get("encryption") or {}).get("key_id")
        asked = [name for name in wanted if name not in known]
        held, other = set(), []
        if hello.get("exists"):
            held, other = held_sealed(conn, store, asked, key_id) if key_id else (conn.have(asked), [])
        gone = set(refuse_foreign(conn, store, other)) if other else set()  # each opens under this store's key
        held = (held - gone) | known.intersection(wanted)
        missing = [name for name in wanted if name not in held]
        absent = [name for name in missing if not store.has_blob(name)]
        if absent:
            raise IntegrityError("The local store %s lacks object %s (and %d more) that checkpoints to send need; "
                                 "nothing was sent. Run gitops.rollback.checkpoint state=verified." % (
                                     store.root, absent[0], len(absent) - 1))
        deltas = _tree_deltas(store, base, todo, missing)
        result = {
            "changed": bool(todo), "repository": spec.where(), "host": spec.namespace,
            "checkpoints": [man["id"] for man in todo],
            "up_to_date": [man["id"] for man in manifests if man not in todo],
            "base": base["id"] if base else None,
            "objects": {"needed": len(wanted), "present": len(held), "sent": len(missing), "as_delta": len(deltas),
                        "bytes": sum(len(deltas[name][1]) if name in deltas else store.object_size(name)
                                     for name in missing)},
        }
        if dry_run:
            return result
        if hello.get("host_format") != local_format:
            conn.request({"op": "set_format", "size": len(json.dumps(local_format).encode("utf-8"))},
                         "recording the store format", json.dumps(local_format).encode("utf-8"))
        stored, sent_bytes = _send_objects(conn, store, missing, progress, deltas)
        result["objects"].update(sent=stored, bytes=sent_bytes)
        for recorded, man in enumerate(todo, 1):
            _record(conn, man, raw[man["id"]], needs[man["id"]], base, base_needs)
            if progress:
                progress("recorded", recorded)
        result["wire"] = {"sent": conn.bytes_sent, "received": conn.bytes_received}
    return result
