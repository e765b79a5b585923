# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's manifests: one JSON document per checkpoint (sealed in an encrypted store), written after the
objects it references are durable. When a manifest may be rewritten: docs/store-format.md."""

from __future__ import annotations

import json
import os
import socket
from typing import Iterator, List, Optional, Union

from ..common.errors import CheckpointNotFound, IntegrityError
from ..common.fsutil import atomic_write_bytes, atomic_write_json, raise_if_full, read_json
from ..common.labels import check_new_label, escape, show_label
from .manifest import FORMAT_VERSION, Manifest, manifest_version
from ..common.lock import utc_now
from .root import ID_RE, StoreRoot, manifest_context, new_checkpoint_id
from .objects import Objects
from .writes import ObjectWrites

_DECODE = json.JSONDecoder().decode  # one decoder for every line: trees are read in hot loops


def checkpoint_summary(manifest: dict) -> dict:
    """Return the listing fields of a manifest (no entries)."""
    keys = ("id", "label", "commit", "reason", "creator", "created", "host", "kind")
    summary = {key: manifest.get(key) for key in keys}
    summary["roots"] = [root["path"] for root in manifest.get("roots", [])]
    summary["entries"] = sum(root.get("entries", 0) for root in manifest.get("roots", []))
    summary["bytes"] = sum(root.get("bytes", 0) for root in manifest.get("roots", []))
    summary["components"] = [
        {"type": comp.get("type"), "name": comp.get("name")} for comp in manifest.get("components", [])
    ]
    return summary


def describe(manifests: List[dict], limit: int = 20) -> str:
    """Return 'id (label), ...' for an error message, newest first."""
    if not manifests:
        return "none"
    parts = ["%s (%s)" % (show_label(man["label"]), man["id"]) if man.get("label") else man["id"]
             for man in reversed(manifests)]
    more = len(parts) - limit
    return ", ".join(parts[:limit]) + (", and %d more" % more if more > 0 else "")


class Manifests:
    """A store's manifests (checkpoints/<id>.json): find, load, write, and the objects each references."""

    def __init__(self, base: StoreRoot, objects: Objects, writes: ObjectWrites) -> None:
        self.base = base
        self.objects = objects
        self.writes = writes

    def manifest_path(self, checkpoint_id: str) -> str:
        """Return the manifest file of a checkpoint id."""
        if not isinstance(checkpoint_id, str) or not ID_RE.fullmatch(checkpoint_id):
            raise IntegrityError("%r is not a checkpoint id." % (checkpoint_id,))
        return self.base.path("checkpoints", checkpoint_id + ".json")

    def ids(self) -> List[str]:
        """Return every checkpoint id, oldest first."""
        self.base.check_root()
        try:
            names = os.listdir(self.base.path("checkpoints"))
        except FileNotFoundError:
            return []
        return sorted(name[:-5] for name in names if name.endswith(".json") and ID_RE.match(name[:-5]))

    def load(self, checkpoint_id: str) -> dict:
        """Load and check a manifest (decrypting and authenticating it in an encrypted store)."""
        path = self.manifest_path(checkpoint_id)
        cipher = self.base.cipher
        try:
            if cipher is None:
                manifest = read_json(path)
            else:
                with open(path, "rb") as handle:
                    plain = cipher.unseal(handle.read(), manifest_context(checkpoint_id), "Manifest %s" % checkpoint_id)
                manifest = json.loads(plain.decode("utf-8"))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise IntegrityError("Manifest %s in %s is not valid JSON (%s): it is damaged. Delete it "
                                 "(checkpoint state=absent) and use another checkpoint." % (checkpoint_id, self.base.root, exc)) from exc
        Manifest.from_json(manifest, checkpoint_id)  # the checks of format and shape
        return manifest

    def load_manifest(self, checkpoint_id: str) -> Manifest:
        """Like :meth:`load`, typed."""
        return Manifest.from_json(self.load(checkpoint_id), checkpoint_id)

    def typed_manifests(self) -> List[Manifest]:
        """Return every manifest, typed, oldest first."""
        return [Manifest.from_json(document) for document in self.manifests()]

    def find_manifest(self, ref: str) -> Manifest:
        """Like :meth:`find`, typed."""
        return Manifest.from_json(self.find(ref))

    def find_manifest_optional(self, ref: Optional[str]) -> Optional[Manifest]:
        """Like :meth:`find_optional`, typed."""
        document = self.find_optional(ref)
        return None if document is None else Manifest.from_json(document)

    def manifests(self) -> List[dict]:
        """Return every manifest, oldest first."""
        return [self.load(cid) for cid in self.ids()]

    def save(self, manifest: Union[dict, Manifest]) -> None:
        """Write a manifest atomically after syncing the objects it references."""
        if isinstance(manifest, Manifest):
            manifest = manifest.to_json()
        manifest["format_version"] = manifest_version(manifest.get("roots", []))
        self.writes.sync()
        cipher = self.base.cipher
        try:
            if cipher is None:
                atomic_write_json(self.manifest_path(manifest["id"]), manifest)
            else:
                plain = json.dumps(manifest, sort_keys=True).encode("utf-8")
                atomic_write_bytes(self.manifest_path(manifest["id"]), cipher.seal(plain, manifest_context(manifest["id"])))
        except OSError as exc:
            raise_if_full(exc, "manifest %s" % manifest["id"])
            raise

    def new_manifest(self, label: Optional[str] = None, **fields: object) -> dict:
        """Return a fresh manifest dict (not yet saved); its label must be in the label grammar."""
        check_new_label(label)
        manifest = {
            "format_version": FORMAT_VERSION,
            "id": new_checkpoint_id((self.ids() or [None])[-1]),
            "label": label,
            "created": utc_now(),
            "host": socket.gethostname(),
            "kind": "checkpoint",
            "roots": [],
            "components": [],
            "facts": {},
        }
        manifest.update({key: value for key, value in fields.items() if value is not None})
        return manifest

    def find(self, ref: str) -> dict:
        """Resolve a checkpoint id, unique id prefix or label (newest wins) to its manifest."""
        ids = self.ids()
        if ref in ids:
            return self.load(ref)
        manifests = [self.load(cid) for cid in ids]
        labelled = [man for man in manifests if man.get("label") == ref]
        if labelled:
            return labelled[-1]
        prefixed = [cid for cid in ids if len(ref) >= 8 and cid.startswith(ref)]
        if len(prefixed) == 1:
            return self.load(prefixed[0])
        raise CheckpointNotFound(
            "Checkpoint %s is not in %s on %s (have: %s). Run gitops.rollback.checkpoint_info "
            "to list checkpoints." % (escape(ref), self.base.root, socket.gethostname(), describe(manifests)),
            available=[checkpoint_summary(man) for man in manifests],
        )

    def find_optional(self, ref: Optional[str]) -> Optional[dict]:
        """Like :meth:`find`, but None when ``ref`` is empty or unknown."""
        if not ref:
            return None
        try:
            return self.find(ref)
        except CheckpointNotFound:
            return None

    def attach_component(self, manifest: dict, component: dict) -> dict:
        """Add or replace (same type and name) a component of a manifest and save it."""
        key = (component.get("type"), component.get("name"))
        kept = [c for c in manifest.get("components", []) if (c.get("type"), c.get("name")) != key]
        manifest["components"] = kept + [component]
        self.save(manifest)
        return manifest

    def delete(self, checkpoint_id: str) -> None:
        """Remove a manifest (its objects go at the next collection)."""
        os.unlink(self.manifest_path(checkpoint_id))

    # ------------------------------------------------------------ references
    def referenced(self, manifest: dict) -> Iterator[str]:
        """Yield every object a manifest references (tree objects, file blobs, component blobs)."""
        for root in manifest.get("roots", []):
            tree = root.get("tree")
            if tree:
                yield tree
                for entry in self.iter_tree(tree):
                    if entry.get("sha256"):
                        yield entry["sha256"]
        for component in manifest.get("components", []):
            yield from component.get("blobs", [])

    def iter_tree(self, sha: str) -> Iterator[dict]:
        """Yield the entries of a tree object (JSON lines)."""
        for number, line in enumerate(self.objects.iter_blob_lines(sha), 1):
            if not line.strip():
                continue
            try:
                entry = _DECODE(line.decode("utf-8"))
            except ValueError as exc:
                raise IntegrityError("Tree object %s line %d is not JSON (%s): the checkpoint is damaged. Restore "
                                     "from another checkpoint." % (sha, number, exc)) from exc
            if not isinstance(entry, dict):
                raise IntegrityError("Tree object %s line %d is not an entry (a JSON object): the checkpoint is "
                                     "damaged. Restore from another checkpoint." % (sha, number))
            yield entry
