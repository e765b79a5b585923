# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters whose engine module is imported when a template first calls them, not when Ansible loads the file.

To find any one filter of a collection, Ansible loads every filter file of that collection, in every worker
process that templates one, and its collection loader compiles the collection's Python from source each time
(no bytecode cache). An engine import at the top of a filter file is paid by every task that uses any of the
collection's filters; behind :func:`deferred` it is paid only by the task that calls that filter. A filter that
also catches the engine's exception (dry_run, tag_event) imports both inside its function instead.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable

ENGINE = "ansible_collections.gitops.rollback.plugins.module_utils."


def deferred(module: str, name: str) -> Callable[..., Any]:
    """The function ``name`` of the engine's ``module`` (relative to module_utils, e.g. ``controller.plan``),
    imported at its first call."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(import_module(ENGINE + module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = "%s from module_utils/%s.py, imported at the first call." % (name, module.replace(".", "/"))
    return call
