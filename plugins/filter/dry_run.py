# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter dry_run: a dry-run answer and Ansible's check mode -> whether the run only plans.

The decision lives in module_utils/controller/run_mode.py. Documentation: dry_run.yml.
"""

from __future__ import annotations

from typing import Any, Dict

from ansible.errors import AnsibleFilterError


def dry_run(answer: Any, check_mode: Any = False, name: str = "rollback_dry_run") -> bool:
    """True when the run only plans: check mode, or a dry-run answer of yes."""
    # imported here: Ansible loads this file for any filter of the collection (plugin_utils/deferred.py)
    from ansible_collections.gitops.rollback.plugins.module_utils.controller.run_mode import DryRunAnswerError, is_dry_run

    try:
        return is_dry_run(answer, check_mode, name)
    except DryRunAnswerError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """gitops.rollback run-mode filters."""

    def filters(self) -> Dict[str, Any]:
        return {"dry_run": dry_run}
