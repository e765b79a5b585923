#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rollback_policy
short_description: Decide who is rolling back and whether an approver approved it
version_added: 0.1.0
description:
  - Runs on the controller (an action plugin). Returns the requester, the approver and a
    refusal (empty when the run may go on); it never fails itself, so that the caller can record
    a refusal in the audit log before failing.
  - The requester is the controller's OS user (the real uid of the ansible-playbook process).
    In an AWX job it is the launching user AWX wrote into the job's extra-vars file. An AWX job
    is recognised by AWX's C(JOB_ID) and C(AWX_PRIVATE_DATA_DIR) environment, the
    C(-e @<private data dir>/env/extravars) argument ansible-runner passes, and that file's
    C(awx_job_id) equal to C(JOB_ID).
  - Refused as typed-in identity or policy, with the reason - outside AWX, any C(awx_user_name),
    C(tower_user_name), C(awx_job_id) or C(tower_job_id) variable; in AWX, one that differs from
    the value AWX wrote; C(rollback_user_teams); C(rollback_policy) or C(gitops_rollback_policy)
    given as an extra var.
  - An approval is a record made by C(gitops-rollback approve) (HMAC-SHA256 over run id, target,
    approver and expiry under the policy's C(approval_key_file)), given as O(approval) or
    written to O(approvals_file) (or, with O(state_url), stored in the shared state by
    C(gitops-rollback approve --state)), which is polled until the policy's C(confirmation_timeout). In AWX, a
    job spawned by a workflow named in the policy's C(awx_approval_workflows) counts as approved by the
    workflow's approval node. See docs/security.md.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
  - gitops.rollback.shared_state
options:
  policy:
    type: dict
    default: {}
    description:
      - The environment's rollback policy, from the inventory (C(gitops_rollback_policy)); unknown keys are refused.
      - C(allowed_users), C(allowed_awx_teams) - who may roll back (both empty - anyone).
      - C(teams) - team membership, team name to a list of users.
      - C(approval_required), C(approvers) (never the requester), C(confirmation_timeout) (seconds to wait).
      - C(approval_key_file) - controller file holding the approval key (mode 0600); in an AWX job a
        credential may set C(GITOPS_ROLLBACK_APPROVAL_KEY_FILE) instead.
      - C(approval_max_validity) - longest validity in seconds accepted for an approval record (86400).
      - C(awx_approval_workflows) - AWX workflow job template names whose approval node approves the job.
      - C(max_rollback_seconds) - time limit of the whole rollback (0 - none); enforced by the role.
  run_id:
    description: The id of this run (bound into every approval).
    type: str
    required: true
  target:
    description: What is rolled back to (bound into every approval).
    type: str
    required: true
  approval:
    description: An approval record given to the run (for example from an AWX survey).
    type: str
    default: ""
  approvals_file:
    description: Controller file where approvers append approval records, one a line (unused with O(state_url)).
    type: path
    default: ~/.local/state/gitops-rollback/approvals
  wait:
    description: Wait for an approval when one is required (false in check mode - plan only).
    type: bool
    default: true
  poll_interval:
    description: Seconds between reads of O(approvals_file) or the shared state.
    type: float
    default: 0.5
attributes:
  check_mode:
    support: full
    details: Reads only; the caller passes O(wait=false) to skip the approval in a plan.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Decide who rolls back and wait for an approval
  gitops.rollback.rollback_policy:
    policy: "{{ rollback_policy }}"
    run_id: "{{ rollback_run_id }}"
    target: "{{ rollback_to }}"
    approval: "{{ rollback_approval }}"
    wait: "{{ not ansible_check_mode }}"
  register: rollback_decision
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
who:
  description: The requester as the audit log records it.
  returned: always
  type: dict
  sample: {user: alice, awx_job_id: "41", awx_launcher: alice}
identity_source:
  description: Where the requester was read from, V(os) or V(awx).
  returned: always
  type: str
  sample: os
os_user:
  description: The controller's OS user running the play.
  returned: always
  type: str
  sample: alice
approver:
  description: Who approved the run (empty when no approval was needed or none counted).
  returned: always
  type: str
  sample: bob
refusal:
  description: Why the run is refused; empty when it may go on.
  returned: always
  type: str
  sample: "the approval by bob expired at 2026-12-02T19:00:00Z (now 2026-12-02T19:20:00Z); ask for a new one"
policy:
  description: The policy values the role still needs.
  returned: when the policy is valid
  type: dict
  sample: {approval_required: true, confirmation_timeout: 300, max_rollback_seconds: 0}
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    """Only reached when the action plugin is bypassed."""
    module = AnsibleModule(
        argument_spec=dict(
            policy=dict(type="dict", default={}),
            run_id=dict(type="str", required=True),
            target=dict(type="str", required=True),
            approval=dict(type="str", default=""),
            approvals_file=dict(type="path", default="~/.local/state/gitops-rollback/approvals"),
            wait=dict(type="bool", default=True),
            poll_interval=dict(type="float", default=0.5),
            state_url=dict(type="str", default="", no_log=True),
        ),
        supports_check_mode=True,
    )
    module.fail_json(msg="gitops.rollback.rollback_policy runs on the controller as an action plugin; "
                         "call it as a task, not with 'ansible -m' against a host's Python directly.")


if __name__ == "__main__":
    main()
