"""Tag patterns and event decisions, re-exported from the collection's ``module_utils/controller/tags.py``.

The collection holds the one implementation (the ``gitops.rollback.tag_event`` filter used by the
playbooks under AWX imports it too); this module loads that file so the command line and the
playbooks decide alike.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Optional

from .collection import find_collection, load_module_util

_loaded: Optional[ModuleType] = None
_collections_path: Optional[str] = None


def _tags() -> ModuleType:
    global _loaded  # pylint: disable=global-statement  # loaded once, on first use
    if _loaded is None:
        _loaded = load_module_util(find_collection(_collections_path), "controller.tags")
    return _loaded


def prefer(collections_path: Optional[str]) -> None:
    """Look for the collection under ``collections_path`` first when ``controller.tags`` is loaded."""
    global _collections_path  # pylint: disable=global-statement
    _collections_path = collections_path


def is_tag_event_error(exc: BaseException) -> bool:
    """True for ``controller.tags.TagEventError`` (False, without loading anything, when ``controller.tags`` was never loaded)."""
    return _loaded is not None and isinstance(exc, _loaded.TagEventError)


def __getattr__(name: str) -> Any:
    """The names of ``controller.tags`` (``decide``, ``REFUSE``...), loaded from the collection on first use.

    Importing this module needs no collection, so ``gitops-rollback --help`` works without one.
    """
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_tags(), name)
