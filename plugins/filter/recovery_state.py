# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter recovery_state: where a host is after a failed rollback, as compared with its safety checkpoint.

The input is the result of comparing each stored layer with the safety checkpoint (``restore`` and
``release`` run in check mode after the recovery): a layer is at the checkpoint when the comparison
found nothing to change. The outcome does not depend on whether the recovery's own tasks (a service
restart, say) succeeded: a host whose files match is said to be back, with the recovery's problem
named beside it. Documentation: recovery_state.yml.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

#: Layers a check-mode comparison can verify, and the layers of a safety checkpoint it cannot.
VERIFIED_LAYERS = ("release", "config")
UNCOMPARED_LAYERS = ("database", "infrastructure")
_SHOWN = 8
OFF = "recovery is off"


def _file_differences(result: Mapping[str, Any]) -> List[str]:
    """Name what a check-mode restore would change: ``<root>: <op> <path>`` (the first few of each root)."""
    found = []
    summary = result.get("summary") or {}
    for root, actions in (result.get("changes") or {}).items():
        shown = ["%s %s" % (action.get("op"), action.get("path")) for action in actions[:_SHOWN]]
        total = sum((summary.get(root) or {}).values()) or len(actions)
        more = " and %d more" % (total - len(shown)) if total > len(shown) else ""
        found.append("%s: %s%s" % (root, ", ".join(shown), more))
    return found


def _compare(layer: str, result: Any) -> Optional[List[str]]:
    """Return a layer's differences from the checkpoint ([] when equal), or None when it was not compared."""
    if not isinstance(result, Mapping) or result.get("skipped"):
        return None
    if layer == "config":
        if "changes" not in result:
            return None
        return _file_differences(result) if result.get("changed") else []
    if "current" not in result:
        return None
    if not result.get("changed"):
        return []
    was = (result.get("previous_release") or {}).get("id") or "?"
    return ["current is %s, the checkpoint recorded %s" % (was, result.get("current"))]


def _why_not(result: Any) -> str:
    """Say why a comparison gave no answer (its error message, when it failed)."""
    if isinstance(result, Mapping) and result.get("msg"):
        return str(result["msg"]).splitlines()[0][:300]
    return "not compared"


def recovery_state(checks: Any, safety_label: Optional[str], layers: Any = None,
                   recovery_problem: Optional[str] = None, recovered: bool = False) -> Dict[str, Any]:
    """Decide where a failed host is: back at its safety checkpoint (verified), different from it, or unknown.

    ``checks``: {layer: check-mode result} for the stored layers; ``layers``: the layers the safety checkpoint
    holds; ``recovery_problem``: what went wrong during the recovery, if anything; ``recovered``: whether every
    recovery task succeeded. Returns ``state`` (``at_safety_checkpoint``: every compared layer equal;
    ``differs``; ``restored``: recovered, nothing to compare; ``unverified``), ``recovered`` (the host is back,
    as far as can be told), ``verified`` (layers found equal), ``differences`` ({layer: [what differs]}),
    ``not_compared`` and ``text`` for the message.
    """
    checks = checks if isinstance(checks, Mapping) else {}
    held = [str(layer) for layer in layers or []]
    verified: List[str] = []
    differences: Dict[str, List[str]] = {}
    unknown: Dict[str, str] = {}
    for layer in [layer for layer in VERIFIED_LAYERS if layer in held]:
        found = _compare(layer, checks.get(layer))
        if found is None:
            unknown[layer] = _why_not(checks.get(layer))
        elif found:
            differences[layer] = found
        else:
            verified.append(layer)
    not_compared = [layer for layer in held if layer in UNCOMPARED_LAYERS]
    problem = ""
    if recovery_problem == OFF:
        problem = " The recovery is off (rollback_restore_on_failure), so nothing was restored."
    elif recovery_problem:
        problem = " The recovery reported: %s." % recovery_problem.rstrip(".")
    if not safety_label or not held:
        state = "unverified"
        if recovered and not recovery_problem:
            text = "No safety checkpoint was taken (the plan changes no stored layer of this host), so nothing was " \
                   "brought back."
        else:
            text = "The host was NOT brought back: %s (no safety checkpoint was taken to compare it with)." % (
                recovery_problem or OFF)
    elif differences:
        state = "differs"
        text = "The host is NOT at its safety checkpoint %s: %s.%s%s" % (
            safety_label, "; ".join("%s differs (%s)" % (layer, "; ".join(items)) for layer, items in differences.items()),
            _also(verified, unknown, not_compared), problem)
    elif recovered and not unknown and not verified:
        state = "restored"
        text = "The host was brought back to its safety checkpoint %s.%s%s" % (
            safety_label, _also([], {}, not_compared), problem)
    elif unknown or not verified:
        state = "unverified"
        text = "The host could not be compared with its safety checkpoint %s (%s).%s%s" % (
            safety_label, "; ".join("%s: %s" % item for item in unknown.items()) or "no layer to compare",
            _also(verified, {}, not_compared), problem)
    else:
        state = "at_safety_checkpoint"
        text = "The host is back at its safety checkpoint %s (verified: %s equal to it).%s%s" % (
            safety_label, " and ".join(verified), _also([], {}, not_compared), problem)
    return {"state": state, "recovered": state in ("at_safety_checkpoint", "restored"), "verified": verified, "differences": differences, "unknown": unknown,
            "not_compared": not_compared, "text": text}


def _also(verified: List[str], unknown: Mapping[str, str], not_compared: List[str]) -> str:
    """The other layers, in a sentence: equal, not comparable, restored but not compared."""
    parts = []
    if verified:
        parts.append("equal to it: %s" % ", ".join(verified))
    if unknown:
        parts.append("not compared: %s" % "; ".join("%s (%s)" % item for item in unknown.items()))
    if not_compared:
        parts.append("%s not compared with it" % " and ".join(not_compared))
    return (" " + "; ".join(parts)[0].upper() + "; ".join(parts)[1:] + ".") if parts else ""


class FilterModule:
    """gitops.rollback recovery filter."""

    def filters(self) -> Dict[str, Any]:
        return {"recovery_state": recovery_state}
