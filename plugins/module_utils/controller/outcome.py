# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback role's decisions about what happened, from the results its layers registered.

Which layers changed something, which layers a recovery brings back to the safety checkpoint,
and what the Terraform preview (a check-mode revert on the controller) adds to the plan. Pure
Python, no Ansible: the role passes the registered results in and uses what comes back.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .plan import STORED_LAYERS

INFRASTRUCTURE = "infrastructure"
UNCHECKED = ("unreachable or failed during the pre-flight, so nothing could be verified there; bring it back, "
             "or leave it out with --limit")


def is_changed(result: Any) -> bool:
    """Tell whether a registered result (a loop's results included) reports a change.

    The database layer registers a dict of the databases it changed (empty: none); a list holds
    several results (a layer of several tasks): any change counts.
    """
    if isinstance(result, list):
        return any(is_changed(item) for item in result)
    if not isinstance(result, Mapping):
        return False
    if "results" in result and isinstance(result["results"], list):
        return any(is_changed(item) for item in result["results"]) or bool(result.get("changed"))
    if "changed" in result:
        return bool(result.get("changed")) and not result.get("skipped")
    return bool(result) and not result.get("skipped", False) and all(isinstance(v, str) for v in result.values())


def layer_changed(results: Mapping[str, Any], layer: str) -> bool:
    """Tell whether ``layer`` changed something, from ``results`` (layer -> what the layer registered)."""
    return is_changed(results.get(layer))


def add_changed_layer(changed: Sequence[str], layer: str, results: Mapping[str, Any]) -> List[str]:
    """Return ``changed`` with ``layer`` added when its result reports a change (order kept, no repeats)."""
    out = list(changed)
    if layer_changed(results, layer) and layer not in out:
        out.append(layer)
    return out


def layer_seconds(timings: Mapping[str, Any], layer: str, started: Any, now: float) -> Dict[str, Any]:
    """Return ``timings`` with ``layer``'s seconds from ``started`` to ``now`` (epoch seconds); as is without a layer."""
    out = dict(timings)
    if layer:
        out[layer] = round(now - float(started), 3)
    return out


def layers_to_recover(active: Sequence[str], failed_layer: Optional[str], safety: Sequence[str]) -> List[str]:
    """Return the layers a failed host brings back to its safety checkpoint, in order.

    The layers run so far, the failed one included (it may have changed part of its state): a stored
    layer when the safety checkpoint holds it (``safety``), traffic and services always (they are run
    again); none when the failure came before the layers.
    """
    if failed_layer not in active:
        return []
    done = list(active)[:list(active).index(failed_layer) + 1]
    return [layer for layer in done if layer in safety or layer not in STORED_LAYERS]


def _tf_results(preview: Any) -> List[Dict[str, Any]]:
    if not isinstance(preview, Mapping) or preview.get("skipped"):
        return []
    return [r for r in preview.get("results", [preview]) if isinstance(r, Mapping) and "revert" in r]


def terraform_preview_lines(preview: Any) -> List[str]:
    """Say what each Terraform revert would do (the check-mode results of terraform_state), one line each."""
    lines = []
    for result in _tf_results(preview):
        revert = result["revert"]
        if not result.get("changed"):
            lines.append("infrastructure: the state already holds the snapshot's resources (serial %s); nothing "
                         "would change" % revert.get("to_serial"))
            continue
        lines.append("infrastructure: serial %s -> %s (snapshot serial %s), lineage %s%s" % (
            revert.get("from_serial"), revert.get("to_serial"), revert.get("snapshot_serial"), revert.get("lineage"),
            "" if revert.get("previous_lineage") in (None, revert.get("lineage"))
            else " (was %s)" % revert.get("previous_lineage")))
    return lines


def with_terraform_preview(changes: Sequence[str], preview: Any) -> List[str]:
    """Return the plan's changing layers, without infrastructure when every Terraform revert is a no-op."""
    results = _tf_results(preview)
    if results and not any(r.get("changed") for r in results):
        return [layer for layer in changes if layer != INFRASTRUCTURE]
    return list(changes)


def safety_taken(plan_result: Mapping[str, Any], changes: Sequence[str], wanted: bool) -> List[str]:
    """Return the layers a host's safety checkpoint holds once the pre-flight passed (what a recovery may restore).

    None without a safety checkpoint (``wanted`` false: off, or a dry run) or without a change; the plan's safety
    list when the plan's host run took the host's layers (or the host has none: the Terraform snapshot alone);
    else only the layers outside the host (the Terraform snapshot of the controller).
    """
    plan = plan_result.get("plan") or {}
    if not wanted or not changes or not plan.get("safety"):
        return []
    on_host = list(plan.get("safety_host") or [])
    if (plan_result.get("safety") or {}).get("layers") or not on_host:
        return list(plan["safety"])
    return [layer for layer in plan["safety"] if layer not in on_host]


def preflight_problems(by_host: Mapping[str, Any], unchecked: Sequence[str]) -> Dict[str, List[Dict[str, Any]]]:
    """Return the pre-flight problems of the hosts that have some, and a problem for each host the
    pre-flight could not check (``unchecked``: unreachable, or failed outright)."""
    found = {host: list(problems) for host, problems in by_host.items() if problems}
    for host in unchecked:
        found[host] = [{"layer": "host", "problem": UNCHECKED}]
    return found


def run_summary(run_id: str, target: str, dry_run: bool, hosts: Sequence[str], completed: Sequence[str],
                facts: Mapping[str, Mapping[str, Any]], safety_label: str, seconds: float) -> Dict[str, Any]:
    """Return the outcome of a run: hosts completed and failed, per host the layers' seconds and the
    layers changed, and the safety checkpoint (its label and the layers it holds on each host).

    ``facts`` holds each host's ``timings``, ``changed_layers`` and ``safety_taken`` (missing: none).
    """
    done = [host for host in hosts if host in completed]
    return {
        "run_id": run_id, "target": target, "check_mode": bool(dry_run), "completed": done,
        "failed": [host for host in hosts if host not in completed],
        "seconds": round(seconds, 3),
        "layers": {host: dict(facts.get(host, {}).get("timings") or {}) for host in done},
        "changed_layers": {host: list(facts.get(host, {}).get("changed_layers") or []) for host in done},
        "safety_checkpoint": {"label": safety_label, "layers": {
            host: list(facts[host]["safety_taken"]) for host in hosts
            if host in facts and facts[host].get("safety_taken")}},
    }


def run_report(summary: Mapping[str, Any]) -> Dict[str, str]:
    """Return the run's audit summary (``audit``) and the report printed at its end (``report``)."""
    label = summary["safety_checkpoint"]["label"]
    taken = summary["safety_checkpoint"]["layers"]
    dry = summary["check_mode"]
    audit = ("dry run: plan only, nothing changed" if dry else "rolled back") + (
        "; safety checkpoint %s" % label if taken else "")
    safety = ("Safety checkpoint %s (%s); undo this rollback with -e rollback_to=%s"
              % (label, json.dumps(taken, sort_keys=True), label) if taken else
              "No safety checkpoint was taken (nothing to change, a dry run, or rollback_safety_checkpoint off).")
    report = "%s %s in %s s (run %s); per host and layer seconds: %s; layers changed: %s. %s" % (
        "Dry run - plan only, nothing changed - for" if dry else "Rolled back to", summary["target"],
        summary["seconds"], summary["run_id"], summary["layers"], summary["changed_layers"], safety)
    return {"audit": audit, "report": report}


def deadline(started: float, max_seconds: float) -> float:
    """Return the epoch a run must finish by (0: no limit)."""
    return started + max_seconds if max_seconds and max_seconds > 0 else 0.0


def deadline_problem(deadline_epoch: float, now: float, before: str, max_seconds: Any) -> Optional[str]:
    """Return why the run must stop before ``before`` when ``now`` is past the deadline (0: none), else None."""
    if not deadline_epoch or float(deadline_epoch) <= 0 or now <= float(deadline_epoch):
        return None
    return ("The rollback exceeded max_rollback_seconds (%s s) of this environment's rollback_policy before %s; it "
            "stops here. Layers already rolled back stay rolled back (see the audit log); rerun to continue, or raise "
            "the limit." % (max_seconds, before))


def entry_layer(failed_task: Any, clock_layer: str) -> str:
    """Return the layer whose entry refused the run, else ''.

    ``failed_task`` is the task that failed, as Ansible describes it (its ``vars``): the entry tasks of a
    layer carry ``__rollback_entry_task: true``, and a failure there is a refusal at the entry of
    ``clock_layer`` (the layer whose clock runs, the one before: it is timed then), not a failure in it.
    """
    task_vars = failed_task.get("vars") if isinstance(failed_task, Mapping) else None
    entry = isinstance(task_vars, Mapping) and bool(task_vars.get("__rollback_entry_task"))
    return str(clock_layer or "") if entry else ""


def recovery_steps(safety: Sequence[str], restore_on_failure: bool, safety_checkpoint: bool,
                   dry_run: bool) -> Dict[str, bool]:
    """Return what a failed host does after the failure: ``restore`` the layers rolled back so far from
    the safety checkpoint (recovery and the safety checkpoint on, not a dry run), and compare its config
    (``compare_config``) and release (``compare_release``) with the safety checkpoint, when it holds them.

    ``safety``: the layers the host's safety checkpoint holds (none in a dry run, or when none was taken).
    """
    compare = bool(safety) and not dry_run
    return {"restore": bool(restore_on_failure) and bool(safety_checkpoint) and not dry_run,
            "compare_config": compare and "config" in safety,
            "compare_release": compare and "release" in safety}
