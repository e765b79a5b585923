# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tag events to decisions: the one implementation shared by the CLI and the playbooks.

A Git push (a post-receive line, a GitHub or GitLab webhook payload, or the webhook extra vars
AWX injects) becomes a :class:`RefEvent`; :func:`decide` turns it into a :class:`Decision`:
``checkpoint`` a release tag, ``rollback`` to the target of a rollback tag, or ``ignore`` with
the reason, or ``refuse`` a ref whose tag, rollback target or commit is outside the grammar of
``common.labels.py`` (such a ref is untrusted data that must never reach a playbook). Pure functions,
standard library only; the one import is ``common.labels`` (relative): the ``gitops-rollback`` command
loads both files as a package, the ``tag_event`` filter imports them as module_utils.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Collection, Dict, List, Mapping, Optional, Sequence, Tuple

from ..common.labels import LabelError, check_label, escape, is_label

ZERO_SHA = "0" * 40
TAG_PREFIX = "refs/tags/"
BRANCH_PREFIX = "refs/heads/"
TARGET_PLACEHOLDER = "{target}"
DEFAULT_RELEASE_PATTERNS = ("v*",)
DEFAULT_ROLLBACK_PATTERN = "rollback/" + TARGET_PLACEHOLDER
AWX_PREFIXES = ("awx", "tower")

CHECKPOINT = "checkpoint"
ROLLBACK = "rollback"
IGNORE = "ignore"
REFUSE = "refuse"
MANUAL = "manual"
OBJECT_NAME = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


class TagEventError(ValueError):
    """A tag pattern or a webhook payload cannot be used."""


@dataclass(frozen=True)
class TagPatterns:
    """Which tags make checkpoints (globs) and which roll back (a pattern with ``{target}``).

    ``label`` is an optional regular expression every tag name must also match in full: it narrows
    the label grammar of ``common.labels.py``, it cannot widen it.
    """

    release: Tuple[str, ...] = DEFAULT_RELEASE_PATTERNS
    rollback: str = DEFAULT_ROLLBACK_PATTERN
    label: Optional[str] = None
    _rollback_re: Any = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if isinstance(self.release, str):
            object.__setattr__(self, "release", (self.release,))
        object.__setattr__(self, "release", tuple(p for p in self.release if p))
        if self.rollback.count(TARGET_PLACEHOLDER) != 1:
            raise TagEventError(
                "Rollback tag pattern %r must contain %s exactly once (for example 'rollback/%s')."
                % (self.rollback, TARGET_PLACEHOLDER, TARGET_PLACEHOLDER))
        if self.label:
            try:
                re.compile(self.label)
            except re.error as exc:
                raise TagEventError("Tag label pattern %s is not a regular expression (%s). Give one that "
                                    "matches the tag names you allow in full." % (escape(self.label, 200), exc))
        head, tail = self.rollback.split(TARGET_PLACEHOLDER)
        object.__setattr__(self, "_rollback_re", re.compile(
            "^%s(?P<target>.+)%s\\Z" % (_glob_regex(head), _glob_regex(tail))))

    def rollback_target(self, tag: str) -> Optional[str]:
        """Return the target named by a rollback tag, or None when ``tag`` is not one."""
        match = self._rollback_re.match(tag)
        return match.group("target") if match else None

    def is_release(self, tag: str) -> bool:
        """Tell whether ``tag`` matches one of the release patterns."""
        return any(fnmatch.fnmatchcase(tag, pattern) for pattern in self.release)

    def describe(self) -> str:
        """Patterns as text for log lines."""
        text = "release %s, rollback %s" % (", ".join(self.release) or "(none)", self.rollback)
        return text + (", label pattern %s" % escape(self.label, 200) if self.label else "")


def _glob_regex(glob: str) -> str:
    """Translate a glob fragment to an unanchored regular expression."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)


@dataclass(frozen=True)
class RefEvent:
    """One ref update: what was pushed, from where, and the delivery id when there is one."""

    ref: str
    old: str = ""
    new: str = ""
    commit: str = ""
    event_id: str = ""
    event_type: str = "push"
    source: str = "git"
    deleted: bool = False

    @property
    def tag(self) -> Optional[str]:
        """The tag name for refs/tags/..., else None."""
        return self.ref[len(TAG_PREFIX):] if self.ref.startswith(TAG_PREFIX) else None


@dataclass(frozen=True)
class Decision:
    """What to do about one event, and why."""

    action: str
    reason: str
    ref: str = ""
    tag: str = ""
    target: str = ""
    commit: str = ""
    event_id: str = ""
    source: str = ""

    @property
    def runs(self) -> bool:
        """True for a checkpoint or a rollback."""
        return self.action in (CHECKPOINT, ROLLBACK)

    def as_dict(self) -> Dict[str, Any]:
        """The decision as a plain dict (filter output, JSON state)."""
        return asdict(self)


def _is_zero(sha: Optional[str]) -> bool:
    return not sha or set(sha) == {"0"}


def _qualify(ref: str) -> str:
    """``v2`` -> ``refs/tags/v2``; full refs are kept."""
    return ref if ref.startswith("refs/") else TAG_PREFIX + ref


def event_from_ref(ref: str, old: str = "", new: str = "", event_id: str = "", source: str = "cli") -> RefEvent:
    """Build an event from a ref name (a bare name is a tag) and optional old/new object names."""
    deleted = bool(new) and _is_zero(new)
    return RefEvent(ref=_qualify(ref), old=old, new=new, commit="" if deleted else new,
                    event_id=event_id, source=source, deleted=deleted)


def parse_post_receive(text: str) -> List[RefEvent]:
    """Parse the ``<old> <new> <ref>`` lines a post-receive hook reads on stdin."""
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise TagEventError("post-receive line %d is not '<old-sha> <new-sha> <ref>': %r" % (number, line))
        old, new, ref = parts
        events.append(event_from_ref(ref, old, new, source="post-receive"))
    return events


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    value: Any = data
    for key in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _detect_service(payload: Mapping[str, Any], event_type: str) -> str:
    if "object_kind" in payload or event_type.endswith(" Hook"):
        return "gitlab"
    return "github"


def event_from_payload(payload: Mapping[str, Any], event_type: str = "", event_id: str = "",
                       source: str = "") -> RefEvent:
    """Build an event from a GitHub or GitLab webhook payload.

    ``event_type`` is the X-GitHub-Event / X-Gitlab-Event header (guessed from the payload when
    empty), ``event_id`` the delivery id (X-GitHub-Delivery / X-Gitlab-Event-UUID).
    """
    if not isinstance(payload, Mapping):
        raise TagEventError("A webhook payload must be a JSON object, got %s." % type(payload).__name__)
    service = _detect_service(payload, event_type)
    source = source or service
    if service == "gitlab":
        kind = event_type or {"tag_push": "Tag Push Hook", "push": "Push Hook"}.get(
            str(payload.get("object_kind")), str(payload.get("object_kind") or "unknown"))
        commit = payload.get("checkout_sha") or ""
    else:
        kind = event_type or ("push" if "ref" in payload and "after" in payload else "unknown")
        commit = _get(payload, "head_commit.id") or ""
        if kind in ("create", "delete"):
            # GitHub create/delete events: {"ref": "v2", "ref_type": "tag"}
            if payload.get("ref_type") != "tag":
                return RefEvent(ref=BRANCH_PREFIX + str(payload.get("ref") or ""), event_id=event_id,
                                event_type=kind, source=source)
            return RefEvent(ref=_qualify(str(payload.get("ref") or "")), event_id=event_id, event_type=kind,
                            source=source, deleted=kind == "delete")
    ref = str(payload.get("ref") or "")
    new = str(payload.get("after") or "")
    deleted = bool(payload.get("deleted")) or (bool(ref) and _is_zero(new))
    return RefEvent(ref=ref, old=str(payload.get("before") or ""), new=new,
                    commit="" if deleted else str(commit or new), event_id=event_id, event_type=kind,
                    source=source, deleted=deleted)


def event_from_awx_vars(variables: Mapping[str, Any]) -> Optional[RefEvent]:
    """Build an event from the webhook extra vars AWX/Tower injects; None when there are none."""
    for prefix in AWX_PREFIXES:
        payload = variables.get(prefix + "_webhook_payload")
        if payload is None:
            continue
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError as exc:
                raise TagEventError("%s_webhook_payload is not JSON: %s" % (prefix, exc)) from exc
        return event_from_payload(payload, str(variables.get(prefix + "_webhook_event_type") or ""),
                                  str(variables.get(prefix + "_webhook_event_guid") or ""), source="awx")
    return None


def _is_push(event: RefEvent) -> bool:
    return event.event_type in ("push", "create", "delete", "Push Hook", "Tag Push Hook", "tag_push")


def shown(text: str) -> str:
    """``text`` as it may appear in a message: itself when it is a valid label, else escaped."""
    return text if is_label(text) else escape(text)


def refusal(event: RefEvent, patterns: TagPatterns) -> Optional[str]:
    """Why the tag, rollback target or commit of a tag push is refused, or None when they are valid."""
    tag = event.tag or ""
    try:
        check_label(tag, patterns.label, what="tag")
        target = patterns.rollback_target(tag)
        if target is not None:
            check_label(target, what="rollback target")
    except LabelError as exc:
        return str(exc)
    if event.commit and not OBJECT_NAME.fullmatch(event.commit):
        return "Commit %s of tag %s is refused: it is not a Git object name (40 or 64 lowercase hex digits)." % (
            escape(event.commit), tag)
    return None


def decide(event: RefEvent, patterns: TagPatterns, processed_tags: Collection[str] = (),
           processed_events: Collection[str] = ()) -> Decision:
    """Decide what ``event`` triggers: checkpoint, rollback, ignore or refuse (with the reason).

    ``processed_tags``/``processed_events`` are what was handled before (tags are processed
    once; a redelivered event id is ignored even for a new tag). A tag push whose tag, rollback
    target or commit is outside the grammar is refused before anything else is looked at; the
    decision then carries the ref escaped and no tag, target or commit.
    """
    commit = event.commit if OBJECT_NAME.fullmatch(event.commit or "") else ""
    base = {"ref": shown(event.ref) if event.ref else "", "tag": shown(event.tag) if event.tag else "",
            "commit": commit, "event_id": shown(event.event_id) if event.event_id else "", "source": event.source}
    if event.event_id and event.event_id in processed_events:
        return Decision(IGNORE, "duplicate event %s: it was handled already" % base["event_id"], **base)
    if not _is_push(event):
        return Decision(IGNORE, "event type %s is not a push" % escape(event.event_type), **base)
    tag = event.tag
    if tag is None:
        what = "branch push" if event.ref.startswith(BRANCH_PREFIX) else "not a tag"
        return Decision(IGNORE, "%s (%s): only tags trigger checkpoints and rollbacks" % (what, base["ref"]), **base)
    if event.deleted:
        return Decision(IGNORE, "tag %s was deleted: deleting a tag never triggers anything" % base["tag"], **base)
    problem = refusal(event, patterns)
    if problem:
        return Decision(REFUSE, problem, ref=base["ref"], event_id=base["event_id"], source=base["source"])
    target = patterns.rollback_target(tag)
    action = ROLLBACK if target else CHECKPOINT if patterns.is_release(tag) else None
    if action is None:
        return Decision(IGNORE, "tag %s matches no pattern (%s)" % (tag, patterns.describe()), **base)
    if tag in processed_tags:
        return Decision(IGNORE, "tag %s was processed already (each tag runs once)" % tag, **base)
    if action == ROLLBACK:
        return Decision(ROLLBACK, "rollback tag %s: roll back to %s" % (tag, target), target=target or "", **base)
    return Decision(CHECKPOINT, "release tag %s: checkpoint labelled %s" % (tag, tag), **base)


def decide_awx(variables: Mapping[str, Any], patterns: TagPatterns, processed_tags: Collection[str] = (),
               processed_events: Collection[str] = ()) -> Decision:
    """Decide from AWX extra vars: a webhook launch is filtered, any other launch is ``manual``."""
    event = event_from_awx_vars(variables)
    if event is None:
        return Decision(MANUAL, "no webhook event: launched by hand, a schedule or the API; survey answers apply")
    return decide(event, patterns, processed_tags, processed_events)


def patterns_from(release: Optional[Sequence[str]] = None, rollback: Optional[str] = None,
                  label: Optional[str] = None) -> TagPatterns:
    """TagPatterns from optional settings (None: defaults)."""
    return TagPatterns(tuple(release) if release is not None else DEFAULT_RELEASE_PATTERNS,
                       rollback or DEFAULT_ROLLBACK_PATTERN, label or None)
