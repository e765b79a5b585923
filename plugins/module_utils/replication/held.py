# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Objects an encrypted store's sync finds held in the repository: is each one this store can open? (docs/repository.md,
"Trust model").

Objects are shared by name and never replaced, and the receiver cannot tell an encrypted object's content from its
keyed name: another host could have sent other bytes under a name this store uses. A sync therefore skips a held
object only when its envelope is the one this store holds (the receiver tells the SHA-256 of each), or, when it is
another (a host sharing the key sealed the same content), once it was fetched and opened under this store's key
with its content hashing to its name. An object that does not open refuses the sync before any manifest needs it.
"""

from __future__ import annotations

import hashlib
import os
from typing import List, Sequence, Set, Tuple

from ..common.fsutil import unlink_quietly
from ..common.errors import IntegrityError
from ..store.packs import SMALL_OBJECT
from ..store.store import Store
from .client import CHUNK, NAMES_PER_REQUEST, Connection, RepositoryError
from .replies import UNDECLARED_OBJECT_MAX, checked_sizes


def envelope_digest(store: Store, name: str) -> str:
    """The SHA-256 of an object's bytes as this store holds them (an encrypted store: its envelope)."""
    path, offset, length = store.object_location(name)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(offset)
        while length > 0:
            chunk = handle.read(min(CHUNK, length))
            if not chunk:
                break
            digest.update(chunk)
            length -= len(chunk)
    return digest.hexdigest()


def held_sealed(conn: Connection, store: Store, names: Sequence[str], key_id: str) -> Tuple[Set[str], List[str]]:
    """Which of ``names`` the repository holds sealed under ``key_id``, and those of them whose envelope is not the
    one this store holds (all of them when the receiver does not tell the digests: one installed from an older
    collection)."""
    held: Set[str] = set()
    other: List[str] = []
    for start in range(0, len(names), NAMES_PER_REQUEST):
        reply = conn.request({"op": "have", "names": list(names[start:start + NAMES_PER_REQUEST]), "key_id": key_id,
                              "digests": True}, "listing objects")
        have, digests = reply["have"], reply.get("digests")
        held.update(have)
        if not isinstance(digests, list) or len(digests) != len(have):
            other += have
            continue
        other += [name for name, digest in zip(have, digests) if digest != envelope_digest(store, name)]
    return held, other


def refuse_foreign(conn: Connection, store: Store, names: Sequence[str]) -> List[str]:
    """Fetch held objects whose envelope is not this store's and refuse the sync unless each opens under this store's
    key with its content hashing to its name; return those the repository no longer holds (to send)."""
    where = conn.spec.where()
    gone: List[str] = []
    foreign: List[str] = []
    for start in range(0, len(names), NAMES_PER_REQUEST):
        chunk = list(names[start:start + NAMES_PER_REQUEST])
        sizes = checked_sizes(conn.request({"op": "get", "names": chunk}, "checking objects it holds"), chunk, where,
                              "checking objects it holds")
        for name, size in zip(chunk, sizes):
            if size < 0:
                gone.append(name)
            elif not _opens(conn, store, name, size):
                foreign.append(name)
    if foreign:
        raise RepositoryError(
            "The repository %s holds object %s (and %d more) under a name this store uses, but it does not open with "
            "this store's key: another host sent other bytes under that name first (a host sharing the repository, or "
            "a store rekeyed since). The repository never replaces an object it holds, so nothing that needs it was "
            "recorded there. Sync this store to another repository path, or have the repository's operator remove "
            "objects/%s/%s there (and find out which host sent it)." % (
                where, foreign[0], len(foreign) - 1, foreign[0][:2], foreign[0]))
    return gone


def _opens(conn: Connection, store: Store, name: str, size: int) -> bool:
    """Read a held object's ``size`` bytes off the session and tell whether it opens under the store's key."""
    where = conn.spec.where()
    if size > UNDECLARED_OBJECT_MAX:
        conn.kill()
        raise RepositoryError("The repository %s announced %d bytes for object %s; nothing was recorded." % (
            where, size, name))
    try:
        if size <= SMALL_OBJECT:
            data = conn.read_exactly(size, "sending object %s" % name)
            return store.hash_bytes(store.cipher.unseal(data, b"object:" + name.encode("ascii"), "Object %s" % name)) == name
        tmp = store.temp_object_path()
        try:
            conn.read_into(tmp, size, "sending object %s" % name)
            return _opens_file(store, name, tmp)
        finally:
            unlink_quietly(tmp)
    except IntegrityError:
        return False


def _opens_file(store: Store, name: str, path: str) -> bool:
    """Whether a fetched envelope in a file opens under the store's key, its content hashing to ``name``."""
    digest = store.hasher()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        for chunk in store.cipher.open_stream(handle, size, b"object:" + name.encode("ascii"), "Object %s" % name):
            digest.update(chunk)
    return digest.hexdigest() == name
