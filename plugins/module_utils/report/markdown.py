# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The post-mortem draft (Markdown): facts from the audit log prefilled, blank sections to fill in."""

from __future__ import annotations

from typing import Any, List, Optional

from .runs import Rollback, dict_or_empty, iso
from .text import clip, format_rate, format_seconds, json_text


def _md_cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|") if value not in (None, "") else "-"


def render_postmortem(rollback: Optional[Rollback], summary: dict) -> str:
    """A post-mortem draft: facts from the log prefilled, blank sections for what people must add."""
    if rollback is None:
        return ("# Post-mortem draft\n\nThe audit log holds no rollback yet (%d records). Nothing to write up.\n"
                % summary["records"])
    r = rollback
    who = r.who.get("user", "-")
    if r.who.get("awx_job_id"):
        who += " (AWX job %s%s)" % (r.who["awx_job_id"],
                                    ", launched by " + r.who["awx_launcher"] if r.who.get("awx_launcher") else "")
    lines = ["# Post-mortem: rollback to %s on %s" % (r.target or "?", (iso(r.started) or "?")[:10]), "",
             "<!-- Draft written by gitops.rollback.rollback_report from the audit log (run %s). "
             "The facts below come from the log; fill in the sections marked TODO. -->" % r.run_id, "",
             "## Summary", "", "| | |", "|---|---|"]
    facts = [("Run", r.run_id), ("Guard run", r.guard_run_id), ("Target (rolled back to)", r.target),
             ("Outcome", r.outcome), ("Trigger", r.trigger), ("Reason", r.reason), ("Started by", who),
             ("Hosts", ", ".join(r.hosts)), ("Detected", iso(r.detected)), ("Rollback started", iso(r.started)),
             ("Rollback ended", iso(r.ended)), ("Duration", format_seconds(r.duration)),
             ("Time to recover (detection to completed)", format_seconds(r.time_to_recover)),
             ("Time to detect (health gate)", format_seconds(r.time_to_detect))]
    lines += ["| %s | %s |" % (name, _md_cell(value)) for name, value in facts]
    lines += ["", "## Timeline (UTC)", "", "| time | + | source | event | what |", "|---|---|---|---|---|"]
    lines += ["| %s | %s | %s | %s | %s |" % (e["time"], format_seconds(e["offset"]), e["operation"], e["event"],
                                              _md_cell(e["text"])) for e in r.timeline()]
    lines += ["", "## Trigger and measurements", "",
              "Triggered by **%s**%s." % (r.trigger, ": " + _md_cell(r.reason) if r.reason else "")]
    lines += _md_measurements(r.measurements)
    lines += ["", "## Layers rolled back", ""]
    lines += _md_layers(r)
    if r.failures:
        lines += ["", "## Failures", ""]
        lines += ["- %s failed at the %s layer (task %s): %s. Back to the safety checkpoint: %s."
                  % (f.get("host"), f.get("layer", "?"), f.get("task", "?"), _md_cell(f.get("problem")),
                     f.get("recovered_to_safety_checkpoint", "?")) for f in r.failures]
    lines += ["", "## Impact", "", "TODO: who was affected, how long, what they saw (error rate, latency, downtime).",
              "", "## Root cause", "", "TODO: what in the release caused the breach, and why it was not caught before.",
              "", "## What went well", "", "TODO", "", "## What went wrong", "", "TODO", "",
              "## Action items", "", "| action | owner | due | ticket |", "|---|---|---|---|", "| TODO | | | |", "",
              "## Context", "", _md_context(summary), ""]
    return "\n".join(lines)


def _md_context(summary: dict) -> str:
    counts = summary["rollbacks"]
    numbers = (counts["total"], counts["success"], counts["failed"], counts["refused"],
               format_rate(summary["success_rate"]), format_seconds(summary["mttr_seconds"]))
    text = ("All rollbacks in the log: %d (%d succeeded, %d failed, %d refused); success rate %s; "
            "mean time to recover %s." % numbers)
    integrity = summary.get("integrity")
    if integrity:
        text += " Audit log: %s" % _md_cell(integrity["summary"])
    return text


def _md_measurements(measurements: Any) -> List[str]:
    if not measurements:
        return ["", "No measurements were recorded (a manual rollback, or the guard recorded none)."]
    lines = [""]
    metrics = dict_or_empty(measurements).get("metrics")
    if isinstance(metrics, list) and metrics and all(isinstance(m, dict) for m in metrics):
        lines += ["| metric | phase | why | values measured |", "|---|---|---|---|"]
        for metric in metrics:
            values = [m.get("value") for m in metric.get("measurements") or [] if isinstance(m, dict)]
            if not values and "value" in metric:
                values = [metric["value"]]
            shown = clip(", ".join("-" if v is None else str(v) for v in values), 120)
            lines.append("| %s | %s | %s | %s |" % (
                _md_cell(metric.get("name")), _md_cell(metric.get("phase", metric.get("verdict"))),
                _md_cell(metric.get("reason")), _md_cell(shown)))
        lines.append("")
    lines += ["```json", json_text(measurements), "```"]
    return lines


def _md_layers(rollback: Rollback) -> List[str]:
    if not rollback.layers:
        return ["No layer timings were recorded (the run was refused or stopped before the layers)."]
    layers = rollback.layer_names
    lines = ["Seconds per host and layer, in rollback order; * marks a layer that changed something.", "",
             "| host | %s |" % " | ".join(layers), "|---|%s" % ("---|" * len(layers))]
    for host, timings in sorted(rollback.layers.items()):
        changed = rollback.changed_layers.get(host, [])
        cells = ["%s%s" % (format_seconds(timings.get(layer)) if layer in timings else "-",
                           " *" if layer in changed else "") for layer in layers]
        lines.append("| %s | %s |" % (host, " | ".join(cells)))
    return lines
