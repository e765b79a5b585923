#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: health_check
short_description: Evaluate a health gate over real metrics and return a verdict
version_added: 0.1.0
description:
  - Measures each metric in O(metrics) O(metrics[].count) times, O(metrics[].interval) seconds apart,
    after O(metrics[].initial_delay), through its provider - a Prometheus instant or range query
    (HTTP API), an HTTP endpoint (status, latency, or a number from the JSON body) or a command
    (argument list, no shell).
  - Each measurement is C(successful), C(failed) (the failure condition holds, or the success
    condition does not when no failure condition is given), C(inconclusive) (no data - an empty
    result or NaN - or neither condition holds when both are given) or C(error) (the provider
    could not be asked).
  - A metric fails when its failed measurements exceed O(metrics[].failure_limit), is in error
    when its consecutive errors exceed O(metrics[].consecutive_error_limit), is inconclusive when
    its inconclusive measurements exceed O(metrics[].inconclusive_limit) or when it never had
    data, as Argo Rollouts analysis does. A metric without data never passes.
  - The verdict is V(fail) when a C(critical) metric failed, when O(high_failures) C(high) metrics
    failed, or when the weighted health of the metrics falls below O(health_threshold);
    otherwise V(error) when a metric is in error, V(inconclusive) when one is inconclusive, else
    V(pass). Evaluation stops as soon as the verdict is V(fail) whatever the remaining
    measurements would show, so a breach is reported within one interval.
  - The module only reads; it runs the same in check mode. It blocks for the evaluation window;
    for long windows use C(async).
notes:
  - "Test only: when the environment of the module sets E(GITOPS_ROLLBACK_SIMULATED_CLOCK) to an epoch
    time, the evaluation runs in simulated time from that instant: waits take no time and Prometheus
    queries ask for the value at the simulated time, so metric history already in Prometheus is
    replayed (an hour-long window in seconds). HTTP and command providers still answer in real time.
    Never set it in production."
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
options:
  metrics:
    description: The metrics of the gate.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the metric, used in the result and the reason.
        type: str
        required: true
      provider:
        description: Where the value comes from.
        type: dict
        required: true
        suboptions:
          type:
            description: Kind of provider.
            type: str
            required: true
            choices: [prometheus, http, command]
          address:
            description:
              - Prometheus base URL. Default is O(prometheus_url).
              - Credentials in it (C(https://user:password@host)) are sent as HTTP basic authentication;
                they and token-like query parameters are masked in logs, results and messages.
            type: str
          query:
            description: PromQL query (prometheus).
            type: str
          range:
            description: Seconds back from now for a range query; unset for an instant query.
            type: float
          step:
            description: Step of a range query in seconds.
            type: float
            default: 1
          reduce:
            description: How several samples become one value (every series, every point).
            type: str
            choices: [max, min, avg, sum, first, last]
            default: max
          url:
            description:
              - URL of the HTTP endpoint (http).
              - Credentials in it are sent as HTTP basic authentication; they and token-like query
                parameters (C(token), C(key), C(secret), C(password), C(auth), C(sig), ...) are masked in
                logs, results and messages.
            type: str
          method:
            description: HTTP method (http).
            type: str
            default: GET
          headers:
            description:
              - HTTP request headers (http, prometheus), for example C(Authorization).
              - Their values are treated as secrets (C(no_log)) and never appear in logs or results.
            type: dict
          value:
            description:
              - What an http provider measures (V(status), V(latency) in seconds, V(json) - the number
                at O(metrics[].provider.json_path)) or a command provider (V(stdout) - the last number
                printed, V(rc) - the exit code).
            type: str
          json_path:
            description: Dotted path to a number in a JSON body, list items by index (C(data.0.ratio)).
            type: str
          argv:
            description: Command to run (command), as an argument list.
            type: list
            elements: str
          timeout:
            description: Seconds to wait for one answer.
            type: float
            default: 5
          validate_certs:
            description: Verify TLS certificates.
            type: bool
            default: true
      success_condition:
        description: Comparison of the value C(result) with a number, for example C(result < 0.05).
        type: str
      failure_condition:
        description: Comparison that marks a measurement failed, for example C(result >= 0.05).
        type: str
      interval:
        description: Seconds between measurements. Default O(interval).
        type: float
      count:
        description: Number of measurements. Default O(count).
        type: int
      initial_delay:
        description: Seconds to wait before the first measurement. Default O(initial_delay).
        type: float
      failure_limit:
        description: Failed measurements tolerated; one more fails the metric. Default O(failure_limit).
        type: int
      consecutive_error_limit:
        description: Consecutive errors tolerated; one more puts the metric in error. Default O(consecutive_error_limit).
        type: int
      inconclusive_limit:
        description: Inconclusive measurements tolerated. Default O(inconclusive_limit).
        type: int
      weight:
        description: Weight of the metric in the health percentage.
        type: float
        default: 1
      severity:
        description: V(critical) fails the gate at once; O(high_failures) failing V(high) metrics fail it.
        type: str
        choices: [critical, high, medium, low]
        default: medium
  prometheus_url:
    description:
      - Default address of prometheus providers, for example C(http://prometheus:9090).
      - Credentials in it (C(https://user:password@prometheus:9090)) are sent as HTTP basic
        authentication and masked in logs, results and messages.
    type: str
  interval:
    description: Default seconds between measurements.
    type: float
    default: 10
  count:
    description: Default number of measurements per metric.
    type: int
    default: 3
  initial_delay:
    description: Default seconds before the first measurement.
    type: float
    default: 0
  failure_limit:
    description: Default failed measurements tolerated per metric.
    type: int
    default: 0
  consecutive_error_limit:
    description: Default consecutive errors tolerated per metric.
    type: int
    default: 4
  inconclusive_limit:
    description: Default inconclusive measurements tolerated per metric.
    type: int
    default: 0
  health_threshold:
    description: Weighted percentage of passing metrics below which the verdict is V(fail).
    type: float
    default: 100
  high_failures:
    description: Number of failing V(high) metrics that fail the gate.
    type: int
    default: 2
  fail_on:
    description:
      - Verdicts for which the task fails (after returning every measurement). Default none, so a
        playbook can branch on RV(verdict).
    type: list
    elements: str
    choices: [fail, error, inconclusive]
    default: []
attributes:
  check_mode:
    support: full
    details: The module only reads metrics; check mode measures as usual.
  diff_mode:
    support: none
seealso:
  - name: Health gates
    description: docs/health-gates.md in the collection.
    link: https://github.com/gitops/rollback/blob/main/docs/health-gates.md
"""

EXAMPLES = r"""
- name: Gate on error rate and p99 latency from Prometheus
  gitops.rollback.health_check:
    prometheus_url: http://127.0.0.1:9090
    interval: 10
    count: 6
    metrics:
      - name: error-rate
        severity: critical
        provider:
          type: prometheus
          query: sum(rate(http_requests_total{job="app",code=~"5.."}[1m])) / sum(rate(http_requests_total{job="app"}[1m]))
        success_condition: result < 0.05
      - name: p99-latency
        severity: high
        provider:
          type: prometheus
          query: histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="app"}[1m])))
        success_condition: result < 0.5
      - name: health-endpoint
        provider: {type: http, url: "http://web1:8080/healthz", value: status}
        success_condition: result == 200
  register: gate

- name: Use a number from a JSON body and a command's output
  gitops.rollback.health_check:
    count: 1
    metrics:
      - name: queue-depth
        provider: {type: http, url: "http://web1:8080/stats", value: json, json_path: queue.depth}
        failure_condition: result > 1000
      - name: crash-count
        provider: {type: command, argv: [/usr/local/bin/crash-count, --since, 10m]}
        success_condition: result == 0
"""

RETURN = r"""
verdict:
  description: V(pass), V(fail), V(error) or V(inconclusive).
  returned: always
  type: str
  sample: fail
reason:
  description: Why the verdict is what it is.
  returned: always
  type: str
  sample: "critical metric(s) failed: error-rate"
health:
  description:
    - Weighted percentage of metrics that passed. Metrics left unmeasured because a failure
      decided the verdict early count as not passed.
  returned: always
  type: float
  sample: 50.0
metrics:
  description: Every metric with its phase, reason and every measurement (time, value, outcome).
  returned: always
  type: list
  elements: dict
  sample:
    - name: error-rate
      phase: failed
      reason: 1 failed measurement(s), more than failure_limit 0
      severity: critical
      weight: 1.0
      provider: prometheus
      counts: {successful: 1, failed: 1, inconclusive: 0, error: 0}
      measurements:
        - {time: "2026-11-21T22:02:57.448Z", timestamp: 1795298577.448, value: 0.0, outcome: successful,
           message: "0 within 'result < 0.05'"}
        - {time: "2026-11-21T22:02:58.450Z", timestamp: 1795298578.45, value: 0.31, outcome: failed,
           message: "0.31 misses success condition 'result < 0.05'"}
started:
  description: When the evaluation started (UTC, ISO 8601).
  returned: always
  type: str
  sample: "2026-11-21T22:02:57.448Z"
finished:
  description: When it ended.
  returned: always
  type: str
  sample: "2026-11-21T22:02:58.451Z"
duration:
  description: Seconds the evaluation took.
  returned: always
  type: float
  sample: 1.003
detected:
  description: When the verdict became V(fail); null for other verdicts.
  returned: always
  type: str
  sample: "2026-11-21T22:02:58.451Z"
detection_seconds:
  description: Seconds from the start of the evaluation to the detection of the failure.
  returned: always
  type: float
  sample: 1.003
"""


from ansible_collections.gitops.rollback.plugins.module_utils.health.options import argument_spec, evaluate_gate, urls
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule


def main() -> None:
    module = RollbackModule(argument_spec(), supports_check_mode=True, secret_urls=urls)
    outcome = module.run(lambda: evaluate_gate(module.params)).as_dict()
    if outcome["verdict"] in module.params["fail_on"]:
        module.fail_json(msg="Health gate verdict %s: %s" % (outcome["verdict"], outcome["reason"]),
                         changed=False, **outcome)
    module.exit_json(changed=False, **outcome)


if __name__ == "__main__":
    main()
