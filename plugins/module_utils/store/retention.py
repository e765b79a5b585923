# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention policies: which checkpoints a prune keeps, which it forgets, and why.

Two policies share one result shape (:class:`Decision` per checkpoint, with the reasons it is kept):

- the *count/age* policy (``keep``, ``older_than_days``): forget checkpoints beyond the newest
  ``keep`` or older than ``older_than_days``; the newest is never forgotten;
- the *bucket* policy, restic ``forget`` semantics: ``keep_last`` keeps the newest N; each of
  ``keep_hourly``/``daily``/``weekly``/``monthly``/``yearly`` keeps the newest checkpoint of each of
  the last N periods (UTC; ISO weeks) that hold a checkpoint; ``keep_within_days`` keeps every
  checkpoint taken within that many days of the newest one; ``keep_labels`` keeps every
  checkpoint whose label matches a glob. A checkpoint kept by any rule is kept. A count of -1 means
  unlimited.

Whatever the policy, three checkpoints are always kept: the newest, the newest safety checkpoint
(see :func:`is_safety`, so the last rollback can be undone) and every checkpoint a release tag names
(its label matches :data:`VERSION_TAGS`), so a rollback to any release stays possible.

Pure functions, standard library only.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Sequence, Tuple

DAY = 86400.0
VERSION_TAGS = ("v[0-9]*",)
"""Label globs of release tags (v1.2.3, v2.0.0-rc1): their checkpoints are never forgotten."""

BUCKETS: Tuple[Tuple[str, str], ...] = (
    ("hourly", "%Y-%m-%dT%H"),
    ("daily", "%Y-%m-%d"),
    ("weekly", ""),
    ("monthly", "%Y-%m"),
    ("yearly", "%Y"),
)
BUCKET_NAMES = tuple(name for name, _fmt in BUCKETS)


class RetentionError(ValueError):
    """A retention policy cannot be applied (a negative count, a bad pattern)."""


@dataclass(frozen=True)
class Snapshot:
    """What retention needs to know of a checkpoint."""

    id: str
    created: float  # epoch seconds
    label: Optional[str] = None
    kind: str = "checkpoint"


@dataclass
class Policy:
    """A retention policy; ``None`` (or 0) leaves a rule out, -1 means unlimited."""

    keep: Optional[int] = None
    older_than_days: Optional[float] = None
    keep_last: Optional[int] = None
    keep_hourly: Optional[int] = None
    keep_daily: Optional[int] = None
    keep_weekly: Optional[int] = None
    keep_monthly: Optional[int] = None
    keep_yearly: Optional[int] = None
    keep_within_days: Optional[float] = None
    keep_labels: Optional[List[str]] = None

    def is_bucket_policy(self) -> bool:
        """Return whether any restic-style rule (or ``keep_labels``) is set."""
        rules = (self.keep_last, self.keep_within_days, self.keep_labels) + tuple(
            getattr(self, "keep_" + name) for name in BUCKET_NAMES)
        return any(rule is not None for rule in rules)

    def check(self) -> None:
        """Raise :class:`RetentionError` when a count or a duration is out of range."""
        counts = {"keep_last": self.keep_last}
        counts.update({"keep_" + name: getattr(self, "keep_" + name) for name in BUCKET_NAMES})
        for name, value in counts.items():
            if value is not None and value < -1:
                raise RetentionError("%s=%d is not a count; use a number of checkpoints, 0 to leave the rule "
                                     "out or -1 for unlimited." % (name, value))
        for name in ("older_than_days", "keep_within_days"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise RetentionError("%s=%s is negative; use a number of days." % (name, value))
        if self.is_bucket_policy() and (self.keep is not None or self.older_than_days is not None):
            raise RetentionError("keep and older_than_days cannot be combined with keep_last, keep_hourly, "
                                 "keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within_days or "
                                 "keep_labels; use keep_last and keep_within_days instead.")


@dataclass
class Decision:
    """Whether a checkpoint is kept, and every rule that keeps it."""

    snapshot: Snapshot
    reasons: List[str] = field(default_factory=list)

    @property
    def kept(self) -> bool:
        """A checkpoint is kept when at least one rule keeps it."""
        return bool(self.reasons)


def plan(snapshots: Sequence[Snapshot], policy: Policy, now: float) -> List[Decision]:
    """Return a decision for each snapshot, oldest first."""
    policy.check()
    if policy.is_bucket_policy():
        return _bucket_plan(snapshots, policy)
    return _count_age_plan(snapshots, policy, now)


def forgotten(decisions: Sequence[Decision]) -> List[str]:
    """Return the ids the decisions forget, oldest first."""
    return [dec.snapshot.id for dec in decisions if not dec.kept]


def _count_age_plan(snapshots: Sequence[Snapshot], policy: Policy, now: float) -> List[Decision]:
    """Forget beyond the newest ``keep`` or older than ``older_than_days``; never the newest.

    Snapshots are taken in the order given (the store's id order), as the prune always did.
    """
    decisions = [Decision(snap) for snap in snapshots]
    if not decisions:
        return decisions
    _always_kept(list(reversed(decisions)))
    keep = None if policy.keep is None else max(policy.keep, 1)
    for index, dec in enumerate(decisions[:-1]):
        within_count = keep is None or index >= len(decisions) - keep
        age = now - dec.snapshot.created
        young = policy.older_than_days is None or age <= policy.older_than_days * DAY
        if within_count and young:
            if keep is not None:
                dec.reasons.append("among the newest %d" % keep)
            if policy.older_than_days is not None:
                dec.reasons.append("not older than %s days" % _number(policy.older_than_days))
    return decisions


def _bucket_plan(snapshots: Sequence[Snapshot], policy: Policy) -> List[Decision]:
    """Apply the restic-style rules; newest first, as restic walks snapshots."""
    ordered = sorted(snapshots, key=lambda snap: (snap.created, snap.id))
    decisions = [Decision(snap) for snap in ordered]
    if not decisions:
        return decisions
    newest_first = list(reversed(decisions))
    _always_kept(newest_first)
    if policy.keep_last:
        _keep_periods(newest_first, policy.keep_last, lambda snap: snap.id, lambda key: "last")
    for name, fmt in BUCKETS:
        count = getattr(policy, "keep_" + name)
        if count:
            _keep_periods(newest_first, count, _period_of(fmt), lambda key, name=name: "%s %s" % (name, key))
    if policy.keep_within_days is not None:
        limit = newest_first[0].snapshot.created - policy.keep_within_days * DAY
        for dec in newest_first:
            if dec.snapshot.created >= limit:
                dec.reasons.append("within %s days of the newest" % _number(policy.keep_within_days))
    patterns = [glob for glob in policy.keep_labels or [] if glob not in VERSION_TAGS]
    for dec in newest_first:
        match = label_match(dec.snapshot.label, patterns)
        if match is not None:
            dec.reasons.append("label matches %s" % match)
    return decisions


def _always_kept(newest_first: Sequence[Decision]) -> None:
    """Keep, under any policy, the newest checkpoint, the newest safety checkpoint and every release tag's."""
    newest_first[0].reasons.append("newest")
    safety = next((dec for dec in newest_first if is_safety(dec.snapshot)), None)
    if safety is not None:
        safety.reasons.append("newest safety checkpoint")
    for dec in newest_first:
        match = label_match(dec.snapshot.label, VERSION_TAGS)
        if match is not None:
            dec.reasons.append("label matches %s" % match)


def is_safety(snapshot: Snapshot) -> bool:
    """A safety checkpoint is one a restore took (kind ``safety``) or one labelled ``safety/...`` (a rollback run's)."""
    return snapshot.kind == "safety" or (snapshot.label or "").startswith("safety/")


def _keep_periods(newest_first: Sequence[Decision], count: int, period: Callable[[Snapshot], str],
                  reason: Callable[[str], str]) -> None:
    """Keep the newest snapshot of each of the ``count`` newest distinct periods (-1: of every period)."""
    seen: Dict[str, bool] = {}
    for dec in newest_first:
        if count != -1 and len(seen) >= count:
            return
        key = period(dec.snapshot)
        if key not in seen:
            seen[key] = True
            dec.reasons.append(reason(key))


def _period_of(fmt: str) -> Callable[[Snapshot], str]:
    """Return the function naming a snapshot's period (UTC); an empty format means the ISO week."""
    def period(snap: Snapshot) -> str:
        moment = datetime.fromtimestamp(snap.created, timezone.utc)
        if not fmt:
            year, week = moment.isocalendar()[:2]
            return "%04d-W%02d" % (year, week)
        return moment.strftime(fmt)
    return period


def label_match(label: Optional[str], patterns: Sequence[str]) -> Optional[str]:
    """Return the first glob (case-sensitive, ``*`` also matches ``/``) that ``label`` matches, or None."""
    if not label:
        return None
    return next((pattern for pattern in patterns if fnmatch.fnmatchcase(label, pattern)), None)


def _number(value: float) -> str:
    """Show 7.0 as 7 and 0.5 as 0.5."""
    return ("%f" % value).rstrip("0").rstrip(".")
