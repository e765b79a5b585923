# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTML report: one self-contained page of numbers, inline SVG charts, rollbacks and timelines."""

from __future__ import annotations

from typing import List, Optional

from .runs import Rollback, iso
from .svg import svg_bar_chart, svg_timeline, svg_trend
from .text import clip, escape, format_rate, format_seconds, json_text


_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:24px;color:#212121;max-width:1180px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#616161;margin-bottom:16px}.broken{border:2px solid #c62828;padding:8px 12px;margin-bottom:16px}.kpis{display:flex;flex-wrap:wrap;gap:12px}
.kpi{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:130px}
.kpi b{display:block;font-size:24px}.kpi span{color:#616161;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}
th{background:#f5f5f5}.num{text-align:right}
.o-success{color:#2e7d32;font-weight:bold}.o-failed{color:#c62828;font-weight:bold}
.o-refused{color:#ef6c00;font-weight:bold}.o-incomplete{color:#757575;font-weight:bold}
details{border:1px solid #ddd;border-radius:6px;padding:6px 10px;margin:8px 0}summary{cursor:pointer}
pre{background:#fafafa;border:1px solid #eee;padding:8px;font-size:12px;overflow:auto;max-height:260px}
svg .t{font-size:14px;font-weight:bold}svg .l{font-size:12px}svg .m{font-size:11px;fill:#616161}
svg .v{font-size:12px;font-weight:bold}svg .grid{stroke:#e0e0e0}svg .axis{stroke:#9e9e9e}
"""


def render_html(rollbacks: List[Rollback], summary: dict, title: str = "Rollback report",
                source: str = "", max_runs: int = 20) -> str:
    """One self-contained HTML page: numbers, inline SVG charts, the rollbacks and their timelines."""
    counted = [r for r in rollbacks if r.outcome != "plan"]
    parts = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>%s</title><style>%s</style></head><body>" % (escape(title), _CSS),
             "<h1>%s</h1>" % escape(title),
             '<div class="sub">From %s: %d records, %s to %s. Times in UTC.</div>'
             % (escape(source or "the audit log"), summary["records"], escape(summary["first_record"] or "-"),
                escape(summary["last_record"] or "-")),
             _html_integrity(summary.get("integrity")),
             _html_kpis(summary), "<h2>Breakdown</h2>", '<div class="charts">',
             '<div id="chart-trigger">%s</div>' % svg_bar_chart(summary["by_trigger"], "Rollbacks by trigger"),
             '<div id="chart-layer">%s</div>' % svg_bar_chart(summary["by_layer"], "Rollbacks by layer"),
             '<div id="chart-reason">%s</div>' % svg_bar_chart(summary["by_reason"], "Rollbacks by reason"),
             "</div>", _html_layer_table(summary["by_layer"]),
             "<h2>Daily trend</h2>", '<div id="chart-trend">%s</div>' % svg_trend(summary["daily"]),
             "<h2>Rollbacks</h2>", _html_runs_table(counted),
             "<h2>Drills</h2>", _html_drills(summary),
             "<h2>Timelines (latest %d)</h2>" % min(max_runs, len(counted))]
    for index, rollback in enumerate(reversed(counted[-max_runs:] if max_runs > 0 else [])):
        parts.append(_html_run_details(rollback, open_=index == 0))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _html_integrity(integrity: Optional[dict]) -> str:
    """The audit log's hash chain: a line when intact, every problem when not."""
    if not integrity:
        return ""
    if integrity["ok"]:
        return '<div id="integrity" class="sub">Audit log hash chain intact (%s).</div>' % escape(integrity["summary"])
    items = "".join("<li>%s</li>" % escape(p["message"]) for p in integrity["problems"][:50])
    return ('<div id="integrity" class="broken"><b>The audit log is not intact: the numbers below may be '
            'incomplete or wrong.</b><ul>%s</ul></div>' % items)


def _html_kpis(summary: dict) -> str:
    counts = summary["rollbacks"]
    tiles = [("kpi-total", counts["total"], "rollbacks"),
             ("kpi-success-rate", format_rate(summary["success_rate"]), "success rate (of finished)"),
             ("kpi-success", counts["success"], "succeeded"), ("kpi-failed", counts["failed"], "failed"),
             ("kpi-refused", counts["refused"], "refused (nothing changed)"),
             ("kpi-incomplete", counts["incomplete"], "incomplete"),
             ("kpi-avg-duration", format_seconds(summary["duration"]["avg"]), "average duration"),
             ("kpi-mttr", format_seconds(summary["mttr_seconds"]), "mean time to recover"),
             ("kpi-mttd", format_seconds(summary["mean_time_to_detect_seconds"]), "mean time to detect")]
    body = "".join('<div class="kpi" id="%s"><b>%s</b><span>%s</span></div>' % (key, escape(value), escape(label))
                   for key, value, label in tiles)
    return '<div class="kpis">%s</div>' % body


def _html_layer_table(rows: List[dict]) -> str:
    if not rows:
        return ""
    body = "".join('<tr><td>%s</td><td class="num">%d</td><td class="num">%d</td><td class="num">%s</td></tr>'
                   % (escape(r["name"]), r["total"], r["changed"], escape(format_seconds(r["avg_seconds"]))) for r in rows)
    return ('<table id="layers"><tr><th>layer</th><th>rollbacks</th><th>changed something</th>'
            '<th>average seconds (slowest host)</th></tr>%s</table>' % body)


def _html_runs_table(rollbacks: List[Rollback]) -> str:
    rows = []
    for r in reversed(rollbacks):
        rows.append('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td class="o-%s">%s</td><td class="num">%s</td>'
                    '<td class="num">%s</td><td>%s</td><td>%s</td></tr>'
                    % (escape(iso(r.started) or "-"), escape(r.run_id), escape(r.target), escape(r.trigger), r.outcome, r.outcome,
                       escape(format_seconds(r.duration)), escape(format_seconds(r.time_to_recover)),
                       escape(", ".join(r.layer_names) or "-"), escape(clip(r.reason, 60) or "-")))
    return ('<table id="runs"><tr><th>started</th><th>run</th><th>target</th><th>trigger</th><th>outcome</th>'
            '<th>duration</th><th>time to recover</th><th>layers</th><th>reason</th></tr>%s</table>' % "".join(rows))


def _html_drills(summary: dict) -> str:
    """The drills and the rollbacks they made: apart from the production figures above."""
    drills = summary.get("drill_runs") or []
    counts = summary.get("drill_rollbacks") or {}
    if not drills and not counts.get("total"):
        return '<div id="drills" class="sub">No drills in the log.</div>'
    rows = []
    for drill in reversed(drills):
        rollbacks = "".join('<li>%s (%s): <span class="o-%s">%s</span>%s%s</li>' % (
            escape(r["run_id"]), escape(r["trigger"]), escape(r["outcome"]), escape(r["outcome"]),
            (", recovered in %s" % escape(format_seconds(r["time_to_recover"]))) if r.get("time_to_recover") else "",
            (" - %s" % escape(r["note"])) if r.get("note") else "") for r in drill.get("rollbacks", []))
        recovery = "-" if drill.get("rto_seconds") is None else "RPO %s, RTO %s" % (
            format_seconds(drill.get("rpo_seconds")), format_seconds(drill["rto_seconds"]))
        rows.append('<tr><td>%s</td><td>%s</td><td class="o-%s">%s</td><td class="num">%s</td><td>%s</td>'
                    '<td><ul>%s</ul></td><td>%s</td></tr>' % (
                        escape(drill["started"] or "-"), escape(drill["run_id"]), escape(drill["outcome"]),
                        escape(drill["outcome"]), escape(format_seconds(drill["duration"])), escape(recovery), rollbacks,
                        escape(", ".join(drill.get("causes") or []))))
    return ('<div id="drills"><div class="sub">Drills and their rollbacks are not counted in the figures above '
            '(%d drill rollbacks: %d succeeded, %d failed).</div><table><tr><th>started</th><th>drill</th>'
            '<th>outcome</th><th>duration</th><th>rebuilt from the repository</th><th>rollbacks</th><th>cause</th></tr>'
            '%s</table></div>'
            % (counts.get("total", 0), counts.get("success", 0), counts.get("failed", 0), "".join(rows)))


def _html_run_details(rollback: Rollback, open_: bool) -> str:
    parts = ['<details%s id="run-%s"><summary><b>%s</b> to %s: <span class="o-%s">%s</span> (%s, %s)</summary>'
             % (" open" if open_ else "", escape(rollback.run_id), escape(rollback.run_id), escape(rollback.target or "?"),
                rollback.outcome, rollback.outcome, escape(rollback.trigger), escape(format_seconds(rollback.duration))),
             svg_timeline(rollback)]
    if rollback.layers:
        layers = rollback.layer_names
        head = "".join("<th>%s</th>" % escape(layer) for layer in layers)
        body = "".join("<tr><td>%s</td>%s</tr>" % (escape(host), "".join(
            '<td class="num">%s</td>' % escape(format_seconds(timings.get(layer))) for layer in layers))
            for host, timings in sorted(rollback.layers.items()))
        parts.append("<table><tr><th>host</th>%s</tr>%s</table>" % (head, body))
    for failure in rollback.failures:
        parts.append('<p class="o-failed">%s failed at the %s layer (%s): %s; back to the safety checkpoint: %s</p>'
                     % (escape(failure.get("host")), escape(failure.get("layer", "?")), escape(failure.get("task", "?")),
                        escape(failure.get("problem", "?")), escape(failure.get("recovered_to_safety_checkpoint", "?"))))
    if rollback.refusal:
        parts.append("<p>Refused by the pre-flight:</p><pre>%s</pre>" % escape(json_text(rollback.refusal)))
    if rollback.measurements:
        parts.append("<p>Measurements:</p><pre>%s</pre>" % escape(json_text(rollback.measurements)))
    parts.append("</details>")
    return "".join(parts)
