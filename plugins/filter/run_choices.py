# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the rollback role's choices around its plan: the task file of a layer, the selected entries,
the safety checkpoint taken or removed, the problem a failed pre-flight step notes.

The decisions live in module_utils/controller/run_choices.py. Documentation: one .yml file per filter.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible_collections.gitops.rollback.plugins.filter.failure_text import failure_text
from ansible_collections.gitops.rollback.plugins.plugin_utils.deferred import deferred

_CHOICES = "controller.run_choices"
_preflight_problem = deferred(_CHOICES, "preflight_problem")


def preflight_problem(failed_result: Any, layer: str, task: Optional[str] = "") -> Dict[str, str]:
    """Return the pre-flight problem of a failed step of ``layer``: its task's name and what failed."""
    return _preflight_problem(layer, task, failure_text(failed_result))


class FilterModule:
    """gitops.rollback run-choice filters."""

    def filters(self) -> Dict[str, Any]:
        filters: Dict[str, Any] = {name: deferred(_CHOICES, name) for name in (
            "layer_task_file", "selected_entries", "safety_wanted", "safety_request", "safety_to_remove",
            "layer_role_run")}
        filters["preflight_problem"] = preflight_problem
        return filters
