"""Conditional checkpoints: a scheduled checkpoint taken only while a health gate holds, at most once a cooldown.

    gitops-rollback schedule checkpoint --every 15m --when-gate gate.yml --cooldown 6h -i inventory.yml

``gate.yml`` holds the options of ``gitops.rollback.health_check`` (``metrics`` with their providers -
Prometheus, HTTP, command - and ``interval``, ``count``, limits, thresholds). It is checked when the entry
is scheduled. At each slot ``run-due`` evaluates the gate on the controller with the collection's own
engine; only a ``pass`` verdict takes the checkpoint (a state known to be healthy), and then at most one
per ``--cooldown`` seconds, with the guard's cooldown (``health.cooldown``: a state file, a lock, the time
of the last one per entry). Anything else is recorded as skipped, with why.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from .collection import import_module_util


class ConditionError(RuntimeError):
    """A gate file that is not a health gate, or a condition without its layer: nothing was scheduled."""


#: Conditions the checkpoint playbook decides itself, per host: the entry's flag -> (the option, the
#: checkpoint role's variable, the one layer it compares). ``--when-changed``: the managed paths differ from
#: their newest checkpoint; ``--when-migrated``: a database's migration version differs from its newest backup's.
PLAYBOOK_CONDITIONS = {
    "when_changed": ("--when-changed", "checkpoint_when_changed", "config"),
    "when_migrated": ("--when-migrated", "checkpoint_when_migrated", "database"),
}


def playbook_conditions(args: Any, layers: List[str]) -> Dict[str, bool]:
    """The entry's playbook conditions from the command line; each compares one layer, which must be the only one."""
    chosen = {flag: bool(getattr(args, flag, False)) for flag in PLAYBOOK_CONDITIONS}
    for flag, (option, _variable, layer) in PLAYBOOK_CONDITIONS.items():
        if chosen[flag] and layers != [layer]:
            what = "managed paths" if layer == "config" else "databases' migration versions"
            raise ConditionError(f"{option} compares {what} only: give --layers {layer} with it.")
    return chosen


def condition_variables(entry: Dict[str, Any]) -> Dict[str, bool]:
    """The checkpoint role's variables for the entry's playbook conditions."""
    return {variable: True for flag, (_option, variable, _layer) in PLAYBOOK_CONDITIONS.items() if entry.get(flag)}


def read_gate(path: str, collections_path: Optional[str]) -> Dict[str, Any]:
    """The health gate options in ``path`` (YAML or JSON), checked as health_check checks its options."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConditionError(f"--when-gate {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConditionError(f"--when-gate {path}: a mapping of health_check options (metrics, interval, ...).")
    options = import_module_util("health.options", collections_path)
    try:
        checked = options.gate_params(raw)
        options.build_specs(checked)
    except Exception as exc:  # the engine's typed errors; nothing is scheduled
        raise ConditionError(f"--when-gate {path}: {exc}") from exc
    return json.loads(json.dumps(checked))  # plain JSON for the schedule file


def cooldown_path(schedule_file: Path) -> Path:
    """The cooldown state of conditional checkpoints, beside the schedule."""
    return schedule_file.with_name(schedule_file.stem + "-cooldown.json")


def condition_met(entry: Dict[str, Any], collections_path: Optional[str], state: Path,
                  now: datetime.datetime) -> Tuple[bool, str]:
    """Whether the entry's gate holds now and its cooldown allows a checkpoint (recording it when so), and why."""
    options = import_module_util("health.options", collections_path)
    evaluation = options.evaluate_gate(options.gate_params(entry["gate"]))
    if evaluation.verdict != "pass":
        return False, "the gate's verdict is %s (%s)" % (evaluation.verdict, evaluation.reason)
    cooldown = import_module_util("health.cooldown", collections_path)
    decision = cooldown.acquire(str(state), "checkpoint:" + entry["id"], float(entry.get("cooldown", 0)), record=True,
                                now=now.timestamp())
    if not decision.allowed:
        shown = decision.as_dict(now.timestamp())
        return False, "the gate passes, but the cooldown allows the next checkpoint at %s (the last: %s)" % (
            shown["next_allowed"], shown["last"])
    return True, "the gate passes (%s)" % evaluation.reason
