# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollback analytics from the audit log: records in, numbers out.

:func:`read_log` reads the log (``_auditchain`` checks its hash chain); :func:`analyze` turns the
records into :class:`Rollback` entries and a summary, which the renderers draw
(``_report_html``, ``_report_prometheus``, ``_report_markdown``). Standard library only.

How the log is read (see ``_audit.py``): records are grouped by ``run_id``. A ``rollback`` run
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
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterable, List, Optional, Tuple

from . import _auditchain
from ._report_text import clip


OUTCOMES = ("success", "failed", "refused", "incomplete")
FINISHED = ("success", "failed")
LAYER_ORDER = ("traffic", "release", "config", "database", "infrastructure", "services")
QUANTILES = (0.5, 0.9, 0.99)
GUARD_LINK_SLACK = 2.0  # seconds of clock skew allowed when joining a guard run to its rollback run
# Causes of failures and refusals, found in the problem texts the engine writes (first match wins).
CAUSES = (
    ("missing checkpoint or label", r"\bis not in\b|\bnot found\b|\bhas no backup\b|\bholds no\b|\bno checkpoint\b"
                                    r"|\bunknown (checkpoint|label|tag)\b|\bno such (checkpoint|label|tag)\b"),
    ("corrupted object", r"corrupt|\bis damaged\b|does not hash|hashes to|does not match its objects"
                         r"|integrity check"),
    ("failed health gate", r"\b(health|batch) gate (fail|error|inconclusive)"),
    ("refused by the cooldown", r"\bcooldown\b"),
    ("refused by policy", r"refused by policy|\bnot allowed\b|\bapproval\b"),
    ("another rollback was running", r"while one runs|\block\b.*\bheld\b|\bis locked\b"),
    ("host unreachable", r"\bunreachable\b"),
    ("disk full", r"no space left"),
    ("Terraform state of another lineage", r"\blineage\b"),
    ("migration without a down script", r"\bdown script\b"),
)
NO_REASON = "(no reason given)"


class ReportError(Exception):
    """A report cannot be made; the message names the input and the way out."""


def read_log(path: str) -> Tuple[List[dict], dict]:
    """Return the records of an audit log and what checking its hash chain found.

    A damaged line is not a record, and the integrity (``_auditchain.Verification.as_dict``) names it.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise ReportError(
            "The audit log %s does not exist. Rollbacks write it (gitops_rollback_audit_log, "
            "rollback_audit_log, guard_audit_log_path); give the path they use as log_path." % path)
    verification = _auditchain.verify(path)
    return verification.records, verification.as_dict()


def parse_time(value: Any) -> Optional[float]:
    """Return epoch seconds from an epoch number or an ISO 8601 text; None when it is neither."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def record_epoch(record: dict) -> Optional[float]:
    """Return when a record was written (``epoch``, else ``time``)."""
    epoch = parse_time(record.get("epoch"))
    return epoch if epoch is not None else parse_time(record.get("time"))


def dict_or_empty(value: Any) -> dict:
    """Return ``value`` when it is a dict, else an empty one (log fields may hold anything)."""
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def detection_epoch(record: dict) -> Optional[float]:
    """Return when the problem was detected, as a guard record states it (several spellings)."""
    result, measurements = dict_or_empty(record.get("result")), dict_or_empty(record.get("measurements"))
    for value in (result.get("detected_at"), measurements.get("detected_at"), result.get("detected"),
                  measurements.get("detected")):
        epoch = parse_time(value)
        if epoch is not None:
            return epoch
    started, seconds = parse_time(measurements.get("started")), _number(measurements.get("detection_seconds"))
    if started is not None and seconds is not None:
        return started + seconds
    return None


class Rollback:
    """One rollback as the log tells it: what, why, how it ended, when, and per host and layer timings."""

    def __init__(self, run_id: str, operation: str, records: List[dict]) -> None:
        self.run_id = run_id
        self.operation = operation
        self.records = sorted(records, key=lambda r: record_epoch(r) or 0.0)
        self.guard_run_id: Optional[str] = None
        self.guard_records: List[dict] = []
        self.detected: Optional[float] = None
        self.measurements: Any = None
        self.reason = ""
        self.refusal: Any = None
        self.drill: Optional[str] = None  # the drill this run belongs to ("" when the drill is not in the log)
        self.note = ""  # why the report's outcome differs from what the run itself recorded
        self.rollbacks: List["Rollback"] = []  # a drill's rollbacks
        self._read()

    def _first(self, field: str, events: Tuple[str, ...] = ()) -> Any:
        for record in self.records:
            if (not events or record.get("event") in events) and record.get(field) not in (None, "", [], {}):
                return record[field]
        return None

    def _read(self) -> None:
        events = [r.get("event") for r in self.records]
        terminal = [r for r in self.records if r.get("event") in ("completed", "failed", "refused")]
        self.final = terminal[-1] if terminal else None
        self.target = str(self._first("target") or "")
        self.trigger = str(self._first("trigger") or "manual")
        self.reason = str(self._first("reason", ("started",)) or self._first("reason") or "")
        self.who = dict_or_empty(self._first("who"))
        self.measurements = self._first("measurements")
        self.started = next((record_epoch(r) for r in self.records if r.get("event") == "started"), None)
        if self.started is None and self.records:
            self.started = record_epoch(self.records[0])
        self.ended = record_epoch(self.final) if self.final else None
        self.detected = next((d for d in (detection_epoch(r) for r in self.records) if d is not None), None)
        if any(r.get("dry_run") is True for r in self.records):
            self.outcome = "plan"  # a dry run changed nothing, whatever it found: never a rollback
        elif "failed" in events:
            self.outcome = "failed"
        elif "completed" in events:
            self.outcome = "plan" if self._is_plan() else "success"
        elif "refused" in events:
            self.outcome = "refused"
            self.refusal = self._first("result", ("refused",))
        else:
            self.outcome = "incomplete"
        self._read_hosts_and_layers()

    def _is_plan(self) -> bool:
        final_result = dict_or_empty(self.final.get("result")) if self.final else {}
        if "check_mode" in final_result:
            return _truthy(final_result["check_mode"])
        started_message = str(self._first("message", ("started",)) or "")
        return started_message.startswith("plan")

    def _read_hosts_and_layers(self) -> None:
        hosts: List[str] = []
        self.layers: Dict[str, Dict[str, float]] = {}
        self.changed_layers: Dict[str, List[str]] = {}
        self.failures: List[dict] = []
        for record in self.records:
            for host in record.get("hosts") or []:
                if isinstance(host, str) and host not in hosts:
                    hosts.append(host)
            for host, timings in dict_or_empty(record.get("layers")).items():
                for layer, seconds in dict_or_empty(timings).items():
                    number = _number(seconds)
                    if number is not None:
                        self.layers.setdefault(str(host), {})[str(layer)] = number
            result = dict_or_empty(record.get("result"))
            for host, changed in dict_or_empty(result.get("changed_layers")).items():
                if isinstance(changed, list):
                    self.changed_layers[str(host)] = [str(layer) for layer in changed]
            if record.get("event") == "failed" and result.get("host"):
                self.failures.append(result)
        self.hosts = hosts

    @property
    def duration(self) -> Optional[float]:
        """Seconds from the start to the end: the final record's ``duration``/``result.seconds``, else the clock."""
        if self.final is None:
            return None
        for value in (self.final.get("duration"), dict_or_empty(self.final.get("result")).get("seconds")):
            number = _number(value)
            if number is not None:
                return number
        if self.started is not None and self.ended is not None:
            return max(self.ended - self.started, 0.0)
        return None

    @property
    def recovery_start(self) -> Optional[float]:
        """When the clock of time-to-recover starts: detection by the guard, else the rollback's start."""
        return self.detected if self.detected is not None else self.started

    @property
    def time_to_recover(self) -> Optional[float]:
        """Seconds from detection (or start) to the completed rollback; None unless it succeeded."""
        if self.outcome != "success" or self.ended is None or self.recovery_start is None:
            return None
        return max(self.ended - self.recovery_start, 0.0)

    @property
    def time_to_detect(self) -> Optional[float]:
        """Seconds the guard's evaluation took to detect the breach, when it says so."""
        seconds = _number(dict_or_empty(self.measurements).get("detection_seconds"))
        return seconds if seconds is not None else None

    @property
    def layer_names(self) -> List[str]:
        """Layers rolled back on any host, in rollback order."""
        names = {layer for timings in self.layers.values() for layer in timings}
        return sorted(names, key=_layer_key)

    def layer_seconds(self, layer: str) -> Optional[float]:
        """Seconds a layer took in this run (the slowest host)."""
        values = [timings[layer] for timings in self.layers.values() if layer in timings]
        return max(values) if values else None

    def timeline(self) -> List[dict]:
        """Events of the run and of its guard, in time order, each with seconds since the first."""
        entries = []
        if self.detected is not None:
            entries.append({"epoch": self.detected, "event": "detected", "operation": "guard",
                            "text": "breach detected by the health gate"})
        for record in self.guard_records + self.records:
            epoch = record_epoch(record)
            if epoch is None:
                continue
            text = record.get("message") or record.get("reason") or ""
            if record.get("event") == "failed" and dict_or_empty(record.get("result")).get("host"):
                failure = record["result"]
                text = "%s failed at the %s layer: %s" % (failure.get("host"), failure.get("layer", "?"),
                                                          failure.get("problem", "?"))
            entries.append({"epoch": epoch, "event": str(record.get("event", "?")),
                            "operation": str(record.get("operation", "?")), "text": str(text)})
        entries.sort(key=lambda e: e["epoch"])
        origin = entries[0]["epoch"] if entries else 0.0
        for entry in entries:
            entry["offset"] = round(entry["epoch"] - origin, 3)
            entry["time"] = iso(entry["epoch"])
        return entries

    def attach_guard(self, guard: "Rollback") -> None:
        """Join the guard run that started this rollback: its detection, reason and measurements."""
        self.guard_run_id = guard.run_id
        self.guard_records = guard.records
        if self.detected is None:
            self.detected = guard.detected
        if guard.measurements is not None and self.measurements is None:
            self.measurements = guard.measurements
        if guard.reason and not self.reason:
            self.reason = guard.reason
        if not self.target:
            self.target = guard.target

    def drill_label(self) -> Optional[str]:
        """The drill these records name (``measurements.drill`` or a ``drill`` field), else None."""
        for record in self.records + self.guard_records:
            for value in (record.get("drill"), dict_or_empty(record.get("measurements")).get("drill")):
                if isinstance(value, str) and value:
                    return value
        return None

    def problems(self) -> List[str]:
        """The problem texts of a failed or refused run: per host and layer, else the final record's reason."""
        texts = [str(f.get("problem", "")) for f in self.failures if f.get("problem")]
        if self.outcome == "refused":
            for host_problems in dict_or_empty(self.refusal).values():
                for problem in host_problems if isinstance(host_problems, list) else []:
                    if isinstance(problem, dict) and problem.get("problem"):
                        texts.append(str(problem["problem"]))
        if not texts and self.outcome in ("failed", "refused") and self.final is not None:
            if self.final.get("reason"):
                texts.append(str(self.final["reason"]))
        return texts

    def round_of_drill(self, drill: "Rollback") -> Optional[dict]:
        """The drill's measurement of the round this rollback was, or None when the drill did not measure it."""
        rounds = dict_or_empty(dict_or_empty(drill.measurements).get("rounds"))
        for name, measured in rounds.items():
            measured = dict_or_empty(measured)
            if measured.get("rollback_run_id") == self.run_id or self.run_id == "%s-%s" % (drill.run_id, name):
                return measured
        return None

    def as_dict(self) -> dict:
        """A JSON-ready summary of the rollback."""
        data = {
            "run_id": self.run_id, "operation": self.operation, "target": self.target,
            "trigger": self.trigger, "reason": self.reason, "outcome": self.outcome,
            "started": iso(self.started), "ended": iso(self.ended), "detected": iso(self.detected),
            "duration": round_or_none(self.duration), "time_to_recover": round_or_none(self.time_to_recover),
            "hosts": self.hosts, "layers": self.layer_names, "guard_run_id": self.guard_run_id,
            "who": self.who, "causes": causes(self),
        }
        if self.drill is not None:
            data["drill"] = self.drill
        if self.note:
            data["note"] = self.note
        if self.operation == "drill":
            data["rollbacks"] = [r.as_dict() for r in self.rollbacks]
        return data


def _layer_key(layer: str) -> Tuple[int, str]:
    return (LAYER_ORDER.index(layer) if layer in LAYER_ORDER else len(LAYER_ORDER), layer)


def round_or_none(value: Optional[float], digits: int = 3) -> Optional[float]:
    """Return ``value`` rounded to ``digits``; None stays None."""
    return None if value is None else round(value, digits)


def iso(epoch: Optional[float]) -> Optional[str]:
    """Return an epoch as ISO 8601 UTC text (seconds), None for None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def group_runs(records: Iterable[dict]) -> Dict[str, List[dict]]:
    """Group records by run id, in log order (as ``_audit.runs``)."""
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
    problems = _number(dict_or_empty(measured).get("problems")) if measured is not None else None
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
    for layer in sorted({layer for r in ran for layer in r.layer_names}, key=_layer_key):
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


def classify(text: str) -> Optional[str]:
    """The cause a problem or reason text names (see CAUSES), or None."""
    lowered = " ".join(str(text).split()).lower()
    for cause, pattern in CAUSES:
        if re.search(pattern, lowered):
            return cause
    return None


def _explicit_causes(rollback: Rollback) -> List[str]:
    found = []
    for record in rollback.records:
        for value in (record.get("cause"), dict_or_empty(record.get("result")).get("cause")):
            if isinstance(value, str) and value.strip() and value.strip() not in found:
                found.append(value.strip())
    return found


def causes(rollback: Rollback) -> List[str]:
    """Why the run ended as it did: its recorded cause, else the cause its problems name, else its reason.

    A failure's or refusal's own problem comes first (a run that failed on a corrupted object is
    counted under that, whatever reason it was started for); a run that ran is counted under the
    reason it was started for (a failed health gate for the guard's rollbacks).
    """
    found = _explicit_causes(rollback)
    if not found:
        for text in rollback.problems():
            cause = classify(text) or clip(text, 80)
            if cause not in found:
                found.append(cause)
    if not found:
        reason = " ".join((rollback.reason or "").split())
        cause = classify(reason) if (rollback.trigger == "guard" or rollback.operation == "guard") else None
        found.append(cause or (clip(reason, 80) if reason else NO_REASON))
    return found[:3]


def summarize(rollbacks: List[Rollback], drills: List[Rollback], days: int = 30,
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
    summary = summarize(rollbacks, drills, days, max(epochs) if epochs else None)
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
