# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback role's choices around its plan: which task file rolls a layer back, the entries the plan
selected, whether the safety checkpoint is taken (and removed again), and the problem a failed pre-flight step
notes. Pure functions; the role calls them through the filters of plugins/filter/run_choices.py.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

#: The layer whose layer role runs once per Terraform project.
INFRASTRUCTURE = "infrastructure"


def _any_set(files: Any) -> bool:
    """Whether any of the hook task files is set (a string is one file; empty or none: not set)."""
    if files is None:
        return False
    if isinstance(files, str):
        return len(files) > 0
    return any(_any_set(item) for item in files)


def layer_task_file(layer: str, role_hooks: Any = (), infrastructure_mode: Optional[str] = "revert",
                    terraform_projects: int = 1, layer_hooks: Any = ()) -> str:
    """Return the rollback role's task file that rolls ``layer`` back.

    ``layer_hooked.yml`` when the layer's hooks (``layer_hooks``: gitops_rollback_before|after_<layer>_tasks)
    are set; else ``layer_timed.yml`` (the layer role's whole entry point) when the layer role's own hooks
    (``role_hooks``) are set, or for the infrastructure layer with several (or no) Terraform projects or an
    ``infrastructure_mode`` other than revert; else ``step_<layer>.yml`` (the layer role's planned entry point).
    """
    if _any_set(layer_hooks):
        return "layer_hooked.yml"
    whole_role = _any_set(role_hooks) or (
        layer == INFRASTRUCTURE and (infrastructure_mode != "revert" or int(terraform_projects) != 1))
    return "layer_timed.yml" if whole_role else "step_%s.yml" % layer


def selected_entries(entries: Sequence[Any], positions: Optional[Sequence[int]] = None) -> List[Any]:
    """Return the entries at ``positions`` (the plan's selection of a layer), in that order; all of them
    without a selection (no plan yet, as in the guard's first response)."""
    entries = list(entries or [])
    if positions is None:
        return entries
    return [entries[int(index)] for index in positions]


def safety_wanted(wanted: Any, planning: Any, clear: Any = True) -> bool:
    """Whether the run takes a safety checkpoint: one wanted (rollback_safety_checkpoint), not a dry run, and
    (for a step after the plans) every host's plan clear."""
    return bool(wanted) and not planning and bool(clear)


def safety_request(wanted: Any, planning: Any, label: str, reason: str,
                   exclude: Any = None, lock_timeout: int = 300) -> Dict[str, Any]:
    """Return the plan's ``safety`` option: the checkpoint to take in the plan's host run, or nothing (an empty
    dict) when the run takes none (not wanted, or a dry run)."""
    if not safety_wanted(wanted, planning):
        return {}
    return {"label": label, "reason": reason, "exclude": [] if exclude is None else exclude, "lock_timeout": lock_timeout}


def safety_to_remove(plan_result: Mapping[str, Any], refusing: Any, changes: Sequence[str]) -> bool:
    """Whether the safety checkpoint the plan's host run took (its journal names what it created) is removed
    again: the run does not go on (the pre-flight refuses it, or nothing changes on the host)."""
    journal = (plan_result.get("safety") or {}).get("journal") or {}
    return bool(journal.get("created")) and (bool(refusing) or not changes)


def preflight_problem(layer: str, task: Optional[str], problem: str) -> Dict[str, str]:
    """Return the pre-flight problem a failed step of ``layer`` notes: the layer, the failed task's name (empty
    when unknown) and what failed."""
    return {"layer": layer, "task": task or "", "problem": problem}


def layer_role_run(target: Optional[str], checkpoint: Any = "", verify_tag: Any = "",
                   role_hooks: Any = ()) -> Dict[str, Any]:
    """Return how the rollback role runs a layer role: the plan's step, or the recovery to the safety checkpoint.

    ``target`` is the safety checkpoint of a recovery (none in the plan's step). The plan's step uses the plan's
    ``checkpoint`` and ``verify_tag`` and runs the role's planned entry point (the pre-flight verified the target),
    or its whole entry point (``main``) when the role's own hooks (``role_hooks``) are set. A recovery uses its
    target, verifies it in the role (``verify_here``), verifies no tag and runs the whole role.
    """
    recovering = target is not None
    return {"checkpoint": target if recovering else checkpoint,
            "verify_tag": "" if recovering else verify_tag,
            "verify_here": recovering,
            "tasks_from": "main" if recovering or _any_set(role_hooks) else "planned"}
