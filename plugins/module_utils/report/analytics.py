# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollback analytics from the audit log: records in, numbers out.

:func:`analyze` turns the records read by ``report.runs.read_log`` into ``report.runs.Rollback``
entries and a summary, which the renderers draw
(``report.html``, ``report.prometheus``, ``report.markdown``). Standard library only.

How the log is read (see ``controller.audit.py``): records are grouped by ``run_id``. A ``rollback`` run
ends ``completed`` (success, or a plan when it ran in check mode), ``failed`` (any host failed),
``refused`` (pre-flight said no; nothing changed) or not at all (incomplete). A ``guard`` run
that wrote ``started`` began an automatic rollback: it is joined to the ``rollback`` run with
trigger ``guard`` that started inside it, which gains the guard's detection time, reason and
measurements; a guard run with no such rollback run counts as the rollback itself.

Drills (``drill`` runs) and every rollback or guard run a drill made are kept out of the
production figures and get their own section: a run belongs to a drill when its records say so
(``measurements.drill``, trigger ``drill``), when the drill's record lists it among its rounds,
or when its id is the drill's id plus a round (``<drill>-manual``, ``<drill>-guard``). A drill's
rollback is never a success when the drill found that round's layers wrong or failed before
measuring it. Rollbacks are broken down by their cause: a failure's or refusal's problem
(missing checkpoint, corrupted object, failed health gate, ...), else the reason given.
Fields may be missing; nothing here fails on that.
"""


from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Dict, Iterable, List, Optional, Tuple

from .runs import (FINISHED, GUARD_LINK_SLACK, OUTCOMES, QUANTILES, ReportError, Rollback, as_number, causes,
                   dict_or_empty, iso, layer_key, record_epoch, round_or_none)
from .text import clip


def group_runs(records: Iterable[dict]) -> Dict[str, List[dict]]:
    """Group records by run id, in log order (as ``controller.audit.runs``)."""
    grouped: Dict[str, List[dict]] = {}
    for record in records:
        grouped.setdefault(str(record.get("run_id", "?")), []).append(record)
    return grouped


def build_rollbacks(records: Iterable[dict]) -> Tuple[List[Rollback], List[Rollback]]:
    """Return (rollbacks, drills) in start order; guard runs are joined to their rollback runs."""
    rollbacks, guards, drills = [], [], []
    for run_id, run_records in group_runs(records).items():
        operation = str(run_records[0].get("operation", ""))
        if operation == "rollback":
            rollbacks.append(Rollback(run_id, operation, run_records))
        elif operation == "guard":
            if any(r.get("event") in ("started", "refused") for r in run_records):
                guards.append(Rollback(run_id, operation, run_records))
        elif operation == "drill":
            drills.append(Rollback(run_id, operation, run_records))
    for guard in guards:
        joined = _join_guard(guard, rollbacks)
        if not joined:
            guard.trigger = "guard"
            rollbacks.append(guard)
    rollbacks.sort(key=lambda r: r.started or 0.0)
    drills.sort(key=lambda r: r.started or 0.0)
    production = [r for r in rollbacks if not _assign_drill(r, drills)]
    for drill in drills:
        for rollback in drill.rollbacks:
            _settle_drill_outcome(rollback, drill)
    return production, drills


def _owning_drill(run: Rollback, drills: List[Rollback]) -> Optional[Rollback]:
    """The drill run that made ``run``: named in its records, listed in the drill's rounds, or by its id."""
    label = run.drill_label()
    for drill in drills:
        if label and drill.run_id == label:
            return drill
        if run.round_of_drill(drill) is not None or run.run_id.startswith(drill.run_id + "-"):
            return drill
    if run.operation == "guard" and run.started is not None:  # a guard run of a drill that wrote no label
        for drill in drills:
            end = drill.ended if drill.ended is not None else math.inf
            if (drill.started is not None and drill.started <= run.started <= end
                    and set(run.hosts) & set(drill.hosts)):
                return drill
    return None


def _assign_drill(run: Rollback, drills: List[Rollback]) -> bool:
    """Attach a drill's run to its drill; return whether ``run`` belongs to a drill."""
    drill = _owning_drill(run, drills)
    if drill is None and run.trigger != "drill" and not run.drill_label():
        return False
    run.drill = drill.run_id if drill else (run.drill_label() or "")
    if drill is not None:
        drill.rollbacks.append(run)
    return True


def _settle_drill_outcome(rollback: Rollback, drill: Rollback) -> None:
    """A drill's rollback is no success when its round's verification found problems or the drill failed first."""
    if rollback.outcome != "success":
        return
    measured = rollback.round_of_drill(drill)
    problems = as_number(dict_or_empty(measured).get("problems")) if measured is not None else None
    if problems:
        rollback.outcome = "failed"
        rollback.note = "the drill's verification found %d problem(s) after this rollback" % problems
    elif drill.outcome == "failed" and measured is None:
        rollback.outcome = "failed"
        rollback.note = "the drill failed before it verified this rollback: %s" % clip(drill.problems()[0], 200) \
            if drill.problems() else "the drill failed before it verified this rollback"


def _join_guard(guard: Rollback, rollbacks: List[Rollback]) -> bool:
    """Attach the guard to the guard-triggered rollback run that started inside it."""
    if guard.outcome == "refused" and not any(r.get("event") == "started" for r in guard.records):
        return False
    begin = guard.started if guard.started is not None else -math.inf
    end = guard.ended if guard.ended is not None else math.inf
    for rollback in rollbacks:
        if rollback.guard_run_id or rollback.started is None:
            continue
        if rollback.trigger != "guard" and not (guard.drill_label() and guard.drill_label() == rollback.drill_label()):
            continue
        if begin - GUARD_LINK_SLACK <= rollback.started <= end + GUARD_LINK_SLACK:
            rollback.attach_guard(guard)
            return True
    return False


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def quantile(values: List[float], q: float) -> Optional[float]:
    """Nearest-rank quantile of the values; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(int(math.ceil(q * len(ordered))), 1)
    return ordered[rank - 1]


def _counts(rollbacks: List[Rollback]) -> Dict[str, int]:
    counts = {outcome: 0 for outcome in OUTCOMES}
    for rollback in rollbacks:
        counts[rollback.outcome] = counts.get(rollback.outcome, 0) + 1
    counts["total"] = len(rollbacks)
    return counts


def _breakdown(rollbacks: List[Rollback], key) -> List[dict]:
    groups: Dict[str, List[Rollback]] = {}
    for rollback in rollbacks:
        for name in key(rollback):
            groups.setdefault(name, []).append(rollback)
    rows = []
    for name, members in groups.items():
        row = {"name": name}
        row.update(_counts(members))
        rows.append(row)
    rows.sort(key=lambda row: (-row["total"], row["name"]))
    return rows


def _by_layer(rollbacks: List[Rollback]) -> List[dict]:
    rows = []
    ran = [r for r in rollbacks if r.outcome != "refused"]
    for layer in sorted({layer for r in ran for layer in r.layer_names}, key=layer_key):
        members = [r for r in ran if layer in r.layer_names]
        seconds = [s for s in (r.layer_seconds(layer) for r in members) if s is not None]
        changed = [r for r in members if any(layer in c for c in r.changed_layers.values())]
        row = {"name": layer, "changed": len(changed), "avg_seconds": round_or_none(_mean(seconds))}
        row.update(_counts(members))
        rows.append(row)
    return rows


def _daily(rollbacks: List[Rollback], days: int, until: Optional[float]) -> List[dict]:
    if until is None:
        return []
    last = datetime.fromtimestamp(until, tz=timezone.utc).date()
    first = last - timedelta(days=max(days, 1) - 1)
    rows = {first + timedelta(days=n): {o: 0 for o in OUTCOMES} for n in range(max(days, 1))}
    for rollback in rollbacks:
        if rollback.started is None:
            continue
        day = datetime.fromtimestamp(rollback.started, tz=timezone.utc).date()
        if day in rows:
            rows[day][rollback.outcome] += 1
    return [dict(date=day.isoformat(), total=sum(c.values()), **c) for day, c in sorted(rows.items())]


def summarize_runs(rollbacks: List[Rollback], drills: List[Rollback], days: int = 30,
                   until: Optional[float] = None) -> dict:
    """The numbers of the report: totals, success rate, durations, MTTR, breakdowns, daily trend."""
    counted = [r for r in rollbacks if r.outcome != "plan"]
    finished = [r for r in counted if r.outcome in FINISHED]
    durations = [d for d in (r.duration for r in finished) if d is not None]
    recoveries = [t for t in (r.time_to_recover for r in counted) if t is not None]
    detections = [t for t in (r.time_to_detect for r in counted) if t is not None]
    counts = _counts(counted)
    last = counted[-1] if counted else None
    ended = [r for r in finished if r.ended is not None]
    return {
        "rollbacks": counts,
        "plans": len(rollbacks) - len(counted),
        "success_rate": round_or_none(counts["success"] / len(finished), 4) if finished else None,
        "duration": {
            "count": len(durations), "sum": round_or_none(sum(durations)), "avg": round_or_none(_mean(durations)),
            "min": round_or_none(min(durations)) if durations else None, "max": round_or_none(max(durations)) if durations else None,
            "quantiles": {str(q): round_or_none(quantile(durations, q)) for q in QUANTILES},
        },
        "mttr_seconds": round_or_none(_mean(recoveries)),
        "mttr_count": len(recoveries),
        "mean_time_to_detect_seconds": round_or_none(_mean(detections)),
        "by_trigger": _breakdown(counted, lambda r: [r.trigger]),
        "by_reason": _breakdown(counted, causes),
        "by_layer": _by_layer(counted),
        "daily": _daily(counted, days, until),
        "last": last.as_dict() if last else None,
        "last_finished_epoch": max(r.ended for r in ended) if ended else None,
        "last_success_epoch": max((r.ended for r in ended if r.outcome == "success"), default=None),
        "last_duration": round_or_none(max(ended, key=lambda r: r.ended).duration) if ended else None,
        "drills": _counts(drills),
        "drill_rollbacks": _counts([r for d in drills for r in d.rollbacks if r.outcome != "plan"]),
        "drill_runs": [d.as_dict() for d in drills],
        "runs": [r.as_dict() for r in counted],
    }


def analyze(records: List[dict], days: int = 30) -> Tuple[List[Rollback], List[Rollback], dict]:
    """Return (rollbacks, drills, summary) for the audit records."""
    rollbacks, drills = build_rollbacks(records)
    epochs = [e for e in (record_epoch(r) for r in records) if e is not None]
    summary = summarize_runs(rollbacks, drills, days, max(epochs) if epochs else None)
    summary["records"] = len(records)
    summary["first_record"] = iso(min(epochs)) if epochs else None
    summary["last_record"] = iso(max(epochs)) if epochs else None
    return rollbacks, drills, summary


def select_run(rollbacks: List[Rollback], run_id: Optional[str] = None) -> Optional[Rollback]:
    """The rollback named by run id (its own or its guard's), else the latest one that ran."""
    if run_id:
        for rollback in rollbacks:
            if run_id in (rollback.run_id, rollback.guard_run_id):
                return rollback
        known = ", ".join(r.run_id for r in rollbacks[-10:]) or "none"
        raise ReportError("Run %r is not a rollback in the audit log (latest: %s). Give one of those as run_id, "
                          "or leave run_id out for the latest rollback." % (run_id, known))
    ran = [r for r in rollbacks if r.outcome in ("success", "failed", "incomplete")]
    return ran[-1] if ran else None
