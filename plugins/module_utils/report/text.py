# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text shared by the report renderers: durations and rates people read, escaping, clipping."""

from __future__ import annotations

import html
import json
from typing import Any, Optional


def format_seconds(seconds: Optional[float]) -> str:
    """Return a duration people read: 0.42 s, 12.3 s, 4 min 05 s, 2 h 03 min; '-' for none."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return "%.2f s" % seconds
    if seconds < 60:
        return "%.1f s" % seconds
    if seconds < 3600:
        return "%d min %02d s" % (seconds // 60, seconds % 60)
    return "%d h %02d min" % (seconds // 3600, (seconds % 3600) // 60)


def format_rate(rate: Optional[float]) -> str:
    """Return a ratio as a percentage with one decimal; '-' for none."""
    return "-" if rate is None else "%.1f %%" % (rate * 100)


def escape(value: Any) -> str:
    """Return ``value`` as text safe in HTML and SVG (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def json_text(value: Any) -> str:
    """Return ``value`` as indented JSON with sorted keys (anything else as its text)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def clip(text: str, size: int) -> str:
    """Return ``text`` on one line, cut to ``size`` characters with '...' when longer."""
    text = " ".join(text.split())
    return text if len(text) <= size else text[:size - 3] + "..."
