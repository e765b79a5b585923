# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of how the rollback role's steps run: which services restart and how, what the flags layer asks
of feature_flags, which layer's entry refused, and what a failed host does to recover.

The decisions live in module_utils/controller/layer_calls.py and outcome.py. Documentation: one .yml file
per filter.
"""

from __future__ import annotations

from typing import Any, Dict

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.gitops.rollback.plugins.plugin_utils.deferred import deferred

flags_call = deferred("controller.layer_calls", "flags_call")
services_to_restart = deferred("controller.layer_calls", "services_to_restart")
entry_layer = deferred("controller.outcome", "entry_layer")
_recovery_steps = deferred("controller.outcome", "recovery_steps")


def _yes(value: Any, name: str) -> bool:
    try:
        return boolean(value, strict=True)
    except TypeError as exc:
        raise AnsibleFilterError("%s must be a boolean (got %r)" % (name, value)) from exc


def recovery_steps(safety: Any, restore_on_failure: Any, safety_checkpoint: Any, dry_run: Any) -> Dict[str, bool]:
    """What a failed host does: restore from the safety checkpoint, compare its config and release with it."""
    return _recovery_steps(list(safety or []), _yes(restore_on_failure, "rollback_restore_on_failure"),
                           _yes(safety_checkpoint, "rollback_safety_checkpoint"), _yes(dry_run, "dry run"))


class FilterModule:
    """gitops.rollback step filters."""

    def filters(self) -> Dict[str, Any]:
        return {"services_to_restart": services_to_restart, "flags_call": flags_call, "entry_layer": entry_layer,
                "recovery_steps": recovery_steps}
