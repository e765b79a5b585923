# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of a health gate, as the modules that evaluate one take them (health_check, and
feature_flags' ``gate``), and the gate they describe, evaluated with the real providers and clock."""

from __future__ import annotations

import os
from typing import Any, Dict, List

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from .analysis import Evaluation, HealthSpecError, MetricSpec, clock_from_environment, evaluate
from .providers import measurer, validate_provider

_DEFAULTED = ("interval", "count", "initial_delay", "failure_limit", "consecutive_error_limit", "inconclusive_limit")


def _provider_spec() -> dict:
    return dict(
        type=dict(type="str", required=True, choices=["prometheus", "http", "command"]),
        address=dict(type="str"), query=dict(type="str"), range=dict(type="float"),
        step=dict(type="float", default=1), reduce=dict(type="str", default="max",
                                                        choices=["max", "min", "avg", "sum", "first", "last"]),
        url=dict(type="str"), method=dict(type="str", default="GET"), headers=dict(type="dict", no_log=True),
        value=dict(type="str"), json_path=dict(type="str"), argv=dict(type="list", elements="str"),
        timeout=dict(type="float", default=5), validate_certs=dict(type="bool", default=True),
    )


def gate_options() -> Dict[str, Any]:
    """The options of a gate: its metrics and the defaults they take (a fresh dict)."""
    metric = dict(
        name=dict(type="str", required=True),
        provider=dict(type="dict", required=True, options=_provider_spec()),
        success_condition=dict(type="str"), failure_condition=dict(type="str"),
        interval=dict(type="float"), count=dict(type="int"), initial_delay=dict(type="float"),
        failure_limit=dict(type="int"), consecutive_error_limit=dict(type="int"),
        inconclusive_limit=dict(type="int"), weight=dict(type="float", default=1),
        severity=dict(type="str", default="medium", choices=["critical", "high", "medium", "low"]),
    )
    return dict(
        metrics=dict(type="list", elements="dict", required=True, options=metric),
        prometheus_url=dict(type="str"),
        interval=dict(type="float", default=10), count=dict(type="int", default=3),
        initial_delay=dict(type="float", default=0), failure_limit=dict(type="int", default=0),
        consecutive_error_limit=dict(type="int", default=4), inconclusive_limit=dict(type="int", default=0),
        health_threshold=dict(type="float", default=100), high_failures=dict(type="int", default=2),
    )


def argument_spec() -> Dict[str, Any]:
    """The health_check module's options: a gate, and the verdicts that fail the task."""
    return dict(gate_options(),
                fail_on=dict(type="list", elements="str", default=[], choices=["fail", "error", "inconclusive"]))


def gate_params(raw: Dict[str, Any]) -> Dict[str, Any]:
    """A gate given as one dict (feature_flags' ``gate``), checked and completed as health_check's options are."""
    checked = ArgumentSpecValidator(gate_options()).validate(dict(raw))
    if checked.error_messages:
        raise HealthSpecError("gate: %s." % "; ".join(checked.error_messages))
    return checked.validated_parameters


def build_specs(params: Dict[str, Any]) -> List[MetricSpec]:
    """Metric specs from a gate's options, the gate-level defaults filling what a metric leaves unset."""
    defaults = {key: params[key] for key in _DEFAULTED}
    specs = []
    for raw in params["metrics"]:
        raw = dict(raw)
        provider = {key: value for key, value in (raw.get("provider") or {}).items() if value is not None}
        if provider.get("type") == "prometheus":
            provider.setdefault("address", params.get("prometheus_url"))
        if provider.get("type") == "http":
            provider.setdefault("value", "status")
        raw["provider"] = provider
        spec = MetricSpec.from_dict(raw, defaults)
        validate_provider(spec)
        specs.append(spec)
    return specs


def urls(params: Dict[str, Any]) -> List[str]:
    """Every URL option of a gate: the default Prometheus address and each provider's address and url."""
    found = [params.get("prometheus_url")]
    for metric in params.get("metrics") or []:
        provider = (metric or {}).get("provider") or {}
        found += [provider.get("address"), provider.get("url")]
    return [url for url in found if url]


def evaluate_gate(params: Dict[str, Any]) -> Evaluation:
    """Evaluate the gate the options describe, with the providers and the clock of this process."""
    specs = build_specs(params)
    clock = clock_from_environment(dict(os.environ))
    return evaluate(specs, measurer(clock), params["health_threshold"], params["high_failures"],
                    clock=clock.now, sleep=clock.sleep)
