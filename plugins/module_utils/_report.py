# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollback analytics from the audit log, and the report files drawn from them.

Records in, numbers and text out: :func:`analyze` turns audit records into :class:`Rollback`
entries and a summary; :func:`render_html`, :func:`render_prometheus` and
:func:`render_postmortem` draw them; :func:`write_reports` does it all for a log file.
Standard library only and no relative imports, so a command line can load this file on its own
(with ``_auditchain.py`` beside it, which checks the log's hash chain).

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

import html
import importlib.util
import json
import math
import os
import re
import secrets
import sys
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any, Dict, Iterable, List, Optional, Tuple


def _sibling(name: str) -> ModuleType:
    """Load ``<name>.py`` from this file's directory (when this file was loaded on its own)."""
    qualified = "gitops_rollback_report_" + name.lstrip("_")
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, os.path.join(os.path.dirname(__file__), name + ".py"))
        if spec is None or spec.loader is None:
            raise ImportError("%s.py is missing beside %s" % (name, __file__))
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
    return sys.modules[qualified]


try:
    from ansible_collections.gitops.rollback.plugins.module_utils import _auditchain
except ImportError:  # loaded on its own by tools/rollback_report.py
    _auditchain = _sibling("_auditchain")

OUTCOMES = ("success", "failed", "refused", "incomplete")
FINISHED = ("success", "failed")
LAYER_ORDER = ("traffic", "release", "config", "database", "infrastructure", "services")
COLORS = {"success": "#2e7d32", "failed": "#c62828", "refused": "#ef6c00", "incomplete": "#757575",
          "plan": "#1565c0", "detected": "#6a1b9a", "started": "#1565c0", "progress": "#90a4ae",
          "completed": "#2e7d32", "alert": "#ad1457"}
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
RUN_ID_PLACEHOLDER = "{run_id}"


class ReportError(Exception):
    """A report cannot be made; the message names the input and the way out."""


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

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


def _as_dict(value: Any) -> dict:
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
    result, measurements = _as_dict(record.get("result")), _as_dict(record.get("measurements"))
    for value in (result.get("detected_at"), measurements.get("detected_at"), result.get("detected"),
                  measurements.get("detected")):
        epoch = parse_time(value)
        if epoch is not None:
            return epoch
    started, seconds = parse_time(measurements.get("started")), _number(measurements.get("detection_seconds"))
    if started is not None and seconds is not None:
        return started + seconds
    return None


# ---------------------------------------------------------------------------------------------
# Analytics
# ---------------------------------------------------------------------------------------------

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
        self.who = _as_dict(self._first("who"))
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
        final_result = _as_dict(self.final.get("result")) if self.final else {}
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
            for host, timings in _as_dict(record.get("layers")).items():
                for layer, seconds in _as_dict(timings).items():
                    number = _number(seconds)
                    if number is not None:
                        self.layers.setdefault(str(host), {})[str(layer)] = number
            result = _as_dict(record.get("result"))
            for host, changed in _as_dict(result.get("changed_layers")).items():
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
        for value in (self.final.get("duration"), _as_dict(self.final.get("result")).get("seconds")):
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
        seconds = _number(_as_dict(self.measurements).get("detection_seconds"))
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
            if record.get("event") == "failed" and _as_dict(record.get("result")).get("host"):
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
            for value in (record.get("drill"), _as_dict(record.get("measurements")).get("drill")):
                if isinstance(value, str) and value:
                    return value
        return None

    def problems(self) -> List[str]:
        """The problem texts of a failed or refused run: per host and layer, else the final record's reason."""
        texts = [str(f.get("problem", "")) for f in self.failures if f.get("problem")]
        if self.outcome == "refused":
            for host_problems in _as_dict(self.refusal).values():
                for problem in host_problems if isinstance(host_problems, list) else []:
                    if isinstance(problem, dict) and problem.get("problem"):
                        texts.append(str(problem["problem"]))
        if not texts and self.outcome in ("failed", "refused") and self.final is not None:
            if self.final.get("reason"):
                texts.append(str(self.final["reason"]))
        return texts

    def round_of_drill(self, drill: "Rollback") -> Optional[dict]:
        """The drill's measurement of the round this rollback was, or None when the drill did not measure it."""
        rounds = _as_dict(_as_dict(drill.measurements).get("rounds"))
        for name, measured in rounds.items():
            measured = _as_dict(measured)
            if measured.get("rollback_run_id") == self.run_id or self.run_id == "%s-%s" % (drill.run_id, name):
                return measured
        return None

    def as_dict(self) -> dict:
        """A JSON-ready summary of the rollback."""
        data = {
            "run_id": self.run_id, "operation": self.operation, "target": self.target,
            "trigger": self.trigger, "reason": self.reason, "outcome": self.outcome,
            "started": iso(self.started), "ended": iso(self.ended), "detected": iso(self.detected),
            "duration": _round(self.duration), "time_to_recover": _round(self.time_to_recover),
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


def _round(value: Optional[float], digits: int = 3) -> Optional[float]:
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
    problems = _number(_as_dict(measured).get("problems")) if measured is not None else None
    if problems:
        rollback.outcome = "failed"
        rollback.note = "the drill's verification found %d problem(s) after this rollback" % problems
    elif drill.outcome == "failed" and measured is None:
        rollback.outcome = "failed"
        rollback.note = "the drill failed before it verified this rollback: %s" % _clip(drill.problems()[0], 200) \
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
        row = {"name": layer, "changed": len(changed), "avg_seconds": _round(_mean(seconds))}
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
        for value in (record.get("cause"), _as_dict(record.get("result")).get("cause")):
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
            cause = classify(text) or _clip(text, 80)
            if cause not in found:
                found.append(cause)
    if not found:
        reason = " ".join((rollback.reason or "").split())
        cause = classify(reason) if (rollback.trigger == "guard" or rollback.operation == "guard") else None
        found.append(cause or (_clip(reason, 80) if reason else NO_REASON))
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
        "success_rate": _round(counts["success"] / len(finished), 4) if finished else None,
        "duration": {
            "count": len(durations), "sum": _round(sum(durations)), "avg": _round(_mean(durations)),
            "min": _round(min(durations)) if durations else None, "max": _round(max(durations)) if durations else None,
            "quantiles": {str(q): _round(quantile(durations, q)) for q in QUANTILES},
        },
        "mttr_seconds": _round(_mean(recoveries)),
        "mttr_count": len(recoveries),
        "mean_time_to_detect_seconds": _round(_mean(detections)),
        "by_trigger": _breakdown(counted, lambda r: [r.trigger]),
        "by_reason": _breakdown(counted, causes),
        "by_layer": _by_layer(counted),
        "daily": _daily(counted, days, until),
        "last": last.as_dict() if last else None,
        "last_finished_epoch": max(r.ended for r in ended) if ended else None,
        "last_success_epoch": max((r.ended for r in ended if r.outcome == "success"), default=None),
        "last_duration": _round(max(ended, key=lambda r: r.ended).duration) if ended else None,
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


# ---------------------------------------------------------------------------------------------
# Text helpers
# ---------------------------------------------------------------------------------------------

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


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------------
# Inline SVG charts
# ---------------------------------------------------------------------------------------------

def svg_bar_chart(rows: List[dict], title: str, width: int = 560, limit: int = 12) -> str:
    """Horizontal bars stacked by outcome, one row per name (rows from the summary's breakdowns)."""
    rows = rows[:limit]
    label_w, bar_h, gap, top = 190, 20, 8, 28
    height = top + max(len(rows), 1) * (bar_h + gap) + 24
    scale_max = max([row["total"] for row in rows] + [1])
    plot_w = width - label_w - 50
    parts = [_svg_open(width, height, title), '<text x="0" y="16" class="t">%s</text>' % _e(title)]
    if not rows:
        parts.append('<text x="0" y="%d" class="m">no rollbacks</text>' % (top + 14))
    for index, row in enumerate(rows):
        y = top + index * (bar_h + gap)
        label = row["name"] if len(row["name"]) <= 30 else row["name"][:28] + "..."
        parts.append('<text x="%d" y="%d" class="l" text-anchor="end"><title>%s</title>%s</text>'
                     % (label_w - 6, y + 14, _e(row["name"]), _e(label)))
        x = float(label_w)
        for outcome in OUTCOMES:
            count = row.get(outcome, 0)
            if not count:
                continue
            w = plot_w * count / scale_max
            tip = "%s: %d %s" % (_e(row["name"]), count, outcome)
            parts.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" class="bar bar-%s">'
                         '<title>%s</title></rect>' % (x, y, w, bar_h, COLORS[outcome], outcome, tip))
            x += w
        parts.append('<text x="%.1f" y="%d" class="v">%d</text>' % (x + 4, y + 14, row["total"]))
    parts.append(_svg_legend(10, height - 8))
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, title: str) -> str:
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
            'aria-label="%s">' % (width, height, width, height, _e(title)))


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
                         % (x + bar_w / 2, height - bottom + 16, _e(day["date"][5:])))
        base = float(top + plot_h)
        for outcome in OUTCOMES:
            count = day.get(outcome, 0)
            if not count:
                continue
            h = plot_h * count / peak
            base -= h
            parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" class="bar bar-%s">'
                         '<title>%s: %d %s</title></rect>' % (x, base, bar_w, h, COLORS[outcome], outcome,
                                                              _e(day["date"]), count, outcome))
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
    parts = [_svg_open(width, height, title), '<text x="0" y="16" class="t">%s</text>' % _e(title)]
    axis_y = top + len(entries) * row_h + 4
    parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>' % (left, axis_y, left + plot_w, axis_y))
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        x = left + plot_w * fraction
        parts.append('<text x="%.1f" y="%d" class="m" text-anchor="middle">+%s</text>'
                     % (x, axis_y + 16, _e(format_seconds(span * fraction))))
    for index, entry in enumerate(entries):
        y = top + index * row_h + 10
        x = left + plot_w * entry["offset"] / span
        color = COLORS.get(entry["event"], "#455a64")
        if entry["event"] == "failed":
            color = COLORS["failed"]
        parts.append('<line x1="%d" y1="%d" x2="%.1f" y2="%d" class="grid"/>' % (left, y, x, y))
        parts.append('<circle cx="%.1f" cy="%d" r="5" fill="%s" class="ev ev-%s"><title>%s</title></circle>'
                     % (x, y, color, _e(entry["event"]), _e(entry["time"])))
        parts.append('<text x="%d" y="%d" class="m" text-anchor="end">+%s</text>'
                     % (left - 6, y + 4, _e(format_seconds(entry["offset"]))))
        text = "%s %s: %s" % (entry["operation"], entry["event"], entry["text"])
        parts.append('<text x="%d" y="%d" class="l">%s</text>' % (left + plot_w + 12, y + 4, _e(_clip(text, 70))))
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str, size: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[:size - 3] + "..."


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

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
             "<title>%s</title><style>%s</style></head><body>" % (_e(title), _CSS),
             "<h1>%s</h1>" % _e(title),
             '<div class="sub">From %s: %d records, %s to %s. Times in UTC.</div>'
             % (_e(source or "the audit log"), summary["records"], _e(summary["first_record"] or "-"),
                _e(summary["last_record"] or "-")),
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
        return '<div id="integrity" class="sub">Audit log hash chain intact (%s).</div>' % _e(integrity["summary"])
    items = "".join("<li>%s</li>" % _e(p["message"]) for p in integrity["problems"][:50])
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
    body = "".join('<div class="kpi" id="%s"><b>%s</b><span>%s</span></div>' % (key, _e(value), _e(label))
                   for key, value, label in tiles)
    return '<div class="kpis">%s</div>' % body


def _html_layer_table(rows: List[dict]) -> str:
    if not rows:
        return ""
    body = "".join('<tr><td>%s</td><td class="num">%d</td><td class="num">%d</td><td class="num">%s</td></tr>'
                   % (_e(r["name"]), r["total"], r["changed"], _e(format_seconds(r["avg_seconds"]))) for r in rows)
    return ('<table id="layers"><tr><th>layer</th><th>rollbacks</th><th>changed something</th>'
            '<th>average seconds (slowest host)</th></tr>%s</table>' % body)


def _html_runs_table(rollbacks: List[Rollback]) -> str:
    rows = []
    for r in reversed(rollbacks):
        rows.append('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td class="o-%s">%s</td><td class="num">%s</td>'
                    '<td class="num">%s</td><td>%s</td><td>%s</td></tr>'
                    % (_e(iso(r.started) or "-"), _e(r.run_id), _e(r.target), _e(r.trigger), r.outcome, r.outcome,
                       _e(format_seconds(r.duration)), _e(format_seconds(r.time_to_recover)),
                       _e(", ".join(r.layer_names) or "-"), _e(_clip(r.reason, 60) or "-")))
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
            _e(r["run_id"]), _e(r["trigger"]), _e(r["outcome"]), _e(r["outcome"]),
            (", recovered in %s" % _e(format_seconds(r["time_to_recover"]))) if r.get("time_to_recover") else "",
            (" - %s" % _e(r["note"])) if r.get("note") else "") for r in drill.get("rollbacks", []))
        rows.append('<tr><td>%s</td><td>%s</td><td class="o-%s">%s</td><td class="num">%s</td><td><ul>%s</ul></td>'
                    '<td>%s</td></tr>' % (_e(drill["started"] or "-"), _e(drill["run_id"]), _e(drill["outcome"]),
                                          _e(drill["outcome"]), _e(format_seconds(drill["duration"])), rollbacks,
                                          _e(", ".join(drill.get("causes") or []))))
    return ('<div id="drills"><div class="sub">Drills and their rollbacks are not counted in the figures above '
            '(%d drill rollbacks: %d succeeded, %d failed).</div><table><tr><th>started</th><th>drill</th>'
            '<th>outcome</th><th>duration</th><th>rollbacks</th><th>cause</th></tr>%s</table></div>'
            % (counts.get("total", 0), counts.get("success", 0), counts.get("failed", 0), "".join(rows)))


def _html_run_details(rollback: Rollback, open_: bool) -> str:
    parts = ['<details%s id="run-%s"><summary><b>%s</b> to %s: <span class="o-%s">%s</span> (%s, %s)</summary>'
             % (" open" if open_ else "", _e(rollback.run_id), _e(rollback.run_id), _e(rollback.target or "?"),
                rollback.outcome, rollback.outcome, _e(rollback.trigger), _e(format_seconds(rollback.duration))),
             svg_timeline(rollback)]
    if rollback.layers:
        layers = rollback.layer_names
        head = "".join("<th>%s</th>" % _e(layer) for layer in layers)
        body = "".join("<tr><td>%s</td>%s</tr>" % (_e(host), "".join(
            '<td class="num">%s</td>' % _e(format_seconds(timings.get(layer))) for layer in layers))
            for host, timings in sorted(rollback.layers.items()))
        parts.append("<table><tr><th>host</th>%s</tr>%s</table>" % (head, body))
    for failure in rollback.failures:
        parts.append('<p class="o-failed">%s failed at the %s layer (%s): %s; back to the safety checkpoint: %s</p>'
                     % (_e(failure.get("host")), _e(failure.get("layer", "?")), _e(failure.get("task", "?")),
                        _e(failure.get("problem", "?")), _e(failure.get("recovered_to_safety_checkpoint", "?"))))
    if rollback.refusal:
        parts.append("<p>Refused by the pre-flight:</p><pre>%s</pre>" % _e(_json_text(rollback.refusal)))
    if rollback.measurements:
        parts.append("<p>Measurements:</p><pre>%s</pre>" % _e(_json_text(rollback.measurements)))
    parts.append("</details>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Prometheus text exposition (node_exporter textfile collector)
# ---------------------------------------------------------------------------------------------

def _label_value(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, value: Optional[float], labels: Optional[Dict[str, str]] = None) -> str:
    label_text = ""
    if labels:
        label_text = "{%s}" % ",".join('%s="%s"' % (k, _label_value(v)) for k, v in sorted(labels.items()))
    if value is None:
        value = float("nan")
    if isinstance(value, float) and math.isnan(value):
        number = "NaN"
    elif float(value).is_integer():
        number = "%d" % value
    else:
        number = repr(round(float(value), 6))
    return "%s%s %s" % (name, label_text, number)


def _family(name: str, kind: str, help_text: str, samples: List[str]) -> List[str]:
    return ["# HELP %s %s" % (name, help_text), "# TYPE %s %s" % (name, kind)] + samples


def render_prometheus(summary: dict, prefix: str = "gitops_rollback") -> str:
    """The summary as Prometheus text exposition (format 0.0.4), for node_exporter's textfile collector."""
    p = prefix
    triggers = sorted({row["name"] for row in summary["by_trigger"]} | {"manual"})
    by_trigger = {row["name"]: row for row in summary["by_trigger"]}
    totals = [_sample(p + "_rollbacks_total", by_trigger.get(t, {}).get(o, 0), {"result": o, "trigger": t})
              for t in triggers for o in OUTCOMES]
    duration = summary["duration"]
    quantiles = [_sample(p + "_duration_seconds", duration["quantiles"][str(q)], {"quantile": str(q)})
                 for q in QUANTILES]
    layers = [_sample(p + "_layer_rollbacks_total", row["total"], {"layer": row["name"]}) for row in summary["by_layer"]]
    layer_seconds = [_sample(p + "_layer_duration_seconds_avg", row["avg_seconds"], {"layer": row["name"]})
                     for row in summary["by_layer"] if row["avg_seconds"] is not None]
    drills = [_sample(p + "_drills_total", summary["drills"][o], {"result": o}) for o in OUTCOMES]
    drill_rollbacks = [_sample(p + "_drill_rollbacks_total", summary["drill_rollbacks"][o], {"result": o})
                       for o in OUTCOMES]
    lines: List[str] = []
    lines += _family(p + "_rollbacks_total", "counter", "Rollbacks recorded in the audit log, by result and trigger.",
                     totals)
    lines += _family(p + "_failures_total", "counter", "Rollbacks that failed on at least one host.",
                     [_sample(p + "_failures_total", summary["rollbacks"]["failed"])])
    lines += _family(p + "_success_ratio", "gauge", "Succeeded rollbacks over finished (succeeded + failed) ones.",
                     [_sample(p + "_success_ratio", summary["success_rate"])])
    lines += _family(p + "_duration_seconds", "summary", "Duration of finished rollbacks.",
                     quantiles + [_sample(p + "_duration_seconds_sum", duration["sum"] or 0),
                                  _sample(p + "_duration_seconds_count", duration["count"])])
    lines += _family(p + "_duration_seconds_avg", "gauge", "Average duration of finished rollbacks.",
                     [_sample(p + "_duration_seconds_avg", duration["avg"])])
    lines += _family(p + "_last_duration_seconds", "gauge", "Duration of the last finished rollback.",
                     [_sample(p + "_last_duration_seconds", summary["last_duration"])])
    lines += _family(p + "_last_timestamp_seconds", "gauge", "End time of the last finished rollback (Unix time).",
                     [_sample(p + "_last_timestamp_seconds", _round(summary["last_finished_epoch"]))])
    lines += _family(p + "_last_success_timestamp_seconds", "gauge",
                     "End time of the last succeeded rollback (Unix time).",
                     [_sample(p + "_last_success_timestamp_seconds", _round(summary["last_success_epoch"]))])
    lines += _family(p + "_mttr_seconds", "gauge",
                     "Mean time to recover: detection (or start) to completed rollback, over succeeded rollbacks.",
                     [_sample(p + "_mttr_seconds", summary["mttr_seconds"])])
    lines += _family(p + "_mean_time_to_detect_seconds", "gauge",
                     "Mean seconds the health gate took to detect a breach, over guard-triggered rollbacks.",
                     [_sample(p + "_mean_time_to_detect_seconds", summary["mean_time_to_detect_seconds"])])
    if layers:
        lines += _family(p + "_layer_rollbacks_total", "counter", "Rollbacks that rolled back the layer.", layers)
    if layer_seconds:
        lines += _family(p + "_layer_duration_seconds_avg", "gauge", "Average seconds of the layer (slowest host).",
                         layer_seconds)
    lines += _family(p + "_drills_total", "counter", "Rollback drills, by result.", drills)
    lines += _family(p + "_drill_rollbacks_total", "counter",
                     "Rollbacks made by drills (not in the other figures), by result.", drill_rollbacks)
    integrity = summary.get("integrity")
    if integrity:
        lines += _family(p + "_audit_log_intact", "gauge",
                         "1 when every audit record chains to the one before it and the head file agrees, else 0.",
                         [_sample(p + "_audit_log_intact", 1 if integrity["ok"] else 0)])
        lines += _family(p + "_audit_log_problems", "gauge", "Altered, missing or damaged audit records.",
                         [_sample(p + "_audit_log_problems", integrity["problem_count"])])
    return "\n".join(lines) + "\n"


def parse_prometheus(text: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    """Read simple text exposition back: {(name, ((label, value), ...)): value} (for tests and tools)."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, labels = head, ()
        if "{" in head:
            name, rest = head.split("{", 1)
            pairs = [item.split("=", 1) for item in rest.rstrip("}").split('",') if item]
            labels = tuple(sorted((k, v.strip('"')) for k, v in pairs))
        samples[(name, labels)] = float(value)
    return samples


# ---------------------------------------------------------------------------------------------
# Post-mortem draft (Markdown)
# ---------------------------------------------------------------------------------------------

def _md_cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|") if value not in (None, "") else "-"


def render_postmortem(rollback: Optional[Rollback], summary: dict) -> str:
    """A post-mortem draft: facts from the log prefilled, blank sections for what people must add."""
    if rollback is None:
        return ("# Post-mortem draft\n\nThe audit log holds no rollback yet (%d records). Nothing to write up.\n"
                % summary["records"])
    r = rollback
    who = r.who.get("user", "-")
    if r.who.get("awx_job_id"):
        who += " (AWX job %s%s)" % (r.who["awx_job_id"],
                                    ", launched by " + r.who["awx_launcher"] if r.who.get("awx_launcher") else "")
    lines = ["# Post-mortem: rollback to %s on %s" % (r.target or "?", (iso(r.started) or "?")[:10]), "",
             "<!-- Draft written by gitops.rollback.rollback_report from the audit log (run %s). "
             "The facts below come from the log; fill in the sections marked TODO. -->" % r.run_id, "",
             "## Summary", "", "| | |", "|---|---|"]
    facts = [("Run", r.run_id), ("Guard run", r.guard_run_id), ("Target (rolled back to)", r.target),
             ("Outcome", r.outcome), ("Trigger", r.trigger), ("Reason", r.reason), ("Started by", who),
             ("Hosts", ", ".join(r.hosts)), ("Detected", iso(r.detected)), ("Rollback started", iso(r.started)),
             ("Rollback ended", iso(r.ended)), ("Duration", format_seconds(r.duration)),
             ("Time to recover (detection to completed)", format_seconds(r.time_to_recover)),
             ("Time to detect (health gate)", format_seconds(r.time_to_detect))]
    lines += ["| %s | %s |" % (name, _md_cell(value)) for name, value in facts]
    lines += ["", "## Timeline (UTC)", "", "| time | + | source | event | what |", "|---|---|---|---|---|"]
    lines += ["| %s | %s | %s | %s | %s |" % (e["time"], format_seconds(e["offset"]), e["operation"], e["event"],
                                              _md_cell(e["text"])) for e in r.timeline()]
    lines += ["", "## Trigger and measurements", "",
              "Triggered by **%s**%s." % (r.trigger, ": " + _md_cell(r.reason) if r.reason else "")]
    lines += _md_measurements(r.measurements)
    lines += ["", "## Layers rolled back", ""]
    lines += _md_layers(r)
    if r.failures:
        lines += ["", "## Failures", ""]
        lines += ["- %s failed at the %s layer (task %s): %s. Back to the safety checkpoint: %s."
                  % (f.get("host"), f.get("layer", "?"), f.get("task", "?"), _md_cell(f.get("problem")),
                     f.get("recovered_to_safety_checkpoint", "?")) for f in r.failures]
    lines += ["", "## Impact", "", "TODO: who was affected, how long, what they saw (error rate, latency, downtime).",
              "", "## Root cause", "", "TODO: what in the release caused the breach, and why it was not caught before.",
              "", "## What went well", "", "TODO", "", "## What went wrong", "", "TODO", "",
              "## Action items", "", "| action | owner | due | ticket |", "|---|---|---|---|", "| TODO | | | |", "",
              "## Context", "", _md_context(summary), ""]
    return "\n".join(lines)


def _md_context(summary: dict) -> str:
    counts = summary["rollbacks"]
    numbers = (counts["total"], counts["success"], counts["failed"], counts["refused"],
               format_rate(summary["success_rate"]), format_seconds(summary["mttr_seconds"]))
    text = ("All rollbacks in the log: %d (%d succeeded, %d failed, %d refused); success rate %s; "
            "mean time to recover %s." % numbers)
    integrity = summary.get("integrity")
    if integrity:
        text += " Audit log: %s" % _md_cell(integrity["summary"])
    return text


def _md_measurements(measurements: Any) -> List[str]:
    if not measurements:
        return ["", "No measurements were recorded (a manual rollback, or the guard recorded none)."]
    lines = [""]
    metrics = _as_dict(measurements).get("metrics")
    if isinstance(metrics, list) and metrics and all(isinstance(m, dict) for m in metrics):
        lines += ["| metric | phase | why | values measured |", "|---|---|---|---|"]
        for metric in metrics:
            values = [m.get("value") for m in metric.get("measurements") or [] if isinstance(m, dict)]
            if not values and "value" in metric:
                values = [metric["value"]]
            shown = _clip(", ".join("-" if v is None else str(v) for v in values), 120)
            lines.append("| %s | %s | %s | %s |" % (
                _md_cell(metric.get("name")), _md_cell(metric.get("phase", metric.get("verdict"))),
                _md_cell(metric.get("reason")), _md_cell(shown)))
        lines.append("")
    lines += ["```json", _json_text(measurements), "```"]
    return lines


def _md_layers(rollback: Rollback) -> List[str]:
    if not rollback.layers:
        return ["No layer timings were recorded (the run was refused or stopped before the layers)."]
    layers = rollback.layer_names
    lines = ["Seconds per host and layer, in rollback order; * marks a layer that changed something.", "",
             "| host | %s |" % " | ".join(layers), "|---|%s" % ("---|" * len(layers))]
    for host, timings in sorted(rollback.layers.items()):
        changed = rollback.changed_layers.get(host, [])
        cells = ["%s%s" % (format_seconds(timings.get(layer)) if layer in timings else "-",
                           " *" if layer in changed else "") for layer in layers]
        lines.append("| %s | %s |" % (host, " | ".join(cells)))
    return lines


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Write text via a temporary file in the same directory, fsync and rename (readers never see half)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, ".%s.tmp-%s" % (os.path.basename(path), secrets.token_hex(4)))
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.rename(temp, path)
    except OSError:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def plan_file(path: str, text: str, keep_edits: bool = False) -> dict:
    """What writing ``text`` to ``path`` would do: {path, changed, kept, before}."""
    before = _read_text(path)
    kept = keep_edits and before is not None and before != text
    return {"path": path, "changed": before != text and not kept, "kept": kept, "before": before}


def write_reports(log_path: str, html_path: Optional[str] = None, prom_path: Optional[str] = None,
                  postmortem_path: Optional[str] = None, run_id: Optional[str] = None, days: int = 30,
                  title: str = "Rollback report", postmortem_overwrite: bool = False, check: bool = False,
                  max_runs: int = 20) -> dict:
    """Read the log, compute the summary and write the asked files; in check mode only say what would change.

    Files are rewritten only when their content differs. A post-mortem draft that exists with other
    content (someone edited it) is kept unless ``postmortem_overwrite``. ``{run_id}`` in
    ``postmortem_path`` is replaced by the run's id.
    """
    records, integrity = read_log(log_path)
    rollbacks, drills, summary = analyze(records, days)
    summary["integrity"] = integrity
    files: Dict[str, dict] = {}
    texts: Dict[str, str] = {}
    chosen = None
    if html_path:
        texts["html"] = render_html(rollbacks, summary, title, os.path.expanduser(log_path), max_runs)
        files["html"] = plan_file(os.path.expanduser(html_path), texts["html"])
    if prom_path:
        texts["prom"] = render_prometheus(summary)
        files["prom"] = plan_file(os.path.expanduser(prom_path), texts["prom"])
    if postmortem_path or run_id:  # a drill's rollback only when asked for by its id
        chosen = select_run(rollbacks + ([r for d in drills for r in d.rollbacks] if run_id else []), run_id)
    if postmortem_path:
        texts["postmortem"] = render_postmortem(chosen, summary)
        path = os.path.expanduser(postmortem_path).replace(RUN_ID_PLACEHOLDER, chosen.run_id if chosen else "none")
        files["postmortem"] = plan_file(path, texts["postmortem"], keep_edits=not postmortem_overwrite)
    if not check:
        for kind, planned in files.items():
            if planned["changed"]:
                write_atomically(planned["path"], texts[kind])
    summary = dict(summary)
    summary.pop("runs")
    return {"summary": summary, "files": files, "texts": texts,
            "rollback": chosen.as_dict() if chosen else None, "changed": any(f["changed"] for f in files.values())}
