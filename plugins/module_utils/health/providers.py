# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Providers of health measurements: Prometheus HTTP API, HTTP endpoints, commands (stdlib only)."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import time
import urllib.error
import urllib.parse
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence

from .analysis import Clock, HealthSpecError, Measure, MeasurementError, MetricSpec, NoData
from ..common.secrets import redact_url, split_credentials

if TYPE_CHECKING:
    import urllib.request

PROVIDER_TYPES = ("prometheus", "http", "command")
REDUCERS: Dict[str, Callable[[List[float]], float]] = {
    "max": max, "min": min, "sum": sum, "first": lambda values: values[0], "last": lambda values: values[-1],
    "avg": lambda values: sum(values) / len(values),
}


def validate_provider(spec: MetricSpec) -> None:
    """Refuse a provider definition that lacks what its type needs."""
    provider = spec.provider
    kind = provider.get("type")
    needs = {"prometheus": ("query",), "http": ("url",), "command": ("argv",)}
    if kind not in needs:
        raise HealthSpecError("Metric %r: provider.type must be one of %s (got %r)." % (
            spec.name, ", ".join(PROVIDER_TYPES), kind))
    missing = [key for key in needs[kind] if not provider.get(key)]
    if kind == "prometheus" and not provider.get("address"):
        missing.append("address (or the module's prometheus_url)")
    if missing:
        raise HealthSpecError("Metric %r: provider %s needs %s." % (spec.name, kind, ", ".join(missing)))
    if provider.get("reduce", "max") not in REDUCERS:
        raise HealthSpecError("Metric %r: provider.reduce must be one of %s." % (spec.name, ", ".join(REDUCERS)))
    if kind == "http" and provider.get("value", "status") not in ("status", "latency", "json"):
        raise HealthSpecError("Metric %r: http provider value must be status, latency or json." % spec.name)
    if kind == "command" and provider.get("value", "stdout") not in ("stdout", "rc"):
        raise HealthSpecError("Metric %r: command provider value must be stdout or rc." % spec.name)


def measure(spec: MetricSpec, at: Optional[float] = None) -> float:
    """Measure ``spec`` once through its provider; MeasurementError or NoData when it cannot.

    ``at`` asks Prometheus for the value at that time (a simulated clock); None is the server's now.
    """
    kind = spec.provider.get("type")
    if kind == "prometheus":
        return measure_prometheus(spec.provider, at)
    if kind == "http":
        return measure_http(spec.provider)
    return measure_command(spec.provider)


def measurer(clock: Clock) -> Measure:
    """The measure function for ``clock``: a simulated clock queries Prometheus at its virtual now.

    HTTP endpoints and commands can only answer in real time; the simulated clock is for replaying
    metric history already stored in Prometheus.
    """
    if not getattr(clock, "simulated", False):
        return measure
    return lambda spec: measure(spec, at=clock.now())


# ------------------------------------------------------------------------------ Prometheus

def prometheus_request(provider: dict, now: Optional[float] = None) -> "tuple[str, dict]":
    """The API URL and parameters for an instant or range query."""
    address = str(provider["address"]).rstrip("/")
    query = str(provider["query"])
    if provider.get("range"):
        end = time.time() if now is None else now
        params = {"query": query, "start": "%.3f" % (end - float(provider["range"])), "end": "%.3f" % end,
                  "step": str(provider.get("step") or 1)}
        return address + "/api/v1/query_range", params
    params = {"query": query}
    if now is not None:
        params["time"] = "%.3f" % now
    return address + "/api/v1/query", params


def measure_prometheus(provider: dict, at: Optional[float] = None) -> float:
    """Run the query (at ``at``, else now) and reduce its samples to one number; empty result or NaN is no data."""
    url, params = prometheus_request(provider, at)
    body = _http_get_json(url + "?" + urllib.parse.urlencode(params), provider, "Prometheus")
    if body.get("status") != "success":
        raise MeasurementError("Prometheus at %s refused the query %r: %s" % (
            redact_url(provider["address"]), provider["query"], body.get("error") or body))
    values = prometheus_values(body.get("data") or {})
    if not values:
        raise NoData("query %r returned no samples" % provider["query"])
    return REDUCERS[provider.get("reduce") or "max"](values)


def prometheus_values(data: dict) -> List[float]:
    """Finite sample values of a query result (vector, matrix or scalar), NaN and Inf left out."""
    kind = data.get("resultType")
    result = data.get("result")
    raw: List[str] = []
    if kind == "scalar" and isinstance(result, list):
        raw = [result[1]]
    elif kind == "vector":
        raw = [series["value"][1] for series in result or []]
    elif kind == "matrix":
        raw = [point[1] for series in result or [] for point in series.get("values", [])]
    values = []
    for item in raw:
        try:
            number = float(item)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            values.append(number)
    return values


# ------------------------------------------------------------------------------ HTTP

def measure_http(provider: dict) -> float:
    """Status code, latency in seconds, or a number from the JSON body of one request."""
    url = str(provider["url"])
    request = _request(url, provider, str(provider.get("method") or "GET"))
    started = time.monotonic()
    try:
        with _opener(provider).open(request, timeout=float(provider.get("timeout") or 5)) as response:
            status, body = response.status, response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise MeasurementError("HTTP endpoint %s could not be reached: %s" % (redact_url(url), _reason(exc))) from exc
    latency = time.monotonic() - started
    kind = provider.get("value") or "status"
    if kind == "status":
        return float(status)
    if kind == "latency":
        return latency
    return json_value(body, str(provider.get("json_path") or ""), redact_url(url))


def json_value(body: bytes, path: str, where: str) -> float:
    """The number at a dotted path (``data.0.ratio``) of a JSON body; NoData when absent or null."""
    try:
        node = json.loads(body.decode("utf-8"))
    except ValueError as exc:
        raise MeasurementError("%s did not answer with JSON: %s" % (where, exc)) from exc
    for part in [item for item in path.split(".") if item]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise NoData("%s has no %r in its JSON body" % (where, path))
    if node is None:
        raise NoData("%s: %r is null" % (where, path))
    if isinstance(node, bool) or not isinstance(node, (int, float, str)):
        raise MeasurementError("%s: %r is not a number (%r)" % (where, path, node))
    try:
        return float(node)
    except ValueError as exc:
        raise MeasurementError("%s: %r is not a number (%r)" % (where, path, node)) from exc


# ------------------------------------------------------------------------------ command

def measure_command(provider: dict) -> float:
    """The exit code, or the number a command prints (argument list, no shell)."""
    argv: Sequence[str] = [str(item) for item in provider["argv"]]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=float(provider.get("timeout") or 30), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MeasurementError("command %s could not run: %s" % (argv[0], exc)) from exc
    if (provider.get("value") or "stdout") == "rc":
        return float(proc.returncode)
    if proc.returncode != 0:
        raise MeasurementError("command %s failed (rc=%d): %s" % (
            " ".join(argv), proc.returncode, proc.stderr.decode("utf-8", "replace").strip()[:500]))
    text = proc.stdout.decode("utf-8", "replace").strip()
    if not text:
        raise NoData("command %s printed nothing" % argv[0])
    try:
        return float(text.split()[-1])
    except ValueError as exc:
        raise MeasurementError("command %s printed %r, not a number" % (argv[0], text[:200])) from exc


# ------------------------------------------------------------------------------ helpers

def _request(url: str, provider: dict, method: str = "GET") -> urllib.request.Request:
    """A request with the provider's headers; credentials in the URL become basic authentication."""
    bare, credentials = split_credentials(url)
    headers = dict(provider.get("headers") or {})
    if credentials and not any(name.lower() == "authorization" for name in headers):
        token = base64.b64encode(("%s:%s" % credentials).encode("utf-8")).decode("ascii")
        headers["Authorization"] = "Basic " + token
    # urllib.request (its HTTP, TLS and mail code) only when something is measured over HTTP: its import costs
    # every start of a module that imports this file.
    from urllib.request import Request  # pylint: disable=import-outside-toplevel
    return Request(bare, method=method, headers=headers)


def _http_get_json(url: str, provider: dict, what: str) -> dict:
    request = _request(url, provider)
    try:
        with _opener(provider).open(request, timeout=float(provider.get("timeout") or 5)) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            raise MeasurementError("%s answered HTTP %d: %s" % (what, exc.code, body[:300])) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise MeasurementError("%s at %s could not be reached: %s" % (
            what, redact_url(provider.get("address") or url), _reason(exc))) from exc
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError as exc:
        raise MeasurementError("%s answered something that is not JSON: %r" % (what, body[:200])) from exc


def _opener(provider: dict) -> urllib.request.OpenerDirector:
    """A plain stdlib opener (the module runs on any host); TLS verified unless validate_certs is false."""
    import ssl  # pylint: disable=import-outside-toplevel  # see _request
    from urllib.request import HTTPSHandler, build_opener  # pylint: disable=import-outside-toplevel
    if provider.get("validate_certs", True):
        return build_opener()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return build_opener(HTTPSHandler(context=context))


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc)
