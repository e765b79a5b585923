# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health analysis: metrics measured at intervals, judged like Argo Rollouts, summed into a verdict.

A measurement is ``successful``, ``failed``, ``inconclusive`` (no data, or neither condition
decides) or ``error`` (the provider could not be asked). A metric ends ``failed`` when its failed
measurements exceed ``failure_limit``, ``error`` when its consecutive errors exceed
``consecutive_error_limit``, ``inconclusive`` when its inconclusive measurements exceed
``inconclusive_limit`` (or when it measured nothing but inconclusive), else ``successful``.
The verdict over all metrics is ``fail``, ``error``, ``inconclusive`` or ``pass``; a metric that
measured no data never passes.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

try:
    from typing import Protocol
except ImportError:  # Python < 3.8 on a managed host: the protocol is documentation only
    Protocol = object  # type: ignore[assignment,misc]

from ..common.errors import RollbackError

SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR, RUNNING = "successful", "failed", "inconclusive", "error", "running"
PASS, FAIL = "pass", "fail"
SEVERITIES = ("critical", "high", "medium", "low")
_OPERATORS: Dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
}
_CONDITION = re.compile(r"^\s*(?:result\s*)?(<=|>=|==|!=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class HealthSpecError(RollbackError):
    """A health gate definition is invalid."""


class MeasurementError(RollbackError):
    """A provider could not be asked, or answered with an error."""


class NoData(RollbackError):
    """A provider answered, but with no value (empty result, NaN)."""


@dataclass(frozen=True)
class Condition:
    """A comparison of the measured value against a number: ``result < 0.05``."""

    operator: str
    threshold: float
    text: str

    def holds(self, value: float) -> bool:
        """Tell whether ``value`` satisfies the condition."""
        return _OPERATORS[self.operator](value, self.threshold)


def parse_condition(text: Optional[str], metric: str) -> Optional[Condition]:
    """Parse ``"result <= 0.05"`` (``result`` may be left out); None for an empty condition."""
    if text is None or not str(text).strip():
        return None
    match = _CONDITION.match(str(text))
    if not match:
        raise HealthSpecError(
            "Metric %r: condition %r is not understood. Write a comparison of the measured value "
            "with a number, e.g. 'result < 0.05' or '>= 0.99' (operators < <= > >= == !=)." % (metric, text))
    return Condition(match.group(1), float(match.group(2)), str(text).strip())


@dataclass
class MetricSpec:
    """What to measure and how to judge it."""

    name: str
    provider: dict
    success: Optional[Condition] = None
    failure: Optional[Condition] = None
    interval: float = 10.0
    count: int = 1
    initial_delay: float = 0.0
    failure_limit: int = 0
    consecutive_error_limit: int = 4
    inconclusive_limit: int = 0
    weight: float = 1.0
    severity: str = "medium"

    @classmethod
    def from_dict(cls, raw: dict, defaults: Optional[dict] = None) -> "MetricSpec":
        """Build a spec from module-style options, with ``defaults`` filling unset keys."""
        merged = dict(defaults or {})
        merged.update({key: value for key, value in raw.items() if value is not None})
        name = merged.get("name") or ""
        if not name:
            raise HealthSpecError("Every metric needs a name (metrics[].name).")
        spec = cls(
            name=name, provider=dict(merged.get("provider") or {}),
            success=parse_condition(merged.get("success_condition"), name),
            failure=parse_condition(merged.get("failure_condition"), name),
            interval=float(merged.get("interval", 10.0)), count=int(merged.get("count", 1)),
            initial_delay=float(merged.get("initial_delay", 0.0)),
            failure_limit=int(merged.get("failure_limit", 0)),
            consecutive_error_limit=int(merged.get("consecutive_error_limit", 4)),
            inconclusive_limit=int(merged.get("inconclusive_limit", 0)),
            weight=float(merged.get("weight", 1.0)), severity=str(merged.get("severity", "medium")),
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        """Refuse a spec that could never give a meaningful result."""
        problems = []
        if self.success is None and self.failure is None:
            problems.append("needs success_condition or failure_condition (or both)")
        if self.count < 1:
            problems.append("count must be at least 1")
        if self.interval < 0 or self.initial_delay < 0:
            problems.append("interval and initial_delay must not be negative")
        if min(self.failure_limit, self.consecutive_error_limit, self.inconclusive_limit) < 0:
            problems.append("limits must not be negative")
        if self.weight < 0:
            problems.append("weight must not be negative")
        if self.severity not in SEVERITIES:
            problems.append("severity must be one of %s" % ", ".join(SEVERITIES))
        if problems:
            raise HealthSpecError("Metric %r: %s." % (self.name, "; ".join(problems)))


@dataclass
class Measurement:
    """One measurement: when, the value (None without one), its outcome and why."""

    time: float
    outcome: str
    value: Optional[float] = None
    message: str = ""

    def as_dict(self) -> dict:
        return {"time": _iso(self.time), "timestamp": round(self.time, 3), "value": self.value,
                "outcome": self.outcome, "message": self.message}


@dataclass
class MetricRun:
    """The measurements of one metric so far and the phase they put it in."""

    spec: MetricSpec
    measurements: List[Measurement] = field(default_factory=list)
    phase: str = RUNNING
    reason: str = ""
    next_due: float = 0.0

    def counts(self) -> Dict[str, int]:
        """Measurements per outcome."""
        result = {SUCCESSFUL: 0, FAILED: 0, INCONCLUSIVE: 0, ERROR: 0}
        for item in self.measurements:
            result[item.outcome] += 1
        return result

    def consecutive_errors(self) -> int:
        """Errors at the end of the measurement list, in a row."""
        run = 0
        for item in reversed(self.measurements):
            if item.outcome != ERROR:
                break
            run += 1
        return run

    def add(self, measurement: Measurement) -> None:
        """Record a measurement and settle the phase as soon as the limits decide it."""
        self.measurements.append(measurement)
        self.phase, self.reason = judge_metric(self.spec, self.measurements)

    def as_dict(self) -> dict:
        counts = self.counts()
        return {"name": self.spec.name, "phase": self.phase, "reason": self.reason,
                "severity": self.spec.severity, "weight": self.spec.weight,
                "provider": self.spec.provider.get("type"), "counts": counts,
                "measurements": [item.as_dict() for item in self.measurements]}


def classify(spec: MetricSpec, value: float) -> str:
    """Outcome of a value (Argo Rollouts rules): failure condition first, then success condition."""
    if spec.failure is not None and spec.failure.holds(value):
        return FAILED
    if spec.success is not None:
        if spec.success.holds(value):
            return SUCCESSFUL
        return FAILED if spec.failure is None else INCONCLUSIVE
    return SUCCESSFUL


def judge_metric(spec: MetricSpec, measurements: Sequence[Measurement]) -> "tuple[str, str]":
    """Phase of a metric after ``measurements``; RUNNING while the limits do not decide yet."""
    counts = {SUCCESSFUL: 0, FAILED: 0, INCONCLUSIVE: 0, ERROR: 0}
    for item in measurements:
        counts[item.outcome] += 1
    streak = 0
    for item in reversed(measurements):
        if item.outcome != ERROR:
            break
        streak += 1
    if counts[FAILED] > spec.failure_limit:
        return FAILED, "%d failed measurement(s), more than failure_limit %d" % (counts[FAILED], spec.failure_limit)
    if streak > spec.consecutive_error_limit:
        return ERROR, "%d consecutive error(s), more than consecutive_error_limit %d (last: %s)" % (
            streak, spec.consecutive_error_limit, measurements[-1].message)
    if counts[INCONCLUSIVE] > spec.inconclusive_limit:
        return INCONCLUSIVE, "%d inconclusive measurement(s), more than inconclusive_limit %d" % (
            counts[INCONCLUSIVE], spec.inconclusive_limit)
    if len(measurements) < spec.count:
        return RUNNING, ""
    if counts[SUCCESSFUL] == 0:
        # Nothing but errors or no-data within the limits: never a pass.
        if counts[ERROR]:
            return ERROR, "no successful measurement: %d error(s), %d inconclusive" % (
                counts[ERROR], counts[INCONCLUSIVE])
        return INCONCLUSIVE, "no measurement had data"
    return SUCCESSFUL, "%d of %d measurement(s) successful" % (counts[SUCCESSFUL], len(measurements))


@dataclass
class Verdict:
    """The overall verdict with the metrics' health percentage and the reason."""

    verdict: str
    reason: str
    health: float
    metrics: List[dict]


def decide(runs: Sequence[MetricRun], threshold: float = 100.0, high_failures: int = 2,
           running_as_pass: bool = False) -> Verdict:
    """Sum the metric phases into a verdict.

    Order: a critical metric failed, ``high_failures`` high metrics failed, or the weighted health
    of the metrics that did not fail below ``threshold`` percent -> fail; any metric in error ->
    error; any inconclusive metric -> inconclusive; else pass. ``running_as_pass`` counts metrics
    still running as successful (used to stop early once the verdict is fail whatever follows).
    """
    phases = [(run, SUCCESSFUL if running_as_pass and run.phase == RUNNING else run.phase) for run in runs]
    failed = [run for run, phase in phases if phase == FAILED]
    total = sum(run.spec.weight for run in runs)
    passed_weight = sum(run.spec.weight for run, phase in phases if phase == SUCCESSFUL)
    undecided_weight = sum(run.spec.weight for run, phase in phases if phase in (INCONCLUSIVE, ERROR, RUNNING))
    health = 100.0 * passed_weight / total if total else 0.0
    best_case = 100.0 * (passed_weight + undecided_weight) / total if total else 0.0
    metrics = [run.as_dict() for run in runs]
    critical = [run.spec.name for run in failed if run.spec.severity == "critical"]
    if critical:
        return Verdict(FAIL, "critical metric(s) failed: %s" % ", ".join(critical), health, metrics)
    high = [run.spec.name for run in failed if run.spec.severity == "high"]
    if len(high) >= high_failures:
        return Verdict(FAIL, "%d high-severity metrics failed: %s" % (len(high), ", ".join(high)), health, metrics)
    if failed and best_case < threshold:
        return Verdict(FAIL, "health %.1f%% is below the threshold %.1f%% (failed: %s)" % (
            best_case, threshold, ", ".join(run.spec.name for run in failed)), health, metrics)
    errors = [run for run, phase in phases if phase == ERROR]
    if errors:
        return Verdict(ERROR, "metric(s) in error, health unknown: %s" % "; ".join(
            "%s: %s" % (run.spec.name, run.reason) for run in errors), health, metrics)
    unsure = [run for run, phase in phases if phase == INCONCLUSIVE]
    if unsure:
        return Verdict(INCONCLUSIVE, "inconclusive metric(s): %s" % "; ".join(
            "%s: %s" % (run.spec.name, run.reason) for run in unsure), health, metrics)
    if any(phase == RUNNING for _run, phase in phases):
        return Verdict(RUNNING, "still measuring", health, metrics)
    if health < threshold:
        return Verdict(FAIL, "health %.1f%% is below the threshold %.1f%%" % (health, threshold), health, metrics)
    return Verdict(PASS, "all %d metric(s) passed (health %.1f%%)" % (len(runs), health), health, metrics)


Measure = Callable[[MetricSpec], float]


class Clock(Protocol):
    """Where the evaluation gets the time and how it waits: the system clock or a simulated one."""

    def now(self) -> float:
        """Seconds since the epoch."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""


class SystemClock:
    """The real clock: ``time.time`` and ``time.sleep``."""

    simulated = False

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class SimulatedClock:
    """Virtual time starting at ``start``: ``sleep`` advances it at once, nothing waits.

    Used to run a long watch (an hour at the production interval) in seconds against data
    already in Prometheus; the providers ask for the value at :meth:`now` (``time=`` of the query).
    """

    simulated = True

    def __init__(self, start: float) -> None:
        self.current = float(start)

    def now(self) -> float:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.current += max(0.0, float(seconds))


SYSTEM_CLOCK = SystemClock()
# Test only: an epoch time here makes the module evaluate in simulated time from that instant.
SIMULATED_CLOCK_ENV = "GITOPS_ROLLBACK_SIMULATED_CLOCK"


def clock_from_environment(environ: Dict[str, str]) -> "SystemClock | SimulatedClock":
    """The system clock, or a simulated clock when ``GITOPS_ROLLBACK_SIMULATED_CLOCK`` holds an epoch time."""
    value = (environ.get(SIMULATED_CLOCK_ENV) or "").strip()
    if not value:
        return SYSTEM_CLOCK
    try:
        return SimulatedClock(float(value))
    except ValueError as exc:
        raise HealthSpecError("%s must be an epoch time in seconds (got %r)." % (SIMULATED_CLOCK_ENV, value)) from exc


def measure_once(spec: MetricSpec, measure: Measure, clock: Callable[[], float] = time.time) -> Measurement:
    """Ask the provider once and classify the answer; errors and no-data become outcomes."""
    now = clock()
    try:
        value = measure(spec)
    except NoData as exc:
        return Measurement(now, INCONCLUSIVE, None, "no data: %s" % exc)
    except MeasurementError as exc:
        return Measurement(now, ERROR, None, str(exc))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Measurement(now, INCONCLUSIVE, None, "no data: the provider returned no value")
    outcome = classify(spec, value)
    return Measurement(now, outcome, value, _explain(spec, value, outcome))


def _explain(spec: MetricSpec, value: float, outcome: str) -> str:
    if outcome == FAILED:
        cond = spec.failure if spec.failure is not None and spec.failure.holds(value) else spec.success
        verb = "meets failure condition" if cond is spec.failure else "misses success condition"
        return "%s %s %r" % (_fmt(value), verb, cond.text if cond else "")
    if outcome == SUCCESSFUL:
        return "%s within %r" % (_fmt(value), (spec.success or spec.failure).text)
    return "%s meets neither condition" % _fmt(value)


@dataclass
class Evaluation:
    """The result of :func:`evaluate`: verdict, reason, health and timing."""

    verdict: str
    reason: str
    health: float
    metrics: List[dict]
    started: float
    finished: float
    detected: Optional[float]

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict, "reason": self.reason, "health": round(self.health, 2),
            "metrics": self.metrics, "started": _iso(self.started), "finished": _iso(self.finished),
            "duration": round(self.finished - self.started, 3),
            "detected": _iso(self.detected) if self.detected else None,
            "detection_seconds": round(self.detected - self.started, 3) if self.detected else None,
        }


def evaluate(specs: Sequence[MetricSpec], measure: Measure, threshold: float = 100.0, high_failures: int = 2,
             clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> Evaluation:
    """Measure every metric at its interval until all are decided or the verdict is fail already.

    Stops at once when a failure makes the verdict fail whatever the remaining measurements
    show (a critical metric, enough high ones, or health that cannot reach the threshold).
    """
    if not specs:
        raise HealthSpecError("No metrics to evaluate: give at least one entry in metrics.")
    started = clock()
    runs = [MetricRun(spec, next_due=started + spec.initial_delay) for spec in specs]
    while True:
        pending = [run for run in runs if run.phase == RUNNING]
        if not pending:
            break
        run = min(pending, key=lambda item: item.next_due)
        wait = run.next_due - clock()
        if wait > 0:
            sleep(wait)
        run.add(measure_once(run.spec, measure, clock))
        run.next_due = max(run.next_due + run.spec.interval, clock())
        if decide(runs, threshold, high_failures, running_as_pass=True).verdict == FAIL:
            break
    final = decide(runs, threshold, high_failures)
    if final.verdict == RUNNING:  # stopped early because of a failure: the failure decides
        final = decide(runs, threshold, high_failures, running_as_pass=True)
    finished = clock()
    detected = finished if final.verdict == FAIL else None
    return Evaluation(final.verdict, final.reason, final.health, final.metrics, started, finished, detected)


def _fmt(value: float) -> str:
    return ("%.6g" % value) if isinstance(value, float) else str(value)


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + ".%03dZ" % int((stamp % 1) * 1000)
