"""Find the gitops.rollback collection this command drives, and load its shared module_utils."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

NAMESPACE, NAME = "gitops", "rollback"
DEFAULT_COLLECTIONS_PATHS = ("~/.ansible/collections", "/usr/share/ansible/collections")


class CollectionNotFound(RuntimeError):
    """The gitops.rollback collection is nowhere this command looks."""


def _is_collection_root(path: Path) -> bool:
    galaxy = path / "galaxy.yml"
    manifest = path / "MANIFEST.json"
    if galaxy.is_file():
        text = galaxy.read_text(encoding="utf-8", errors="replace")
        return f"namespace: {NAMESPACE}" in text and f"name: {NAME}" in text
    return manifest.is_file() and (path / "plugins" / "module_utils" / "_tags.py").is_file()


def _under(entry: str) -> Path:
    base = Path(entry).expanduser()
    if base.name != "ansible_collections":
        base = base / "ansible_collections"
    return base / NAMESPACE / NAME


def find_collection(collections_path: Optional[str] = None) -> Path:
    """Return the root of gitops.rollback.

    Looked for in order: under ``collections_path`` (given), the checkout this package lives in
    (source tree, editable install), ANSIBLE_COLLECTIONS_PATH, the default collections paths.
    """
    ordered = [_under(collections_path)] if collections_path else []
    ordered.append(Path(__file__).resolve().parents[1])
    entries = os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) + list(DEFAULT_COLLECTIONS_PATHS)
    ordered += [_under(entry) for entry in entries if entry]
    for candidate in ordered:
        if _is_collection_root(candidate):
            return candidate
    raise CollectionNotFound(
        "The gitops.rollback collection was not found (looked in: %s). Install it with "
        "'ansible-galaxy collection install gitops.rollback' or give --collections-path."
        % ", ".join(str(c) for c in ordered))


def collections_dir_for(root: Path, workdir: Path) -> Path:
    """A directory usable as ANSIBLE_COLLECTIONS_PATH in which gitops.rollback is ``root``."""
    if root.parent.name == NAMESPACE and root.parent.parent.name == "ansible_collections" and root.name == NAME:
        return root.parent.parent.parent
    link = workdir / "ansible_collections" / NAMESPACE / NAME
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(root, target_is_directory=True)
    return workdir


MODULE_UTILS_PACKAGE = "gitops_rollback._collection_module_utils"


def load_module_util(root: Path, name: str) -> ModuleType:
    """Import ``plugins/module_utils/<name>.py`` of the collection as a plain module.

    The collection's module_utils directory becomes the package ``gitops_rollback._collection_module_utils``
    (for this process, the first collection loaded wins), so a module_util's relative imports of
    its siblings (``from ._labels import ...``) resolve as they do under Ansible.
    """
    folder = root / "plugins" / "module_utils"
    package = sys.modules.get(MODULE_UTILS_PACKAGE)
    if package is None:
        spec = importlib.util.spec_from_loader(MODULE_UTILS_PACKAGE, loader=None, is_package=True)
        if spec is None:  # pragma: no cover  # spec_from_loader returns a spec for a name
            raise CollectionNotFound(f"{folder} cannot be loaded as a package.")
        spec.submodule_search_locations = [str(folder)]
        package = importlib.util.module_from_spec(spec)
        sys.modules[MODULE_UTILS_PACKAGE] = package
    if not (folder / f"{name}.py").is_file():
        raise CollectionNotFound(f"{folder / (name + '.py')} cannot be loaded: the collection at {root} is incomplete.")
    return importlib.import_module(f"{MODULE_UTILS_PACKAGE}.{name}")
