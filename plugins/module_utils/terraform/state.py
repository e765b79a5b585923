# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic on Terraform state documents: addresses, differences, a revert copy.

No Terraform runs here; everything works on the JSON that ``terraform state pull`` prints
(state format version 4).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Dict, List, Optional, Tuple

from ..common.errors import IntegrityError, RollbackError

STATE_VERSION = 4
VALUE_WIDTH = 60


class LineageMismatch(RollbackError):
    """A snapshot belongs to another state history (lineage) than the current state."""


def parse_state(data: bytes, where: str) -> Optional[dict]:
    """Parse pulled or stored state bytes; None for an empty workspace (no state yet)."""
    if not data.strip():
        return None
    try:
        state = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError("%s is not a Terraform state document (%s)." % (where, exc)) from exc
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise IntegrityError(
            "%s has Terraform state format version %r; only version %d is supported. Pull it "
            "with Terraform >= 0.12." % (where, version, STATE_VERSION)
        )
    for key in ("serial", "lineage"):
        if key not in state:
            raise IntegrityError("%s has no %r field; it is not a complete Terraform state." % (where, key))
    return state


def encode_state(state: dict) -> bytes:
    """Serialize a state the way Terraform writes it (2-space indent, trailing newline)."""
    return (json.dumps(state, indent=2, sort_keys=False) + "\n").encode("utf-8")


def _instance_address(resource: dict, instance: dict) -> str:
    parts = []
    if resource.get("module"):
        parts.append(resource["module"])
    if resource.get("mode") == "data":
        parts.append("data")
    parts.append("%s.%s" % (resource.get("type"), resource.get("name")))
    address = ".".join(parts)
    key = instance.get("index_key")
    if isinstance(key, str):
        address += '["%s"]' % key
    elif key is not None:
        address += "[%s]" % key
    return address


def _sensitive_names(instance: dict) -> List[str]:
    """Top-level attribute names Terraform marked sensitive (either path encoding)."""
    names = []
    for path in instance.get("sensitive_attributes") or []:
        step = path[0] if isinstance(path, list) and path else path
        if isinstance(step, dict) and isinstance(step.get("value"), str):
            names.append(step["value"])
    return names


def resource_index(state: Optional[dict]) -> Dict[str, dict]:
    """Map each resource instance address to its attributes, sensitive ones masked."""
    index: Dict[str, dict] = {}
    for resource in (state or {}).get("resources", []):
        for instance in resource.get("instances", []):
            attributes = dict(instance.get("attributes") or {})
            for name in _sensitive_names(instance):
                if name in attributes:
                    attributes[name] = "(sensitive)"
            index[_instance_address(resource, instance)] = attributes
    for name, output in (state or {}).get("outputs", {}).items():
        index["output.%s" % name] = {"value": "(sensitive)" if output.get("sensitive") else output.get("value")}
    return index


def count_resources(state: Optional[dict]) -> int:
    """Count resource instances (not outputs) in a state."""
    return sum(len(res.get("instances", [])) for res in (state or {}).get("resources", []))


def content_digest(state: Optional[dict]) -> str:
    """Hash what a revert restores (resources and outputs), ignoring serial and lineage."""
    body = {"resources": (state or {}).get("resources", []), "outputs": (state or {}).get("outputs", {})}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def state_difference(before: Optional[dict], after: Optional[dict]) -> dict:
    """Return the addresses added, removed and changed (with changed attribute names) from before to after."""
    old, new = resource_index(before), resource_index(after)
    changed = []
    for address in sorted(set(old) & set(new)):
        if old[address] != new[address]:
            keys = sorted(k for k in set(old[address]) | set(new[address]) if old[address].get(k) != new[address].get(k))
            changed.append({"address": address, "attributes": keys})
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": changed,
        "unchanged": sum(1 for a in set(old) & set(new) if old[a] == new[a]),
    }


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."


def render_resources(state: Optional[dict], header: str) -> str:
    """Render a state as text for Ansible's diff: one block per address, one line per attribute."""
    lines = ["# %s" % header]
    for address, attributes in sorted(resource_index(state).items()):
        lines.append(address)
        for name in sorted(attributes):
            lines.append("    %s = %s" % (name, _short(attributes[name])))
    return "\n".join(lines) + "\n"


def revert_copy(current: Optional[dict], target: dict, force: bool) -> Tuple[dict, List[str]]:
    """Return the state to push (target content, current lineage, serial above current) and warnings.

    A target of another lineage is refused unless ``force``; with ``force`` it is pushed as is
    (its own lineage) and the warnings say what was overridden.
    """
    warnings: List[str] = []
    pushed = copy.deepcopy(target)
    if current is None:
        return pushed, warnings
    if current["lineage"] != target["lineage"]:
        if not force:
            raise LineageMismatch(
                "The snapshot has lineage %s but the current state has lineage %s: it belongs to "
                "another state history and Terraform would refuse it. Revert to a snapshot of this "
                "workspace (operation=list shows them), or set force=true to overwrite the current "
                "state and its history." % (target["lineage"], current["lineage"]),
                snapshot_lineage=target["lineage"], current_lineage=current["lineage"],
            )
        warnings.append(
            "force=true: overwriting state of lineage %s (serial %s) with a snapshot of ANOTHER "
            "lineage %s; terraform state push -force skips the lineage and serial checks. The "
            "previous state is kept in the safety snapshot."
            % (current["lineage"], current["serial"], target["lineage"])
        )
        pushed["serial"] = max(int(current["serial"]), int(target["serial"])) + 1
        return pushed, warnings
    pushed["lineage"] = current["lineage"]
    pushed["serial"] = int(current["serial"]) + 1
    return pushed, warnings
