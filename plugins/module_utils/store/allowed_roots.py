# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a restore may write: the one check of a manifest's managed roots (docs/repository.md, "Trust model").

A manifest's ``roots`` say where its files go. Each is checked against the grammar of a managed root
(an absolute, normalised path: no ``.`` or ``..`` part, no doubled or trailing ``/``, no NUL or other
control character) and each scope below it against that of a relative path. A manifest from a local
store is trusted to name its roots; one from a repository (whose host is not trusted) must also keep
every root a restore writes within the paths the caller allows: the host's configured managed paths,
or the restore's explicit paths. Either refusal comes before anything is fetched, planned or written.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

from ..common.errors import UnsafePathError
from ..common.labels import escape
from .tree import check_relative


def root_problem(path: object) -> Optional[str]:
    """Why ``path`` is not a managed root (an absolute, normalised path without control characters), or None."""
    if not isinstance(path, str) or not path:
        return "is not a path"
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        return "holds a NUL or another control character"
    if not path.startswith("/"):
        return "is not an absolute path"
    if any(part in (".", "..") for part in path.split("/")):
        return "has a '.' or '..' part"
    if os.path.normpath(path) != path or path.startswith("//"):
        return "is not normalised (a doubled or trailing '/')"
    return None


def within(path: str, allowed: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``allowed`` or lies below one (lexically: both are normalised)."""
    return any(path == top or path.startswith(top.rstrip("/") + "/") for top in allowed)


def allowed_paths(paths: Sequence[object]) -> List[str]:
    """The caller's allowed paths, normalised; refuses one that is not an absolute path."""
    checked = []
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise UnsafePathError("allowed_paths holds %s, which is not an absolute path. Nothing was changed."
                                  % escape(str(path), 200))
        checked.append(os.path.normpath(path))
    return checked


def check_roots(manifest: dict, allowed: Optional[Sequence[str]] = None, written: Optional[Sequence[dict]] = None,
                source: str = "") -> None:
    """Refuse a manifest whose roots break the grammar, or (with ``allowed``) one that would write outside them.

    ``written`` are the root records the restore writes (default: all of the manifest's); a record with
    a ``scope`` writes only below its scope. ``source`` names where the manifest came from, for the message.
    """
    label = manifest.get("id")
    origin = " (from %s)" % source if source else ""
    for record in manifest.get("roots", []):
        path = record.get("path") if isinstance(record, dict) else None
        problem = root_problem(path)
        if problem:
            raise UnsafePathError(
                "Checkpoint %s%s names the managed root %s, which %s. Nothing was fetched or changed. The manifest is "
                "damaged or forged: restore another checkpoint." % (label, origin, escape(str(path), 200), problem),
                paths=[escape(str(path), 200)])
        for rel in record.get("scope") or []:
            try:
                check_relative(rel)
            except UnsafePathError as exc:
                raise UnsafePathError("Checkpoint %s%s, root %s: %s Nothing was fetched or changed." % (
                    label, origin, path, exc)) from None
    if allowed is None:
        return
    for record in manifest.get("roots", []) if written is None else written:
        targets = [os.path.join(record["path"], rel) for rel in record.get("scope") or []] or [record["path"]]
        outside = [target for target in targets if not within(target, allowed)]  # checked above: no control character
        if outside:
            raise UnsafePathError(
                "Checkpoint %s%s would restore %s, outside the paths this restore may write (%s). Nothing was fetched "
                "or changed. If the checkpoint really manages it, add it to allowed_paths (the host's "
                "gitops_rollback_paths, which rebuild.yml passes); otherwise the repository host may be compromised "
                "and the checkpoint forged: do not restore it." % (
                    label, origin, outside[0], ", ".join(allowed) or "none given"), paths=outside, available=list(allowed))
