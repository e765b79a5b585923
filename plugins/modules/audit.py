#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit
short_description: Record a checkpoint, rollback or guard event in the audit log and send it to a webhook
version_added: 0.1.0
description:
  - Appends one JSON line to the audit log (under a file lock, fsynced; directory 0700, file 0600)
    and optionally POSTs the same record to a webhook with retries and a timeout.
  - Each line is chained to the one before it - it carries C(seq), the previous record's hash
    (C(prev_hash)) and its own C(hash), SHA-256 over its canonical JSON - and the head of the chain
    is also written to O(log_path) plus C(.head). C(gitops-rollback audit verify) and
    M(gitops.rollback.rollback_report) name the first altered, missing or damaged record.
  - With O(webhook_secret), each POST carries C(X-Gitops-Rollback-Signature-256), C(sha256=) and the
    hex HMAC-SHA256 of the exact body under the secret, so the receiver can authenticate it.
  - "Run it on the controller (C(delegate_to: localhost), C(run_once: true))."
  - A webhook that cannot be reached does not fail the task; the result says so in RV(webhook).
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
  - gitops.rollback.shared_state
options:
  event:
    description: What happened.
    type: str
    required: true
    choices: [started, progress, completed, failed, refused, alert]
  operation:
    description: The operation the event belongs to.
    type: str
    required: true
    choices: [checkpoint, rollback, guard, drill]
  run_id:
    description: Id grouping the events of one run.
    type: str
    required: true
  target:
    description: Checkpoint id or label the run works towards.
    type: str
  trigger:
    description:
      - What started the run (V(manual), V(guard), V(tag), V(awx), V(drill), ...).
      - Records of a drill (V(drill)) go to the audit log only, never to O(webhook_url).
    type: str
  reason:
    description: Why the run happened, or why it was refused.
    type: str
  level:
    description: Severity, for alerts.
    type: str
    choices: [info, warning, critical, emergency]
    default: info
  summary:
    description: A human-readable line (recorded as C(message)).
    type: str
  layers:
    description: Per layer, per host results and timings (free form).
    type: dict
  hosts:
    description: Hosts concerned.
    type: list
    elements: str
  measurements:
    description: Metric values that triggered an automatic rollback (free form).
    type: raw
  result:
    description: Outcome details (free form), for example partial completion.
    type: raw
  duration:
    description: Seconds the run took so far.
    type: float
  dry_run:
    description:
      - Whether the run is a dry run (plan only, nothing changed) or a real one, recorded as C(dry_run).
      - The playbooks and roles of the collection decide it once with the P(gitops.rollback.dry_run#filter) filter.
    type: bool
  user:
    description: Who runs it. Default is the controller user.
    type: str
  awx_job_id:
    description: AWX/Tower job id (C(tower_job_id) / C(awx_job_id) extra vars).
    type: str
  awx_launcher:
    description: AWX/Tower user who launched the job (C(tower_user_name) / C(awx_user_name)).
    type: str
  log_path:
    description: The audit log file on the controller (unused with O(state_url)).
    type: path
    default: ~/.local/state/gitops-rollback/audit.jsonl
  webhook_url:
    description:
      - URL receiving each record as a JSON POST.
      - Treated as a secret (many webhook URLs are). It is never logged; messages show only its scheme and host.
    type: str
  webhook_secret:
    description:
      - Shared secret signing each webhook POST (HMAC-SHA256 over the exact body, in the
        C(X-Gitops-Rollback-Signature-256) header, formatted C(sha256=<hex>)).
      - Without it the POST is unsigned and the module warns.
    type: str
  webhook_retries:
    description: Retries after a failed POST (connection error or 5xx).
    type: int
    default: 3
  webhook_timeout:
    description: Seconds before one POST attempt is abandoned.
    type: float
    default: 5
attributes:
  check_mode:
    support: full
    details: Returns the record that would be written; writes and sends nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Record the start of a rollback
  gitops.rollback.audit:
    event: started
    operation: rollback
    run_id: "{{ rollback_run_id }}"
    target: v1.3.0
    trigger: manual
    hosts: "{{ ansible_play_hosts }}"
    webhook_url: https://hooks.example.com/rollback
    webhook_secret: "{{ vault_rollback_webhook_secret }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
record:
  description: The record written with its place in the chain (or, in check mode, the record without it).
  returned: always
  type: dict
  sample: {time: "2026-11-21T22:30:00Z", event: started, operation: rollback, run_id: r-1, target: v1,
           seq: 12, prev_hash: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08,
           hash: 60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752}
webhook:
  description:
    - Outcome of the webhook POST; null when no URL was given.
    - A record of a drill (O(trigger=drill)) is never sent; the result then has C(skipped) saying so.
  returned: always
  type: dict
  sample: {ok: true, status: 200, attempts: 1, signed: true}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.controller.runstate import audit_argument_spec, record_event


def main() -> None:
    module = AnsibleModule(argument_spec=audit_argument_spec(), supports_check_mode=True)
    try:
        result = record_event(module.params, module.check_mode, module.warn)
    except RollbackError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
