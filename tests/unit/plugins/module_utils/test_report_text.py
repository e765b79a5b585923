# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durations and rates as people read them."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.report import text as report_text


def test_format_seconds():
    assert [report_text.format_seconds(s) for s in (None, 0.5, 12.34, 245, 7500)] == [
        "-", "0.50 s", "12.3 s", "4 min 05 s", "2 h 05 min"]


def test_format_rate_and_clip():
    assert [report_text.format_rate(r) for r in (None, 0.0, 2 / 3, 1)] == ["-", "0.0 %", "66.7 %", "100.0 %"]
    assert report_text.clip("a\n b   c", 10) == "a b c"
    assert report_text.clip("x" * 20, 10) == "xxxxxxx..."
    assert report_text.escape('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"
