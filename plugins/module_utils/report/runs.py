# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run of the audit log as the report sees it: :class:`Rollback` (outcome, timeline, layers, detection and
recovery times, drill rounds), read from its records; :func:`read_log` reads the log (``controller.auditchain`` checks its
hash chain). How the log is read and how runs are joined: ``report.analytics``. Standard library only.
"""

from __future__ import annotations

import math
import os
import re
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

from ..controller import auditchain
from .text import clip

OUTCOMES = ("success", "failed", "refused", "incomplete")
FINISHED = ("success", "failed")
LAYER_ORDER = ("flags", "traffic", "release", "config", "database", "infrastructure", "services")
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

    A damaged line is not a record, and the integrity (``auditchain.Verification.as_dict``) names it.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise ReportError(
            "The audit log %s does not exist. Rollbacks write it (gitops_rollback_audit_log, "
            "rollback_audit_log, guard_audit_log_path); give the path they use as log_path." % path)
    verification = auditchain.verify(path)
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


def as_number(value: Any) -> Optional[float]:
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
    started, seconds = parse_time(measurements.get("started")), as_number(measurements.get("detection_seconds"))
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
                    number = as_number(seconds)
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
            number = as_number(value)
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
        seconds = as_number(dict_or_empty(self.measurements).get("detection_seconds"))
        return seconds if seconds is not None else None

    @property
    def layer_names(self) -> List[str]:
        """Layers rolled back on any host, in rollback order."""
        names = {layer for timings in self.layers.values() for layer in timings}
        return sorted(names, key=layer_key)

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
            measured = dict_or_empty(self.measurements)
            # the dr round: the recovery point (age of the newest replicated checkpoint) and time (rebuild)
            data["rpo_seconds"] = round_or_none(as_number(measured.get("rpo_seconds")))
            data["rto_seconds"] = round_or_none(as_number(measured.get("rto_seconds")))
        return data


def layer_key(layer: str) -> Tuple[int, str]:
    return (LAYER_ORDER.index(layer) if layer in LAYER_ORDER else len(LAYER_ORDER), layer)


def round_or_none(value: Optional[float], digits: int = 3) -> Optional[float]:
    """Return ``value`` rounded to ``digits``; None stays None."""
    return None if value is None else round(value, digits)


def iso(epoch: Optional[float]) -> Optional[str]:
    """Return an epoch as ISO 8601 UTC text (seconds), None for None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
