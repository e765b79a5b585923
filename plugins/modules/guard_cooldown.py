#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: guard_cooldown
short_description: Allow at most one automatic rollback per cooldown period
version_added: 0.1.0
description:
  - Keeps the time of the last automatic rollback per O(key) (for example inventory and target)
    in a JSON state file, usually on the controller.
  - With O(state=acquired) it checks the cooldown and, when a rollback is allowed, records now as
    the last rollback in the same step, under an exclusive lock, so two guards cannot both start
    one. With O(state=checked) it only reports.
  - A refused rollback is not a failure of this module; RV(allowed) is false and
    RV(next_allowed) tells when one may run again. The guard role fails with that message.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
  - gitops.rollback.shared_state
options:
  path:
    description: The state file; its directory is created (mode 0700) when missing. Unused with O(state_url).
    type: path
    required: true
  key:
    description: What the cooldown applies to, for example C(inventories/prod::web).
    type: str
    required: true
  cooldown:
    description: Seconds after an automatic rollback during which another one is refused.
    type: float
    required: true
  state:
    description: V(acquired) checks and records; V(checked) only checks.
    type: str
    choices: [acquired, checked]
    default: acquired
attributes:
  check_mode:
    support: full
    details: Checks and records nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Take the right to roll back automatically (once per hour per target)
  gitops.rollback.guard_cooldown:
    path: "{{ playbook_dir }}/.gitops-rollback/guard-cooldown.json"
    key: "prod::web"
    cooldown: 3600
  delegate_to: localhost
  run_once: true
  register: cooldown
"""

RETURN = r"""
allowed:
  description: Whether an automatic rollback may run now.
  returned: success
  type: bool
  sample: false
recorded:
  description: Whether now was recorded as the last rollback.
  returned: success
  type: bool
  sample: false
last:
  description: Time of the last automatic rollback for the key (UTC), null if none.
  returned: success
  type: str
  sample: "2026-11-21T22:02:57Z"
next_allowed:
  description: From when the next automatic rollback may run (UTC), null if none ran.
  returned: success
  type: str
  sample: "2026-11-21T23:02:57Z"
seconds_left:
  description: Seconds until the next automatic rollback may run (0 when allowed).
  returned: success
  type: float
  sample: 3540.2
key:
  description: The key checked.
  returned: success
  type: str
  sample: prod::web
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.health.cooldown import acquire


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True), key=dict(type="str", required=True, no_log=False),
            cooldown=dict(type="float", required=True),
            state=dict(type="str", default="acquired", choices=["acquired", "checked"]),
            state_url=dict(type="str", default="", no_log=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    record = params["state"] == "acquired" and not module.check_mode
    now = time.time()
    try:
        if params["state_url"]:  # the shared state's code only then: the module's start compiles what it imports
            from ansible_collections.gitops.rollback.plugins.module_utils.controller.state_pg import (  # pylint: disable=import-outside-toplevel
                open_state)
            with open_state(params["state_url"], module.check_mode) as state:
                decision = state.cooldown(params["key"], params["cooldown"], record, now)
        else:
            decision = acquire(params["path"], params["key"], params["cooldown"], record, now)
    except (RollbackError, OSError) as exc:
        where = "in the shared state" if params["state_url"] else params["path"]
        module.fail_json(msg="Cooldown state %s: %s" % (where, exc))
    module.exit_json(changed=decision.recorded, **decision.as_dict(now))


if __name__ == "__main__":
    main()
