#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rollback_run
short_description: The policy outcome, start, refusal and finish of a rollback on the controller - records and run lock
version_added: 0.1.0
description:
  - The bookkeeping of the C(rollback) role, one task per step, in the controller's own process (no module
    process per record or lock operation). Records go to the audit log (and the webhook) as
    M(gitops.rollback.audit) writes them; the lock is the one M(gitops.rollback.run_lock) takes.
  - O(step=policy) - with the decision of M(gitops.rollback.rollback_policy) in O(decision) - records a refusal
    and fails, or records the approval; returns the deadline of the policy's C(max_rollback_seconds).
  - O(step=start) fails, before anything else, when O(target) is empty or O(layers) names a layer that does not
    exist; takes the run lock (in check mode only checks that it is free) and fails naming the holder when
    another rollback holds it; records the start; returns the lock and the start time.
  - O(step=refuse) gathers every play host's pre-flight problems (and names the hosts the pre-flight could
    not check); when there are any it records the refusal, releases the lock and fails with every problem.
  - O(step=finish) decides the outcome (hosts completed and failed, per host the layers' seconds and the
    layers changed, the safety checkpoint's layers per host), records it, releases the lock and returns
    the summary and the report.
  - The lock is named O(lock_name), else after the AWX job's inventory (C(awx_inventory_name)), else the
    inventory sources.
  - This is an action plugin; it runs on the controller. It reads the facts the C(rollback) role sets on
    each host (C(__rollback_timings), C(__rollback_changed_layers), C(__rollback_safety_taken),
    C(__rollback_preflight_problems)); it is meant for that role.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
  - gitops.rollback.shared_state
options:
  step:
    description: Which step of the run.
    type: str
    required: true
    choices: [policy, start, refuse, finish]
  run_id:
    description: Id of the rollback run.
    type: str
    required: true
  target:
    description: What the run rolls back to.
    type: str
    required: true
  trigger:
    description: What started the run (manual, guard, tag, awx).
    type: str
    default: manual
  reason:
    description: Why the run was started.
    type: str
    default: ""
  measurements:
    description: Metric values that triggered an automatic rollback (O(step=start)).
    type: raw
  layers:
    description: Layers asked for, as a list or a comma-separated string (named in the start record).
    type: raw
    default: []
  dry_run:
    description: Whether the run is a dry run (recorded as such).
    type: bool
    default: false
  decision:
    description:
      - The result of M(gitops.rollback.rollback_policy) (C(who), C(approver), C(refusal), C(policy)); C(who)
        names the requester in every record.
    type: dict
    default: {}
  lock:
    description: Take the run lock at O(step=start).
    type: bool
    default: true
  lock_name:
    description: Name of the run lock (empty - the AWX inventory's name, else the inventory sources).
    type: str
    default: ""
  lock_dir:
    description: Directory of controller lock files.
    type: path
    default: ~/.local/state/gitops-rollback/locks
  lock_token:
    description: The token O(step=start) returned, to release the lock at O(step=refuse) or O(step=finish).
    type: str
    default: ""
  started:
    description: The start time O(step=start) returned (seconds since the epoch), for the run's duration.
    type: float
    default: 0
  safety_label:
    description: Label of the run's safety checkpoint, for the summary and the report.
    type: str
    default: ""
  log_path:
    description: The audit log on the controller.
    type: path
    default: ~/.local/state/gitops-rollback/audit.jsonl
  webhook_url:
    description: Webhook receiving each record (empty for none).
    type: str
    default: ""
  webhook_secret:
    description: Shared secret signing each webhook POST (HMAC-SHA256 of the body).
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    details: Records are written in check mode too (a dry run is recorded as one); the lock is only checked.
  diff_mode:
    support: none
seealso:
  - module: gitops.rollback.audit
  - module: gitops.rollback.run_lock
  - module: gitops.rollback.rollback_policy
"""

EXAMPLES = r"""
- name: Refuse by policy or record the approval
  gitops.rollback.rollback_run:
    step: policy
    run_id: "{{ rollback_run_id }}"
    target: v2.3.0
    decision: "{{ decision }}"
  delegate_to: localhost
  run_once: true

- name: Take the lock and record the start
  gitops.rollback.rollback_run:
    step: start
    run_id: "{{ rollback_run_id }}"
    target: v2.3.0
  register: run
  delegate_to: localhost
  run_once: true

- name: Record the outcome and release the lock
  gitops.rollback.rollback_run:
    step: finish
    run_id: "{{ rollback_run_id }}"
    target: v2.3.0
    lock_token: "{{ run.lock.token | default('') }}"
    started: "{{ run.started }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
who:
  description: Who rolls back.
  returned: O(step=policy)
  type: dict
  sample: {user: alice}
lock:
  description: The run lock - its C(name), and C(token) and C(holder) when it was taken.
  returned: O(step=start)
  type: dict
  sample: {name: inventories/prod/hosts.yml, token: 9f86d081884c7d65, changed: true}
started:
  description: When the run started (seconds since the epoch).
  returned: O(step=start)
  type: float
  sample: 1764763200.123
deadline:
  description: When the run must be finished by (seconds since the epoch; 0 without a limit).
  returned: O(step=policy)
  type: float
  sample: 0
problems:
  description: The pre-flight problems by host (empty when there are none).
  returned: O(step=refuse)
  type: dict
  sample: {web2: [{layer: config, problem: "Checkpoint 'v9' is not in /var/lib/gitops-rollback on web2 (have: v1)."}]}
summary:
  description: The outcome of the run, as recorded and published to AWX.
  returned: O(step=finish)
  type: dict
  sample:
    run_id: rollback-20261203T120000Z-4711
    target: v2.3.0
    check_mode: false
    completed: [web1, web2]
    failed: []
    seconds: 8.2
    layers: {web1: {release: 0.4, config: 0.6}}
    changed_layers: {web1: [release, config]}
    safety_checkpoint: {label: safety/rollback-20261203T120000Z-4711, layers: {web1: [release, config]}}
report:
  description: The run's report in words.
  returned: O(step=finish)
  type: str
lock_released:
  description: Whether the run lock was released.
  returned: O(step=finish)
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gitops.rollback.plugins.module_utils.controller.runstate import run_argument_spec


def main() -> None:
    """Only reached when the action plugin is bypassed."""
    module = AnsibleModule(argument_spec=run_argument_spec(), supports_check_mode=True)
    module.fail_json(msg="gitops.rollback.rollback_run runs on the controller as an action plugin; "
                         "call it as a task, not with 'ansible -m' against a host's Python directly.")


if __name__ == "__main__":
    main()
