#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: run_lock
short_description: Take or release the controller-side lock that keeps two rollbacks of one inventory apart
version_added: 0.1.0
description:
  - A lock file on the controller, named after the inventory, holding the owner, the
    C(ansible-playbook) process id, the start time and an expiry. A second run is refused with
    the owner and start time of the first. A lock whose process is gone or whose expiry has
    passed is recovered.
  - "Run it on the controller (C(delegate_to: localhost), C(run_once: true))."
  - With O(state_url) the lock is a row in the shared state instead of a file, so controllers on
    different machines (AWX jobs among them) keep each other out; it is recovered once it expires.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
  - gitops.rollback.shared_state
options:
  state:
    description: V(present) takes the lock, V(absent) releases it (only when O(token) matches).
    type: str
    choices: [present, absent]
    default: present
  name:
    description: What is locked, usually the inventory sources.
    type: str
    required: true
  lock_dir:
    description: Directory of the lock files on the controller (unused with O(state_url)).
    type: path
    default: ~/.local/state/gitops-rollback/locks
  owner:
    description: Who holds the lock.
    type: str
    required: true
  operation:
    description: What the holder does.
    type: str
    default: rollback
  ttl:
    description: Seconds after which the lock expires even if its process lives.
    type: float
    default: 3600
  timeout:
    description: Seconds to wait for a live holder before failing.
    type: float
    default: 0
  token:
    description: The token returned when the lock was taken (for O(state=absent)).
    type: str
attributes:
  check_mode:
    support: full
    details: In check mode the lock is still checked (a running rollback is reported) but not taken.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Refuse a second rollback of this inventory
  gitops.rollback.run_lock:
    name: "{{ ansible_inventory_sources | join(',') }}"
    owner: "{{ lookup('env', 'USER') }}"
  delegate_to: localhost
  run_once: true
  register: rollback_lock
"""

RETURN = r"""
token:
  description: Token to release the lock with.
  returned: state=present and not check mode
  type: str
  sample: 3f2a9c0d1e2b4a5f
holder:
  description: The lock record.
  returned: always
  type: dict
  sample: {owner: alice, operation: rollback, pid: 4242, started: "2026-11-21T22:30:00Z"}
recovered:
  description: A stale lock record that was broken to take the lock.
  returned: when one was
  type: dict
  sample: {owner: bob, pid: 999, started: "2026-11-21T20:00:00Z"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.controller.runstate import run_lock, take_run_lock


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "absent"]),
            name=dict(type="str", required=True),
            lock_dir=dict(type="path", default="~/.local/state/gitops-rollback/locks"),
            owner=dict(type="str", required=True),
            operation=dict(type="str", default="rollback"),
            ttl=dict(type="float", default=3600),
            timeout=dict(type="float", default=0),
            token=dict(type="str", no_log=False),
            state_url=dict(type="str", default="", no_log=True),
        ),
        required_if=[("state", "absent", ("token",))],
        supports_check_mode=True,
    )
    p = module.params
    try:
        lock = run_lock(p["name"], p["lock_dir"], p["owner"], p["operation"], p["ttl"], p["state_url"],
                        module.check_mode)
        if p["state"] == "absent":
            released = False if module.check_mode else lock.release(p["token"])
            module.exit_json(changed=released, holder=lock.read_holder() or {})
        result = take_run_lock(lock, p["name"], p["operation"], p["timeout"], module.check_mode)
    except RollbackError as exc:
        module.fail_json(msg=str(exc), **({"holder": exc.details["holder"]} if "holder" in exc.details else {}))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
