# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the rollback role's outcome: which layers changed, which a recovery restores, what the
Terraform preview adds to the plan, and the requested layers as a list.

The decisions live in module_utils/controller/outcome.py and _plan.py. Documentation: one .yml file per filter.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Mapping, Sequence

from ansible.errors import AnsibleFilterError
from ansible_collections.gitops.rollback.plugins.plugin_utils.deferred import deferred

add_changed_layer = deferred("controller.outcome", "add_changed_layer")
layers_to_recover = deferred("controller.outcome", "layers_to_recover")
preflight_problems = deferred("controller.outcome", "preflight_problems")
safety_taken = deferred("controller.outcome", "safety_taken")
terraform_preview_lines = deferred("controller.outcome", "terraform_preview_lines")
with_terraform_preview = deferred("controller.outcome", "with_terraform_preview")
layer_list = deferred("controller.plan", "layer_list")
problems_message = deferred("controller.plan", "problems_message")
_deadline_problem = deferred("controller.outcome", "deadline_problem")
_layer_seconds = deferred("controller.outcome", "layer_seconds")


def within_deadline(layer: str, deadline_epoch: Any = 0, max_seconds: Any = 0, otherwise: Any = None) -> str:
    """Return ``layer`` while the run is within its deadline (0: none); past it, ``otherwise`` when given,
    else fail the task, saying so."""
    problem = _deadline_problem(float(deadline_epoch or 0), time.time(), layer, max_seconds)
    if problem and otherwise is None:
        raise AnsibleFilterError(problem)
    return otherwise if problem else layer


def stop_clock(timings: Dict[str, Any], layer: str, started: Any) -> Dict[str, Any]:
    """Return ``timings`` with the seconds of ``layer`` since ``started`` (epoch seconds); unchanged without a layer."""
    return _layer_seconds(timings, layer, started, time.time())


def preflight_clear(hostvars: Mapping[str, Any], everyone: Sequence[str], alive: Sequence[str]) -> bool:
    """Whether every host of the play was planned and no plan found a problem (the pre-flight so far passes)."""
    by_host = {host: ((hostvars.get(host) or {}).get("__rollback_plan") or {}).get("plan", {}).get("problems") or []
               for host in alive}
    return not preflight_problems(by_host, [host for host in everyone if host not in alive])


def preflight_refused(hostvars: Mapping[str, Any], everyone: Sequence[str], alive: Sequence[str]) -> bool:
    """Whether the pre-flight refuses the run: a problem noted on any host (its plan, the Terraform preview), or a
    host of the play it could not check - what the refuse step of rollback_run decides, read before it."""
    by_host = {host: (hostvars.get(host) or {}).get("__rollback_preflight_problems") or [] for host in alive}
    return bool(preflight_problems(by_host, [host for host in everyone if host not in alive]))


class FilterModule:
    """gitops.rollback outcome filters."""

    def filters(self) -> Dict[str, Any]:
        return {"add_changed_layer": add_changed_layer, "layers_to_recover": layers_to_recover,
                "terraform_preview_lines": terraform_preview_lines, "with_terraform_preview": with_terraform_preview,
                "layer_list": layer_list, "preflight_problems": preflight_problems, "preflight_clear": preflight_clear,
                "preflight_refused": preflight_refused, "safety_taken": safety_taken,
                "problems_message": problems_message, "within_deadline": within_deadline,
                "stop_clock": stop_clock}
