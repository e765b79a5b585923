# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report's numbers as Prometheus text exposition (node_exporter textfile collector)."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

from .runs import OUTCOMES, QUANTILES, round_or_none


def _label_value(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, value: Optional[float], labels: Optional[Dict[str, str]] = None) -> str:
    label_text = ""
    if labels:
        label_text = "{%s}" % ",".join('%s="%s"' % (k, _label_value(v)) for k, v in sorted(labels.items()))
    if value is None:
        value = float("nan")
    if isinstance(value, float) and math.isnan(value):
        number = "NaN"
    elif float(value).is_integer():
        number = "%d" % value
    else:
        number = repr(round(float(value), 6))
    return "%s%s %s" % (name, label_text, number)


def _family(name: str, kind: str, help_text: str, samples: List[str]) -> List[str]:
    return ["# HELP %s %s" % (name, help_text), "# TYPE %s %s" % (name, kind)] + samples


def render_prometheus(summary: dict, prefix: str = "gitops_rollback") -> str:
    """The summary as Prometheus text exposition (format 0.0.4), for node_exporter's textfile collector."""
    p = prefix
    triggers = sorted({row["name"] for row in summary["by_trigger"]} | {"manual"})
    by_trigger = {row["name"]: row for row in summary["by_trigger"]}
    totals = [_sample(p + "_rollbacks_total", by_trigger.get(t, {}).get(o, 0), {"result": o, "trigger": t})
              for t in triggers for o in OUTCOMES]
    duration = summary["duration"]
    quantiles = [_sample(p + "_duration_seconds", duration["quantiles"][str(q)], {"quantile": str(q)})
                 for q in QUANTILES]
    layers = [_sample(p + "_layer_rollbacks_total", row["total"], {"layer": row["name"]}) for row in summary["by_layer"]]
    layer_seconds = [_sample(p + "_layer_duration_seconds_avg", row["avg_seconds"], {"layer": row["name"]})
                     for row in summary["by_layer"] if row["avg_seconds"] is not None]
    drills = [_sample(p + "_drills_total", summary["drills"][o], {"result": o}) for o in OUTCOMES]
    drill_rollbacks = [_sample(p + "_drill_rollbacks_total", summary["drill_rollbacks"][o], {"result": o})
                       for o in OUTCOMES]
    lines: List[str] = []
    lines += _family(p + "_rollbacks_total", "counter", "Rollbacks recorded in the audit log, by result and trigger.",
                     totals)
    lines += _family(p + "_failures_total", "counter", "Rollbacks that failed on at least one host.",
                     [_sample(p + "_failures_total", summary["rollbacks"]["failed"])])
    lines += _family(p + "_success_ratio", "gauge", "Succeeded rollbacks over finished (succeeded + failed) ones.",
                     [_sample(p + "_success_ratio", summary["success_rate"])])
    lines += _family(p + "_duration_seconds", "summary", "Duration of finished rollbacks.",
                     quantiles + [_sample(p + "_duration_seconds_sum", duration["sum"] or 0),
                                  _sample(p + "_duration_seconds_count", duration["count"])])
    lines += _family(p + "_duration_seconds_avg", "gauge", "Average duration of finished rollbacks.",
                     [_sample(p + "_duration_seconds_avg", duration["avg"])])
    lines += _family(p + "_last_duration_seconds", "gauge", "Duration of the last finished rollback.",
                     [_sample(p + "_last_duration_seconds", summary["last_duration"])])
    lines += _family(p + "_last_timestamp_seconds", "gauge", "End time of the last finished rollback (Unix time).",
                     [_sample(p + "_last_timestamp_seconds", round_or_none(summary["last_finished_epoch"]))])
    lines += _family(p + "_last_success_timestamp_seconds", "gauge",
                     "End time of the last succeeded rollback (Unix time).",
                     [_sample(p + "_last_success_timestamp_seconds", round_or_none(summary["last_success_epoch"]))])
    lines += _family(p + "_mttr_seconds", "gauge",
                     "Mean time to recover: detection (or start) to completed rollback, over succeeded rollbacks.",
                     [_sample(p + "_mttr_seconds", summary["mttr_seconds"])])
    lines += _family(p + "_mean_time_to_detect_seconds", "gauge",
                     "Mean seconds the health gate took to detect a breach, over guard-triggered rollbacks.",
                     [_sample(p + "_mean_time_to_detect_seconds", summary["mean_time_to_detect_seconds"])])
    if layers:
        lines += _family(p + "_layer_rollbacks_total", "counter", "Rollbacks that rolled back the layer.", layers)
    if layer_seconds:
        lines += _family(p + "_layer_duration_seconds_avg", "gauge", "Average seconds of the layer (slowest host).",
                         layer_seconds)
    lines += _family(p + "_drills_total", "counter", "Rollback drills, by result.", drills)
    lines += _family(p + "_drill_rollbacks_total", "counter",
                     "Rollbacks made by drills (not in the other figures), by result.", drill_rollbacks)
    rebuilt = [drill for drill in summary.get("drill_runs") or [] if drill.get("rto_seconds") is not None]
    if rebuilt:  # the newest drill that rebuilt a host from the checkpoint repository (its dr round)
        lines += _family(p + "_drill_rpo_seconds", "gauge", "Recovery point of the last disaster-recovery drill: "
                         "age of the newest replicated checkpoint when the rebuild began.",
                         [_sample(p + "_drill_rpo_seconds", rebuilt[-1].get("rpo_seconds"))])
        lines += _family(p + "_drill_rto_seconds", "gauge", "Recovery time of the last disaster-recovery drill: "
                         "from the loss of the host's store and managed directories to the completed rollback.",
                         [_sample(p + "_drill_rto_seconds", rebuilt[-1]["rto_seconds"])])
    integrity = summary.get("integrity")
    if integrity:
        lines += _family(p + "_audit_log_intact", "gauge",
                         "1 when every audit record chains to the one before it and the head file agrees, else 0.",
                         [_sample(p + "_audit_log_intact", 1 if integrity["ok"] else 0)])
        lines += _family(p + "_audit_log_problems", "gauge", "Altered, missing or damaged audit records.",
                         [_sample(p + "_audit_log_problems", integrity["problem_count"])])
    return "\n".join(lines) + "\n"


def parse_prometheus(text: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    """Read simple text exposition back: {(name, ((label, value), ...)): value} (for tests and tools)."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, labels = head, ()
        if "{" in head:
            name, rest = head.split("{", 1)
            pairs = [item.split("=", 1) for item in rest.rstrip("}").split('",') if item]
            labels = tuple(sorted((k, v.strip('"')) for k, v in pairs))
        samples[(name, labels)] = float(value)
    return samples
