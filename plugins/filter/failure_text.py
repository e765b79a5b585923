# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter failure_text: what failed in a task result, with the command and its exit code.

A looped task's result says only "One or more items failed"; this names each failed item's message,
command and exit code (and the last line of its error output). Documentation: failure_text.yml.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

_LOOP_MESSAGE = "One or more items failed"


def _command(result: Mapping[str, Any]) -> str:
    cmd = result.get("cmd")
    if isinstance(cmd, (list, tuple)):
        return " ".join(str(part) for part in cmd)
    return str(cmd) if cmd else ""


def _one(result: Mapping[str, Any]) -> str:
    """Describe one failed result: its message, command, exit code and the last line it printed on stderr."""
    message = str(result.get("msg") or "").strip()
    if message == "non-zero return code":
        message = ""
    details: List[str] = []
    command = _command(result)
    if command:
        details.append("command: %s" % command)
    if result.get("rc") not in (None, 0):
        details.append("exit code %s" % result.get("rc"))
    stderr = [line for line in str(result.get("stderr") or "").splitlines() if line.strip()]
    if stderr and stderr[-1].strip() not in message:
        details.append("stderr: %s" % stderr[-1].strip()[:300])
    label = result.get("_ansible_item_label", result.get("item"))
    prefix = "item %s: " % label if label is not None and "results" not in result else ""
    text = message or "failed"
    return prefix + text + (" (%s)" % "; ".join(details) if details else "")


def failure_text(result: Any) -> str:
    """Return what failed in a task result (a loop's failed items one by one), for a message or the audit log."""
    if not isinstance(result, Mapping):
        return str(result) if result else "unknown failure"
    items = [r for r in result.get("results") or [] if isinstance(r, Mapping) and r.get("failed")]
    if items:
        return "; ".join(_one(item) for item in items)
    if result.get("msg") == _LOOP_MESSAGE:
        return _LOOP_MESSAGE
    return _one(result)


class FilterModule:
    """gitops.rollback failure filters."""

    def filters(self) -> Dict[str, Any]:
        return {"failure_text": failure_text}
