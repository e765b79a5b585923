"""Find the gitops.rollback collection this command drives, and load its shared module_utils."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional

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
    return manifest.is_file() and (path / "plugins" / "module_utils" / "controller" / "tags.py").is_file()


def _under(entry: str) -> Path:
    base = Path(entry).expanduser()
    if _is_collection_root(base):  # the collection's own directory (a checkout) is accepted too
        return base
    if base.name != "ansible_collections":
        base = base / "ansible_collections"
    return base / NAMESPACE / NAME


def ansible_collections_paths() -> List[str]:
    """The collections paths ansible-playbook would search from here, in its order.

    ansible-core's configuration decides them (``ANSIBLE_COLLECTIONS_PATH``, ``collections_path``
    in the ansible.cfg it finds: ``ANSIBLE_CONFIG``, ./ansible.cfg, ~/.ansible.cfg,
    /etc/ansible/ansible.cfg; then its defaults), followed by the ``ansible_collections``
    directories on ``sys.path`` (collections installed with pip). Without ansible-core the
    environment variable and the defaults are used.
    """
    try:
        from ansible import constants  # pylint: disable=import-outside-toplevel  # slow; only when needed
        paths = [str(p) for p in constants.COLLECTIONS_PATHS or []]
        scan_sys_path = bool(getattr(constants, "COLLECTIONS_SCAN_SYS_PATH", True))
    except Exception:  # pylint: disable=broad-except  # ansible-core missing or its configuration unreadable
        env = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or os.environ.get("ANSIBLE_COLLECTIONS_PATHS") or ""
        paths = [p for p in env.split(os.pathsep) if p] or list(DEFAULT_COLLECTIONS_PATHS)
        scan_sys_path = True
    if scan_sys_path:
        paths += [entry for entry in sys.path if entry and (Path(entry) / "ansible_collections").is_dir()]
    return paths


def find_collection(collections_path: Optional[str] = None) -> Path:
    """Return the root of gitops.rollback.

    Looked for in order: under ``collections_path`` (given), the checkout this package lives in
    (source tree, editable install), the collections paths ansible-playbook uses here
    (:func:`ansible_collections_paths`).
    """
    ordered = [_under(collections_path)] if collections_path else []
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "galaxy.yml").is_file():  # not when pip installed the package elsewhere
        ordered.append(checkout)
    ordered += [_under(entry) for entry in ansible_collections_paths()]
    for candidate in ordered:
        if _is_collection_root(candidate):
            return candidate
    raise CollectionNotFound(
        "The gitops.rollback collection was not found; looked in: %s. Install it with "
        "'ansible-galaxy collection install gitops.rollback', or say where it is: set ANSIBLE_COLLECTIONS_PATH "
        "to the directory that holds ansible_collections/gitops/rollback, or collections_path in the [defaults] "
        "section of ansible.cfg, or give --collections-path DIR." % ", ".join(str(c) for c in ordered))


def collection_dir_option(root: Path) -> str:
    """A ``--collections-path`` value that finds ``root`` again: its collections directory, or the root itself."""
    root = Path(os.path.abspath(root))
    if root.parent.name == NAMESPACE and root.parent.parent.name == "ansible_collections" and root.name == NAME:
        return str(root.parent.parent.parent)
    return str(root)


def collections_dir_for(root: Path, workdir: Path) -> Path:
    """A directory usable as ANSIBLE_COLLECTIONS_PATH in which gitops.rollback is ``root``."""
    if root.parent.name == NAMESPACE and root.parent.parent.name == "ansible_collections" and root.name == NAME:
        return root.parent.parent.parent
    link = workdir / "ansible_collections" / NAMESPACE / NAME
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(root, target_is_directory=True)
    return workdir


#: The directory each collection root is imported from in this process (kept until it exits: the package
#: ``ansible_collections.gitops.rollback`` keeps its path, and a later import of another room needs it).
_IMPORT_DIRS: Dict[Path, Path] = {}


def _import_dir(root: Path) -> Path:
    if root not in _IMPORT_DIRS:
        workdir = Path(tempfile.mkdtemp(prefix="gitops-rollback-"))
        atexit.register(shutil.rmtree, workdir, True)
        _IMPORT_DIRS[root] = collections_dir_for(root, workdir)
    return _IMPORT_DIRS[root]


def import_module_util(name: str, collections_path: Optional[str] = None) -> ModuleType:
    """Import ``ansible_collections.gitops.rollback.plugins.module_utils.<name>`` from the collection found.

    For module_utils that import their siblings by absolute ``ansible_collections`` names. Every import
    of a process goes through one directory per collection, so modules of several rooms can be imported
    one after another.
    """
    qualified = f"ansible_collections.{NAMESPACE}.{NAME}.plugins.module_utils.{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    sys.path.insert(0, str(_import_dir(find_collection(collections_path))))
    try:
        return importlib.import_module(qualified)
    finally:
        sys.path.pop(0)


MODULE_UTILS_PACKAGE = "gitops_rollback._collection_module_utils"


def load_module_util(root: Path, name: str) -> ModuleType:
    """Import ``plugins/module_utils/<package>/<name>.py`` (``name`` is ``package.name``) as a plain module.

    The collection's module_utils directory becomes the package ``gitops_rollback._collection_module_utils``
    (for this process, the first collection loaded wins), so a module_util's relative imports of
    its siblings (``from ..common.labels import ...``) resolve as they do under Ansible.
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
    source = folder.joinpath(*name.split(".")).with_suffix(".py")
    if not source.is_file():
        raise CollectionNotFound(f"{source} cannot be loaded: the collection at {root} is incomplete.")
    return importlib.import_module(f"{MODULE_UTILS_PACKAGE}.{name}")
