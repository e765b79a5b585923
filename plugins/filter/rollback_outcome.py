# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the rollback role's outcome: which layers changed, which a recovery restores, what the
Terraform preview adds to the plan, and the requested layers as a list.

The decisions live in module_utils/controller/outcome.py and _plan.py. Documentation: one .yml file per filter.
"""

from __future__ import annotations

from typing import Any, Dict

from ansible_collections.gitops.rollback.plugins.module_utils.controller.outcome import (
    add_changed_layer, layers_to_recover, preflight_problems, terraform_preview_lines, with_terraform_preview)
from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import layer_list, problems_message


class FilterModule:
    """gitops.rollback outcome filters."""

    def filters(self) -> Dict[str, Any]:
        return {"add_changed_layer": add_changed_layer, "layers_to_recover": layers_to_recover,
                "terraform_preview_lines": terraform_preview_lines, "with_terraform_preview": with_terraform_preview,
                "layer_list": layer_list, "preflight_problems": preflight_problems,
                "problems_message": problems_message}
