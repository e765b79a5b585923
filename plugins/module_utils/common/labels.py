# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one grammar for checkpoint labels and Git tag names, and how to print untrusted text.

A label names a checkpoint (``v2.4.0``, ``safety/rollback-20261202T190000Z-123``); a Git tag
becomes a label when a push checkpoints or rolls back. Both come from outside (a pusher, a
webhook, a survey, the command line), so both obey one grammar, checked before anything runs:

- 1 to 128 characters, ASCII letters, digits and ``. _ / -`` only;
- starts with a letter or a digit; no empty, ``.``-led or ``..`` path component, no ``//``,
  no trailing ``/`` or ``.``, no component ending in ``.lock`` (what ``git check-ref-format``
  also refuses).

A configured pattern (a regular expression, matched in full) can only narrow that grammar.

A rollback *target* (``rollback_to``) is a label, a checkpoint id, or a relative target, resolved on each
host against its own checkpoints (oldest first; safety checkpoints never count; a label counts once, as its
newest checkpoint):

- ``previous``: the checkpoint before the newest one (the one before the current release);
- ``previous~N`` (N from 1 to 99): N back from the newest (``previous~1`` is ``previous``);
- either followed by ``:<glob>``, counting only checkpoints whose label matches the glob
  (``previous~2:v*``: two releases back);
- ``latest:<glob>``: the newest checkpoint whose label matches the glob (``latest:v2.3.*``).

A glob holds the label characters and the wildcards ``*`` (any run of characters, ``/`` too) and ``?``.
Standard library only, no imports of other module_utils: the ``gitops-rollback`` command loads
this file by path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Dict, List, Optional, Sequence

from .errors import BadLabel

MAX_LABEL_LENGTH = 128
LABEL_CHARACTERS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
GRAMMAR = ("1 to %d characters: ASCII letters, digits and . _ / -, starting with a letter or a digit; "
           "no '..', '//', '/.', trailing '/' or '.', nor a component ending in '.lock'" % MAX_LABEL_LENGTH)
_PRINT_LIMIT = 80
_ESCAPED = frozenset("{}%#$`\\'\"")


RELATIVE_GRAMMAR = ("previous, previous~N (N from 1 to 99), either followed by :<glob> to count only labels "
                    "matching the glob (previous~2:v*), or latest:<glob> (the newest label matching it); a glob has "
                    "ASCII letters, digits, . _ / - and the wildcards * and ?, at most %d characters" % MAX_LABEL_LENGTH)
TARGET_GRAMMAR = "a checkpoint id, a label (%s), or a relative target (%s)" % (GRAMMAR, RELATIVE_GRAMMAR)
_RELATIVE = re.compile(r"(?:previous(?:~(?P<back>[0-9]{1,3}))?|(?P<latest>latest))(?::(?P<glob>.*))?", re.S)
_GLOB = re.compile(r"[A-Za-z0-9._/*?-]{1,%d}" % MAX_LABEL_LENGTH)
SAFETY_PREFIX = "safety/"


@dataclass(frozen=True)
class RelativeTarget:
    """A target counted back from the newest checkpoint: ``back`` steps, among labels matching ``glob``."""

    text: str
    back: int
    glob: Optional[str] = None

    def pick(self, checkpoints: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        """Return the checkpoint this target names in a listing (oldest first), or None.

        Safety checkpoints never count; a label counts once, as its newest checkpoint; with a glob,
        only checkpoints whose label matches it count.
        """
        return next(iter(self.candidates(checkpoints)[::-1][self.back:self.back + 1]), None)

    def candidates(self, checkpoints: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The checkpoints that count, oldest first."""
        newest: Dict[str, int] = {}
        counted = []
        for checkpoint in checkpoints:
            label = checkpoint.get("label") or ""
            if checkpoint.get("kind") == "safety" or label.startswith(SAFETY_PREFIX):
                continue
            if self.glob is not None and not (label and fnmatchcase(label, self.glob)):
                continue
            if label:
                if label in newest:
                    counted[newest[label]] = None
                newest[label] = len(counted)
            counted.append(checkpoint)
        return [checkpoint for checkpoint in counted if checkpoint is not None]


def _relative(value: object) -> "tuple[Optional[RelativeTarget], Optional[str]]":
    """``value`` as a relative target and None, (None, None) when it is no relative target (a label or an
    id), or (None, why) when it starts like one but breaks its grammar."""
    match = _RELATIVE.fullmatch(value) if isinstance(value, str) else None
    if match is None or (match.group("latest") and match.group("glob") is None):  # "latest" alone is a label
        return None, None
    back, glob = match.group("back"), match.group("glob")
    if back is not None and not 1 <= int(back) <= 99:
        return None, "it counts back %s checkpoints (from 1 to 99)" % back
    if glob is not None and not _GLOB.fullmatch(glob):
        return None, ("its glob %s is empty, too long or holds a character outside the label characters and * ?"
                      % escape(glob))
    return RelativeTarget(str(value), 0 if match.group("latest") else int(back or 1), glob), None


def relative_target(value: object) -> Optional[RelativeTarget]:
    """Return ``value`` as a relative target, None when it is none (a label or an id); raise
    :class:`LabelError` when it starts like one but breaks its grammar."""
    relative, problem = _relative(value)
    if problem:
        raise LabelError("Rollback target %s is refused: %s. A target is %s." % (escape(value), problem, TARGET_GRAMMAR))
    return relative


def target_problem(value: object, pattern: Optional[str] = None) -> Optional[str]:
    """Return why ``value`` is not a rollback target (a label, an id or a relative target), or None."""
    relative, problem = _relative(value)
    if relative is not None or problem:
        return problem
    return label_problem(value, pattern)


class LabelError(ValueError):
    """A label or tag name is outside the grammar; the message names the value (escaped) and why."""


def escape(value: object, limit: int = _PRINT_LIMIT) -> str:
    """Return ``value`` quoted for a log line or a message: printable ASCII only, cut at ``limit``.

    Control characters, non-ASCII characters and template markers are shown as escapes, so a
    printed label can neither move the cursor nor read as a template to whatever shows it.
    """
    text = value if isinstance(value, str) else repr(value)
    shown = text[:limit]
    out = [_escape_char(c) if c in _ESCAPED or not " " <= c <= "~" else c for c in shown]
    suffix = "...(%d characters)" % len(text) if len(text) > limit else ""
    return "'%s'%s" % ("".join(out), suffix)


def _escape_char(char: str) -> str:
    """Return ``char`` as a Python-style escape (``\\x7b``, ``\\u0430``, ``\\U0001f600``)."""
    code = ord(char)
    if code < 0x100:
        return "\\x%02x" % code
    return "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


def label_problem(value: object, pattern: Optional[str] = None) -> Optional[str]:
    """Return why ``value`` is not a valid label, or None when it is."""
    if not isinstance(value, str):
        return "it is not text (%s)" % type(value).__name__
    if not value:
        return "it is empty"
    if len(value) > MAX_LABEL_LENGTH:
        return "it has %d characters (at most %d)" % (len(value), MAX_LABEL_LENGTH)
    if not LABEL_CHARACTERS.fullmatch(value):
        bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "._/-"))), None)
        if bad is None:
            return "it must start with an ASCII letter or a digit"
        return "it contains %s, which is not an ASCII letter, digit, '.', '_', '/' or '-'" % escape(bad)
    for component in value.split("/"):
        if not component:
            return "it has an empty path component ('//' or a trailing '/')"
        if component.startswith("."):
            return "a path component starts with '.'"
        if component.endswith(".lock"):
            return "a path component ends in '.lock'"
    if ".." in value:
        return "it contains '..'"
    if value.endswith("."):
        return "it ends in '.'"
    if value == "previous":
        return "'previous' is a relative target (the checkpoint before the newest), never a label"
    if pattern and not re.fullmatch(pattern, value):
        return "it does not match the configured label pattern %s" % escape(pattern, 200)
    return None


def check_label(value: object, pattern: Optional[str] = None, what: str = "label") -> str:
    """Return ``value`` when it is a valid label; raise :class:`LabelError` naming the problem."""
    problem = label_problem(value, pattern)
    if problem:
        raise LabelError("%s %s is refused: %s. A %s is %s."
                         % (what.capitalize(), escape(value), problem, what, GRAMMAR))
    return value  # type: ignore[return-value]  # a str once label_problem() found nothing


def is_label(value: object, pattern: Optional[str] = None) -> bool:
    """Tell whether ``value`` is a valid label."""
    return label_problem(value, pattern) is None


def show_label(value: object) -> str:
    """Return a label for a message: a valid one as it is, anything else escaped and quoted (an old store's)."""
    return value if is_label(value) else escape(value)  # type: ignore[return-value]  # a str when a label


def check_new_label(label: Optional[str], option: str = "label") -> Optional[str]:
    """Return ``label`` when it is None or in the label grammar; raise :class:`BadLabel` naming the problem.

    Only labels about to be written are checked: existing checkpoints keep whatever label they have.
    """
    problem = None if label is None else label_problem(label)
    if problem:
        raise BadLabel("%s=%s is refused: %s. A label is %s. Nothing was changed. Choose a label in that grammar "
                       "(a release tag such as v2.4.0)." % (option, escape(label), problem, GRAMMAR))
    return label
