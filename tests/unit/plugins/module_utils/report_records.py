# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Audit records as the engine writes them, for the report tests."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.report.runs import iso

DAY = 86400.0
T0 = 1_790_000_000.0  # 2026-09-21


def rec(event, run_id, at, operation="rollback", **fields):
    """An audit record as gitops.rollback.audit writes it."""
    record = {"event": event, "run_id": run_id, "operation": operation, "epoch": at, "time": iso(at),
              "level": "info", "who": {"user": "ops"}}
    record.update(fields)
    return record


def manual_rollback(run_id, at, seconds, target="v1", outcome="completed", reason="", trigger="manual"):
    layers = {"h1": {"config": seconds / 2, "release": 0.25}, "h2": {"config": seconds / 3}}
    records = [rec("started", run_id, at, target=target, trigger=trigger, reason=reason, hosts=["h1", "h2"],
                   message="layers: release, config")]
    if outcome == "failed":
        records.append(rec("failed", run_id, at + seconds - 1, target=target, trigger=trigger, hosts=["h2"],
                           result={"host": "h2", "layer": "config", "task": "Restore", "problem": "disk full",
                                   "recovered_to_safety_checkpoint": True}, layers={"h2": {"config": 1.0}}))
    records.append(rec(outcome, run_id, at + seconds, target=target, trigger=trigger, hosts=["h1", "h2"],
                       layers=layers, duration=seconds,
                       result={"run_id": run_id, "target": target, "check_mode": False, "seconds": seconds,
                               "completed": ["h1"] if outcome == "failed" else ["h1", "h2"],
                               "failed": ["h2"] if outcome == "failed" else [], "layers": layers,
                               "changed_layers": {"h1": ["config"], "h2": []}}))
    return records


def guard_rollback(guard_id, run_id, at, detect_after, seconds):
    """A guard run: alert at detection, started, the nested rollback run, completed."""
    measurements = {"verdict": "fail", "reason": "error_rate 0.31 > 0.05", "started": iso(at),
                    "detected": iso(at + detect_after), "detection_seconds": detect_after,
                    "metrics": [{"name": "error_rate", "phase": "failed", "reason": "0.31 meets failure condition '> 0.05'",
                                 "measurements": [{"value": 0.02, "outcome": "successful"},
                                                  {"value": 0.31, "outcome": "failed"}]}]}
    started = at + detect_after + 1
    guard = dict(target="v1", trigger="health gate", measurements=measurements, hosts=["h1", "h2"])
    return ([rec("alert", guard_id, at + detect_after, "guard", reason="health gate fail", **guard),
             rec("started", guard_id, started, "guard", reason="health gate fail: error_rate", **guard)]
            + manual_rollback(run_id, started + 0.5, seconds, trigger="guard")
            + [rec("completed", guard_id, started + seconds + 1, "guard", reason="rolled back", **guard)])


def drill_records(label, at, outcome="completed", rounds=("manual", "guard"), problems=None):
    """A drill as playbooks/drill.yml writes it: its own records around a manual and a guard round."""
    problems = problems or {}
    records = [rec("started", label, at, "drill", target=label, trigger="drill", hosts=["h1", "h2"])]
    measured = {}
    t = at + 10
    if "manual" in rounds:
        records += manual_rollback(label + "-manual", t, 4.0, target=label, trigger="drill")
        measured["manual"] = {"rollback_run_id": label + "-manual", "problems": problems.get("manual", 0)}
        t += 30
    if "guard" in rounds:  # the guard round as today's guard role writes it: trigger guard, no drill label
        records += guard_rollback("guard-x-%d" % int(at), label + "-guard", t, 3.0, 5.0)
        if outcome == "completed" or "guard" in problems:
            measured["guard"] = {"rollback_run_id": label + "-guard", "problems": problems.get("guard", 0)}
        t += 30
    recovery = {}
    if "dr" in rounds:  # rebuilt from the repository: the recovery point and time
        records += manual_rollback(label + "-dr", t, 12.0, target=label, trigger="drill")
        recovery = {"rpo_seconds": 75.5, "rto_seconds": 14.25}
        measured["dr"] = dict(recovery, rollback_run_id=label + "-dr", problems=problems.get("dr", 0))
        t += 30
    records.append(rec(outcome, label, t, "drill", target=label, trigger="drill", hosts=["h1", "h2"], duration=t - at,
                       reason="rollback drill: rounds manual, guard" + ("" if outcome == "completed" else
                                                                        "; DRILL FAILED - not every layer came back"),
                       measurements=dict({"rounds": measured}, **recovery), result={"verified": outcome == "completed"}))
    return records


def find_all(text, needle):
    """Yield every index of needle in text."""
    start = text.find(needle)
    while start >= 0:
        yield start
        start = text.find(needle, start + 1)


def sample_records():
    """Manual, failed, refused, guard-triggered, planned and unfinished rollbacks over three days."""
    return (manual_rollback("r1", T0, 10.0, reason="bad config")
            + manual_rollback("r2", T0 + DAY, 20.0, outcome="failed", reason="bad config")
            + [rec("started", "r3", T0 + DAY + 100, target="nope", trigger="manual"),
               rec("refused", "r3", T0 + DAY + 101, target="nope", trigger="manual", level="warning",
                   reason="pre-flight failed; nothing was changed",
                   result={"h1": [{"layer": "config", "problem": "Checkpoint 'nope' is not in the store"}]})]
            + guard_rollback("g1", "r4", T0 + 2 * DAY, 30.0, 6.0)
            + [rec("started", "p1", T0 + 2 * DAY + 500, message="plan (check mode)", target="v1"),
               rec("completed", "p1", T0 + 2 * DAY + 501, target="v1", result={"check_mode": True}, duration=1.0)]
            + [rec("completed", "g0", T0 - DAY, "guard", reason="health gate pass")]  # a passing gate, no rollback
            + [rec("started", "r5", T0 + 2 * DAY + 900, target="v1", trigger="tag")])  # still running or killed
