# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks of what a repository host replies to a client that fetches from it (docs/repository.md, "Trust model").

The repository host is not trusted: a reply that does not have the shape the protocol gives it, or
announces more bytes than the checkpoint allows, is refused before any of its bytes is read or written.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from ..common.labels import escape
from ..store.root import ID_RE
from ..store.store import Store
from .client import CHUNK, RepositoryError

MANIFEST_MAX = 4 * 1024 * 1024  # a manifest the repository announces as larger is refused before it is read
UNDECLARED_OBJECT_MAX = 1024 ** 3  # an object no tree entry gives a size for (a tree, a component's data)
ENVELOPE_SLACK = 64  # an encrypted object's envelope: its header, at most (40 bytes in either scheme) ...
ENVELOPE_TAG_SLACK = 32  # ... and a tag per chunk of CHUNK bytes begun (16 bytes; the first scheme: one of 32)


def _refused_reply(where: str, what: str, problem: str) -> RepositoryError:
    """The error for a reply of the repository that breaks the protocol (nothing of it is written)."""
    return RepositoryError("The repository %s sent a malformed reply while %s: %s. Nothing was restored and no manifest "
                           "was written; the repository host may be compromised or run another version." % (where, what, problem))


def checked_sizes(reply: dict, names: Sequence[str], where: str, what: str) -> List[int]:
    """The ``sizes`` of a reply: one int per name asked for, each >= 0 (or -1: the repository lacks it)."""
    sizes = reply.get("sizes")
    if not isinstance(sizes, list) or len(sizes) != len(names):
        counted = len(sizes) if isinstance(sizes, list) else "no list of"
        raise _refused_reply(where, what, "%s sizes for %d objects asked for" % (counted, len(names)))
    for name, size in zip(names, sizes):
        if type(size) is not int or size < -1:  # pylint: disable=unidiomatic-typecheck  # bool is no size
            raise _refused_reply(where, what, "size %s for object %s" % (_shown(size), name))
    return sizes


def _shown(value: object) -> str:
    """A number of a reply for a message (anything else the reply holds, escaped)."""
    return str(value) if type(value) is int else escape(value, 40)  # pylint: disable=unidiomatic-typecheck


def object_limit(store: Store, size: object) -> int:
    """The most bytes the repository may send for an object whose content the checkpoint says has ``size`` bytes."""
    if type(size) is not int or size < 0:  # pylint: disable=unidiomatic-typecheck
        return UNDECLARED_OBJECT_MAX
    if not store.encrypted:
        return size
    return size + ENVELOPE_SLACK + ENVELOPE_TAG_SLACK * (size // CHUNK + 1)


def listed_manifests(reply: dict, where: str) -> List[Tuple[str, int]]:
    """The (id, size) pairs of a ``get_manifests`` reply, refused whole unless each id is a checkpoint id and each
    size an int of at most MANIFEST_MAX (checked before a byte of any manifest is read or written)."""
    ids, sizes = reply.get("ids"), reply.get("sizes")
    what = "listing checkpoints"
    if not isinstance(ids, list) or not isinstance(sizes, list) or len(ids) != len(sizes):
        raise _refused_reply(where, what, "the ids and sizes of the manifests do not pair up")
    for checkpoint_id, size in zip(ids, sizes):
        if not isinstance(checkpoint_id, str) or not ID_RE.fullmatch(checkpoint_id):
            raise _refused_reply(where, what, "%s is not a checkpoint id" % escape(checkpoint_id, 80))
        if type(size) is not int or not 0 <= size <= MANIFEST_MAX:  # pylint: disable=unidiomatic-typecheck
            raise _refused_reply(where, what, "checkpoint %s is announced with %s bytes (a manifest has at most %d)" % (
                checkpoint_id, _shown(size), MANIFEST_MAX))
    return list(zip(ids, sizes))
