# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manifest of a checkpoint, typed: what it holds (file roots and components) and its checks.

A manifest is the JSON document ``checkpoints/<id>.json`` of a store (see docs/store-format.md).
:meth:`Manifest.from_json` checks its shape, the one place that does, and :meth:`Manifest.to_json`
gives back the same document (fields this code does not know are kept as they were), so a store
written by an earlier version reads and rewrites unchanged. Layers find their part with
:meth:`Manifest.component` instead of walking the ``components`` list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..common.errors import IntegrityError, UnsupportedFormat

FORMAT_VERSION = 1  # of manifests; also of a plain store without packs
SCOPED_FORMAT_VERSION = 2  # of a manifest with a root narrowed to some paths (``scope``): earlier readers refuse it
READ_VERSIONS = (FORMAT_VERSION, SCOPED_FORMAT_VERSION)
_CORE = ("type", "name", "blobs")
_MANIFEST_CORE = ("format_version", "id", "label", "created", "kind", "roots", "components")


def manifest_version(roots: List[dict]) -> int:
    """Return the format_version a manifest with these roots is written with: 2 when a root has a ``scope``
    (a reader that ignored it would restore the whole root), else 1."""
    return SCOPED_FORMAT_VERSION if any(root.get("scope") for root in roots) else FORMAT_VERSION


def malformed(checkpoint_id: Optional[str], what: str) -> IntegrityError:
    """The error of a manifest that does not have the documented shape."""
    return IntegrityError("Manifest %s is malformed: %s. It is damaged or forged; delete it (checkpoint "
                          "state=absent) and use another checkpoint." % (checkpoint_id, what))


@dataclass
class Component:
    """A part of a checkpoint besides its file roots: a database dump, a release, a Terraform state.

    ``type`` and ``name`` identify it within the manifest; ``blobs`` are the objects it references
    (kept by garbage collection); ``fields`` hold what its layer recorded (engine, release id, ...).
    """

    type: Optional[str]
    name: Optional[str]
    blobs: List[str] = field(default_factory=list)
    fields: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, document: dict, checkpoint_id: Optional[str] = None) -> "Component":
        """Read a component object, refusing blobs that are not object names."""
        blobs = document.get("blobs", [])
        if not isinstance(blobs, list) or not all(isinstance(sha, str) for sha in blobs):
            raise malformed(checkpoint_id, "component %r lists blobs that are not object names"
                            % (document.get("name"),))
        return cls(document.get("type"), document.get("name"), list(blobs),
                   {key: value for key, value in document.items() if key not in _CORE})

    def to_json(self) -> dict:
        """Return the component object as stored."""
        return dict({"type": self.type, "name": self.name, "blobs": list(self.blobs)}, **self.fields)

    def get(self, key: str, default: Any = None) -> Any:
        """Return a field its layer recorded (``type``, ``name`` and ``blobs`` too)."""
        return self.to_json().get(key, default) if key in _CORE else self.fields.get(key, default)

    def matches(self, kind: str, name: Optional[str] = None) -> bool:
        """Tell whether this is the component of type ``kind`` (and ``name`` when given)."""
        return self.type == kind and (name is None or self.name == name)


@dataclass
class Manifest:
    """A checkpoint: id, label, when, its file roots and its components, and the other fields it records."""

    id: str
    label: Optional[str] = None
    created: Optional[str] = None
    kind: Optional[str] = None
    roots: List[dict] = field(default_factory=list)
    components: List[Component] = field(default_factory=list)
    fields: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, document: Any, checkpoint_id: Optional[str] = None) -> "Manifest":
        """Read and check a manifest document (of ``checkpoint_id`` when given: its id must be that)."""
        version = document.get("format_version") if isinstance(document, dict) else None
        if version not in READ_VERSIONS:
            raise UnsupportedFormat("Manifest %s has format_version %r; this collection reads versions %s."
                                    % (checkpoint_id, version, ", ".join(map(str, READ_VERSIONS))))
        checkpoint_id = document.get("id") if checkpoint_id is None else checkpoint_id
        if document.get("id") != checkpoint_id or not isinstance(checkpoint_id, str):
            raise malformed(checkpoint_id, "its id %r is not its file name" % (document.get("id"),))
        if not isinstance(document.get("label"), (str, type(None))):
            raise malformed(checkpoint_id, "its label is not text")
        for key in ("roots", "components"):
            items = document.get(key, [])
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise malformed(checkpoint_id, "%s is not a list of objects" % key)
        for root in document.get("roots", []):
            if not isinstance(root.get("path"), str) or not isinstance(root.get("tree"), (str, type(None))):
                raise malformed(checkpoint_id, "a root has no path or a tree that is not an object name")
            scope = root.get("scope", [])
            if not isinstance(scope, list) or not all(isinstance(rel, str) for rel in scope):
                raise malformed(checkpoint_id, "the scope of root %r is not a list of paths" % (root["path"],))
        return cls(
            id=checkpoint_id, label=document.get("label"), created=document.get("created"), kind=document.get("kind"),
            roots=list(document.get("roots", [])),
            components=[Component.from_json(item, checkpoint_id) for item in document.get("components", [])],
            fields={key: value for key, value in document.items() if key not in _MANIFEST_CORE},
        )

    def to_json(self) -> dict:
        """Return the manifest document as stored (``kind`` and ``created`` only when set)."""
        document = dict(self.fields, format_version=manifest_version(self.roots), id=self.id, label=self.label, roots=list(self.roots),
                        components=[component.to_json() for component in self.components])
        for key in ("created", "kind"):
            if getattr(self, key) is not None:
                document[key] = getattr(self, key)
        return document

    def component(self, kind: str, name: str) -> Optional[Component]:
        """Return the component of type ``kind`` named ``name``, or None."""
        for component in self.components:
            if component.matches(kind, name):
                return component
        return None

    def components_of(self, kind: str) -> List[Component]:
        """Return the components of type ``kind``, in manifest order."""
        return [component for component in self.components if component.matches(kind)]

    def put_component(self, component: Component) -> None:
        """Add ``component``, replacing one of the same type and name (it goes last)."""
        self.drop_component(component.type, component.name)
        self.components.append(component)

    def drop_component(self, kind: Optional[str], name: Optional[str]) -> None:
        """Remove the component of type ``kind`` named ``name`` (nothing when there is none)."""
        self.components = [c for c in self.components if (c.type, c.name) != (kind, name)]

    @property
    def empty(self) -> bool:
        """True when the checkpoint holds neither file roots nor components."""
        return not self.components and not self.roots

    @property
    def shown_label(self) -> str:
        """The label, else the id (for messages)."""
        return self.label or self.id
