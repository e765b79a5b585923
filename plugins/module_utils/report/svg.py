# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inline SVG charts of the report: bars by name, the daily trend, a run's timeline."""

from __future__ import annotations

import math
from typing import List

from .runs import OUTCOMES, Rollback
from .text import clip, escape, format_seconds


COLORS = {"success": "#2e7d32", "failed": "#c62828", "refused": "#ef6c00", "incomplete": "#757575",
          "plan": "#1565c0", "detected": "#6a1b9a", "started": "#1565c0", "progress": "#90a4ae",
          "completed": "#2e7d32", "alert": "#ad1457"}


def svg_bar_chart(rows: List[dict], title: str, width: int = 560, limit: int = 12) -> str:
    """Horizontal bars stacked by outcome, one row per name (rows from the summary's breakdowns)."""
    rows = rows[:limit]
    label_w, bar_h, gap, top = 190, 20, 8, 28
    height = top + max(len(rows), 1) * (bar_h + gap) + 24
    scale_max = max([row["total"] for row in rows] + [1])
    plot_w = width - label_w - 50
    parts = [_svg_open(width, height, title), '<text x="0" y="16" class="t">%s</text>' % escape(title)]
    if not rows:
        parts.append('<text x="0" y="%d" class="m">no rollbacks</text>' % (top + 14))
    for index, row in enumerate(rows):
        y = top + index * (bar_h + gap)
        label = row["name"] if len(row["name"]) <= 30 else row["name"][:28] + "..."
        parts.append('<text x="%d" y="%d" class="l" text-anchor="end"><title>%s</title>%s</text>'
                     % (label_w - 6, y + 14, escape(row["name"]), escape(label)))
        x = float(label_w)
        for outcome in OUTCOMES:
            count = row.get(outcome, 0)
            if not count:
                continue
            w = plot_w * count / scale_max
            tip = "%s: %d %s" % (escape(row["name"]), count, outcome)
            parts.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" class="bar bar-%s">'
                         '<title>%s</title></rect>' % (x, y, w, bar_h, COLORS[outcome], outcome, tip))
            x += w
        parts.append('<text x="%.1f" y="%d" class="v">%d</text>' % (x + 4, y + 14, row["total"]))
    parts.append(_svg_legend(10, height - 8))
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, title: str) -> str:
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
            'aria-label="%s">' % (width, height, width, height, escape(title)))


def _svg_legend(x: int, y: int) -> str:
    parts = []
    for outcome in OUTCOMES:
        parts.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" class="m">%s</text>'
                     % (x, y - 9, COLORS[outcome], x + 14, y, outcome))
        x += 24 + 8 * len(outcome)
    return "".join(parts)


def svg_trend(daily: List[dict], width: int = 1140, height: int = 240) -> str:
    """One bar per day, stacked by outcome (success, failed, refused, incomplete)."""
    title = "Rollbacks per day"
    left, right, top, bottom = 40, 16, 30, 40
    parts = [_svg_open(width, height, title), '<text x="0" y="16" class="t">%s</text>' % title]
    if not daily:
        parts.append('<text x="%d" y="%d" class="m">no data</text></svg>' % (left, top + 20))
        return "".join(parts)
    peak = max([d["total"] for d in daily] + [1])
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(daily)
    bar_w = max(slot * 0.7, 1.0)
    for tick in sorted({0, peak // 2, peak}):
        y = top + plot_h - plot_h * tick / peak
        parts.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="grid"/><text x="%d" y="%.1f" class="m" '
                     'text-anchor="end">%d</text>' % (left, y, width - right, y, left - 6, y + 4, tick))
    every = max(int(math.ceil(len(daily) / 10.0)), 1)
    for index, day in enumerate(daily):
        x = left + index * slot + (slot - bar_w) / 2
        if index % every == 0 or index == len(daily) - 1:
            parts.append('<text x="%.1f" y="%d" class="m" text-anchor="middle">%s</text>'
                         % (x + bar_w / 2, height - bottom + 16, escape(day["date"][5:])))
        base = float(top + plot_h)
        for outcome in OUTCOMES:
            count = day.get(outcome, 0)
            if not count:
                continue
            h = plot_h * count / peak
            base -= h
            parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" class="bar bar-%s">'
                         '<title>%s: %d %s</title></rect>' % (x, base, bar_w, h, COLORS[outcome], outcome,
                                                              escape(day["date"]), count, outcome))
    parts.append(_svg_legend(left, height - 4))
    parts.append("</svg>")
    return "".join(parts)


def svg_timeline(rollback: Rollback, width: int = 1100) -> str:
    """The run's events on a time axis (seconds since the first), labelled, one row per event."""
    entries = rollback.timeline()
    title = "Timeline of %s" % rollback.run_id
    row_h, top, left = 18, 30, 70
    height = top + max(len(entries), 1) * row_h + 30
    span = max([e["offset"] for e in entries] + [1.0])
    plot_w = width - left - 430
    parts = [_svg_open(width, height, title), '<text x="0" y="16" class="t">%s</text>' % escape(title)]
    axis_y = top + len(entries) * row_h + 4
    parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>' % (left, axis_y, left + plot_w, axis_y))
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        x = left + plot_w * fraction
        parts.append('<text x="%.1f" y="%d" class="m" text-anchor="middle">+%s</text>'
                     % (x, axis_y + 16, escape(format_seconds(span * fraction))))
    for index, entry in enumerate(entries):
        y = top + index * row_h + 10
        x = left + plot_w * entry["offset"] / span
        color = COLORS.get(entry["event"], "#455a64")
        if entry["event"] == "failed":
            color = COLORS["failed"]
        parts.append('<line x1="%d" y1="%d" x2="%.1f" y2="%d" class="grid"/>' % (left, y, x, y))
        parts.append('<circle cx="%.1f" cy="%d" r="5" fill="%s" class="ev ev-%s"><title>%s</title></circle>'
                     % (x, y, color, escape(entry["event"]), escape(entry["time"])))
        parts.append('<text x="%d" y="%d" class="m" text-anchor="end">+%s</text>'
                     % (left - 6, y + 4, escape(format_seconds(entry["offset"]))))
        text = "%s %s: %s" % (entry["operation"], entry["event"], entry["text"])
        parts.append('<text x="%d" y="%d" class="l">%s</text>' % (left + plot_w + 12, y + 4, escape(clip(text, 70))))
    parts.append("</svg>")
    return "".join(parts)
