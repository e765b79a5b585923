# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Count the rows of every table in a mariadb-dump/mysqldump SQL stream as it passes by.

The counts are what the dump holds, so they are exact for the dump's own snapshot, with no
second scan of the tables. The counter is fed chunks of any size (a statement, a string or an
escape may be cut anywhere) and keeps only a few bytes of state between chunks.

What it relies on, as the dump clients write it:

* a data statement starts a line, right after a statement that ended with ``;``, outside a
  ``DELIMITER`` block (trigger and routine bodies are inside one);
* it is ``INSERT [IGNORE] INTO `table` [(`col`, ...)] VALUES (...),(...);`` (or ``REPLACE
  INTO``), with any whitespace between the rows;
* outside string literals a row holds only literals (numbers, NULL, ``0x..``), so every ``(``
  at depth 0 opens a row; strings are single-quoted, escaped with backslashes (or doubled quotes);
* a value never holds a raw newline (the clients escape it as ``\\n``), so a raw newline in a
  data statement lies between rows. Once a statement puts a newline after a row (mariadb-dump
  10.11 and later write one row per line), each further line is one row ending in ``),`` or
  ``);`` and is counted without reading it: only the newlines are looked for.

Anything else inside a data statement makes the counter give up (``failed`` says why) instead
of guessing.
"""

from __future__ import annotations

import re
from typing import Dict, Optional

_HEADER = re.compile(
    rb"(?:INSERT(?: IGNORE)? INTO|REPLACE INTO) `((?:[^`]|``)+)`\s*"
    rb"(?:\((?:\s*`(?:[^`]|``)+`\s*,?)*\)\s*)?VALUES(?=[\s(])")
_PREFIXES = (b"INSERT INTO ", b"INSERT IGNORE INTO ", b"REPLACE INTO ")
_DECIDE = max(len(p) for p in _PREFIXES)
_MAX_HEADER = 1024 * 1024
_MAX_DELIMITER_LINE = 1024

# what the counter is reading
_HEAD, _LINE, _HEADER_TEXT, _VALUES, _DELIMITER, _ROW_LINES = range(6)
_HEADER_STEP = 4096


class RowCounter:
    """Feed it a dump's bytes with ``feed``; ``finish`` returns ``{table: rows}`` (None if it gave up)."""

    def __init__(self) -> None:
        self.counts: Dict[str, int] = {}
        self.failed: Optional[str] = None
        self._state = _HEAD
        self._head = bytearray()  # the start of the current line, or a whole INSERT header / DELIMITER line
        self._tail = b""  # the last bytes of the current skipped line
        self._delimiter = b";"
        self._statement_start = True
        self._table = ""
        self._rows = 0
        self._depth = 0
        self._in_string = False
        self._pending = b""  # a backslash or quote that ended the previous chunk inside a string
        self._last = b""  # the last bytes of the current row line (one-row-per-line statements)

    # ------------------------------------------------------------------ public
    def feed(self, chunk: bytes, length: Optional[int] = None) -> None:
        """Consume the next bytes of the dump: ``chunk[:length]`` (all of it by default)."""
        pos, end = 0, len(chunk) if length is None else length
        while pos < end and self.failed is None:
            pos = self._STEPS[self._state](self, chunk, pos, end)

    def finish(self) -> Optional[Dict[str, int]]:
        """Return the row counts per table, or None when the dump could not be read (see ``failed``)."""
        if self.failed is None and self._state in (_VALUES, _HEADER_TEXT, _ROW_LINES):
            self._fail("the dump ends inside a data statement of table %r" % self._table)
        return None if self.failed is not None else dict(self.counts)

    # --------------------------------------------------------------- outside data
    def _line_head(self, chunk: bytes, pos: int, end: int) -> int:
        """Gather the first bytes of a line and decide what the line is."""
        newline = chunk.find(b"\n", pos, end)
        stop = end if newline < 0 else newline
        take = min(stop, pos + _DECIDE - len(self._head))
        self._head += chunk[pos:take]
        ended = take == newline
        head = bytes(self._head)
        if self._statement_start and self._delimiter == b";" and head.startswith(_PREFIXES):
            self._state = _HEADER_TEXT
            return take
        if head.startswith(b"DELIMITER "):
            self._state = _DELIMITER
            return take
        undecided = len(head) < _DECIDE and any(word.startswith(head) for word in _PREFIXES + (b"DELIMITER ",))
        if ended:
            self._end_line(head)
            return take + 1
        if undecided:
            return take
        self._tail = head[-8:]
        self._state = _LINE
        return take

    def _line(self, chunk: bytes, pos: int, end: int) -> int:
        """Skip the rest of a line that is not data, keeping its last bytes."""
        newline = chunk.find(b"\n", pos, end)
        stop = end if newline < 0 else newline
        self._tail = (self._tail + chunk[max(pos, stop - 8):stop])[-8:]
        if newline < 0:
            return end
        self._end_line(self._tail)
        return newline + 1

    def _end_line(self, tail: bytes) -> None:
        """A line ended: it ends a statement when its last bytes are the delimiter (comments and blank lines do not count)."""
        stripped = tail.rstrip()
        if stripped and not self._head.startswith(b"-- "):
            self._statement_start = stripped.endswith(self._delimiter)
        self._state = _HEAD
        self._head = bytearray()
        self._tail = b""

    def _delimiter_line(self, chunk: bytes, pos: int, end: int) -> int:
        """Read a ``DELIMITER x`` line to its end and switch to that delimiter."""
        newline = chunk.find(b"\n", pos, end)
        self._head += chunk[pos:end if newline < 0 else newline]
        if len(self._head) > _MAX_DELIMITER_LINE:
            self._fail("a DELIMITER line is longer than %d bytes" % _MAX_DELIMITER_LINE)
        if newline < 0:
            return end
        value = bytes(self._head[len(b"DELIMITER "):]).strip()
        if not value:
            self._fail("a DELIMITER line names no delimiter")
        self._delimiter = value
        self._statement_start = True
        self._state = _HEAD
        self._head = bytearray()
        return newline + 1

    def _header(self, chunk: bytes, pos: int, end: int) -> int:
        """Read ``INSERT INTO `t` [(cols)] VALUES`` (it may span lines); the rows follow it."""
        before = len(self._head)
        take = min(end, pos + _HEADER_STEP)
        self._head += chunk[pos:take]
        match = _HEADER.match(self._head)
        if match is None:
            if len(self._head) > _MAX_HEADER:
                self._fail("an INSERT statement header is longer than %d bytes" % _MAX_HEADER)
            elif b";" in chunk[pos:take] and b"VALUES" not in self._head:
                self._fail("unexpected statement %r" % bytes(self._head[:120]))
            return take
        try:
            self._table = match.group(1).replace(b"``", b"`").decode("utf-8")
        except UnicodeDecodeError:
            self._fail("a table name is not UTF-8")
            return take
        self._head = bytearray()
        self._state = _VALUES
        self._rows = self._depth = 0
        self._in_string = False
        self._pending = b""
        return pos + match.end() - before

    # ------------------------------------------------------------------- data
    def _values(self, chunk: bytes, pos: int, end: int) -> int:
        """Count the rows of a data statement; return the position after its ``;`` (or ``end``)."""
        if self._pending:
            pos = self._resume(chunk, pos)
        find = chunk.find
        newline = find(b"\n", pos, end)
        stop = end if newline < 0 else newline + 1  # no value holds a raw newline: look no further
        nxt = {b"(": -2, b")": -2, b"'": -2, b";": -2, b"\n": newline}  # next of each: -1 none, -2 not looked
        while pos < stop:
            if self._in_string:
                pos = self._string(chunk, pos, stop)
                continue
            for char, at in nxt.items():
                if at != -1 and at < pos:
                    nxt[char] = find(char, pos, stop)
            present = [at for at in nxt.values() if at >= 0]
            if not present:
                return stop
            at = min(present)
            char = chunk[at:at + 1]
            pos = at + 1
            if char == b"(":
                self._rows += not self._depth
                self._depth += 1
            elif char == b")":
                if not self._depth:
                    self._fail("an unbalanced ')' in the data of table %r" % self._table)
                    return end
                self._depth -= 1
            elif char == b"'":
                self._in_string = True
            elif char == b"\n":
                if self._depth:
                    self._fail("a line break inside a row of table %r" % self._table)
                    return end
                self._state = _ROW_LINES
                self._last = b""
                return pos
            elif self._depth:
                self._fail("a ';' inside a row of table %r" % self._table)
                return end
            else:
                self._end_statement()
                return pos
        return stop

    def _row_lines(self, chunk: bytes, pos: int, end: int) -> int:
        """Count one row per line until a line ends with ``);``; return the position after it (or ``end``)."""
        find = chunk.find
        while True:
            newline = find(b"\n", pos, end)
            if newline < 0:
                self._last = (self._last + chunk[max(pos, end - 2):end])[-2:]
                return end
            last = chunk[newline - 2:newline] if newline - pos >= 2 else (self._last + chunk[pos:newline])[-2:]
            self._last = b""
            pos = newline + 1
            self._rows += 1
            if last == b"),":
                continue
            if last == b");":
                self._end_statement()
                self._state = _HEAD
                self._statement_start = True
                return pos
            self._fail("a row line of table %r ends with %r" % (self._table, last))
            return end

    def _string(self, chunk: bytes, pos: int, end: int) -> int:
        """Skip string content up to its closing quote; return the position after it (or ``end``)."""
        quote = chunk.find(b"'", pos, end)
        backslash = chunk.find(b"\\", pos, quote if quote >= 0 else end)
        if backslash >= 0:
            if backslash + 1 >= end:
                self._pending = b"\\"
                return end
            return backslash + 2
        if quote < 0:
            return end
        if quote + 1 >= end:
            self._pending = b"'"
            return end
        if chunk[quote + 1:quote + 2] == b"'":
            return quote + 2  # a doubled quote
        self._in_string = False
        return quote + 1

    def _resume(self, chunk: bytes, pos: int) -> int:
        """Finish an escape or a quote that the previous chunk's end cut."""
        pending, self._pending = self._pending, b""
        if pending == b"\\" or chunk[pos:pos + 1] == b"'":
            return pos + 1  # the escaped byte, or the second quote of a doubled one
        self._in_string = False
        return pos

    def _end_statement(self) -> None:
        self.counts[self._table] = self.counts.get(self._table, 0) + self._rows
        self._state = _LINE
        self._head = bytearray()
        self._tail = b";"

    def _fail(self, why: str) -> None:
        if self.failed is None:
            self.failed = why

    _STEPS = {_HEAD: _line_head, _LINE: _line, _HEADER_TEXT: _header, _VALUES: _values, _DELIMITER: _delimiter_line,
              _ROW_LINES: _row_lines}
