# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the rollback role's layer tasks call their modules: decided here, composed in YAML.

Which services the services layer restarts or reloads, and how (their own command or the service
manager); what the flags layer asks of feature_flags for one flag set (turn its off flags off, bring
the set back to a checkpoint, or store it). Pure Python, no Ansible: the role passes its variables in
and loops over, or passes on, what comes back.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from .plan import LAYERS, SAFETY_PREFIX, service_layers

DEFAULT_SERVICE_STATE = "restarted"


def services_to_restart(services: Sequence[Mapping[str, Any]], changed: Sequence[str],
                        known: Optional[Sequence[str]] = None) -> Dict[str, List[Dict[str, Any]]]:
    """Return the services to restart or reload, in their order, split by how.

    A service is restarted when one of its layers (default: every layer of ``known``, the role's
    layers) changed. ``command``: the services given a ``command`` (an argv list, run as is);
    ``manager``: the others, for the service manager, their ``state`` defaulting to restarted.
    """
    known = LAYERS if known is None else known
    out: Dict[str, List[Dict[str, Any]]] = {"command": [], "manager": []}
    for service in services or []:
        if not set(service_layers(service, known)) & set(changed or []):
            continue
        if "command" in service:
            out["command"].append(dict(service))
        else:
            entry = dict(service)
            entry.setdefault("state", DEFAULT_SERVICE_STATE)
            out["manager"].append(entry)
    return out


def flags_call(flag_set: Mapping[str, Any], state: Optional[str] = None, target: Optional[str] = None,
               checkpoint: Optional[str] = None) -> Dict[str, Any]:
    """Return what the flags layer asks of feature_flags for ``flag_set``: its ``state``, the flag
    ``names`` it turns off, and the ``checkpoint`` it reads (absent: none).

    ``state`` given (checkpointed: the set is stored under ``target``) is used as is. Otherwise a set
    with off flags turns them off, except on the way back to a safety checkpoint (``target``
    safety/...), and reads no checkpoint; any other set is restored from ``target``, else from
    ``checkpoint`` (the plan's checkpoint of the flags layer).
    """
    off_flags = list(flag_set.get("off") or [])
    turn_off = state is None and bool(off_flags) and not str(target or "").startswith(SAFETY_PREFIX)
    call: Dict[str, Any] = {"state": state if state is not None else ("off" if turn_off else "restored"),
                            "names": off_flags if turn_off else []}
    reads = None if turn_off else (target if target is not None else checkpoint)
    if reads is not None:
        call["checkpoint"] = reads
    return call
