# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One definition of a dry run for every entry point: playbooks, roles, AWX surveys and the CLI.

A run is a dry run when Ansible runs in check mode (``--check``, an AWX job of type check, the
``gitops-rollback --check`` command) or when the dry-run answer (``rollback_dry_run``, the AWX
surveys' question) is yes. A dry run runs every module in check mode and changes nothing; the
audit log says which of the two a run was.
"""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.common.labels import escape

YES = frozenset({"yes", "y", "true", "on", "1"})
NO = frozenset({"no", "n", "false", "off", "0", ""})


class DryRunAnswerError(RollbackError):
    """The dry-run answer is neither yes nor no."""


def answer_is_yes(answer: object, name: str = "rollback_dry_run") -> bool:
    """Read a dry-run answer: yes/no, true/false, on/off, 1/0 (any case) or a boolean; none is no."""
    if answer is None or isinstance(answer, bool):
        return bool(answer)
    if isinstance(answer, int) and answer in (0, 1):
        return bool(answer)
    if isinstance(answer, str):
        text = answer.strip().lower()
        if text in YES:
            return True
        if text in NO:
            return False
    raise DryRunAnswerError(
        "%s must be yes or no (got %s), so nothing ran. Answer the dry-run question with yes (plan only, "
        "change nothing) or no (roll back for real)." % (name, escape(answer)))


def is_dry_run(answer: object, check_mode: object = False, name: str = "rollback_dry_run") -> bool:
    """True when the run only plans: Ansible's check mode, or a dry-run answer of yes."""
    answered_yes = answer_is_yes(answer, name)  # checked in check mode too
    return answer_is_yes(check_mode, "check mode") or answered_yes
