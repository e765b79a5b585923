# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback_policy action waiting for an approval: the run goes on within about half a second of the
approver's record reaching the approvals file (it read the file every 2 s)."""

from __future__ import annotations

import threading
import time
from unittest import mock

from ansible_collections.gitops.rollback.plugins.action import rollback_policy as _action
from ansible_collections.gitops.rollback.plugins.module_utils.controller.policy import load_policy, sign_approval

KEY = b"k" * 64


def test_a_waiting_run_goes_on_within_half_a_second_of_the_approval(tmp_path):
    key_file = tmp_path / "approval.key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    approvals = tmp_path / "approvals"
    policy = load_policy({"approval_required": True, "approvers": ["bob"], "confirmation_timeout": 30,
                          "approval_key_file": str(key_file)})
    args = {name: spec.get("default") for name, spec in _action.ARGUMENT_SPEC.items()}
    args.update(run_id="run-42", target="v1", approvals_file=str(approvals))
    action = _action.ActionModule(*(mock.MagicMock() for _unused in range(6)))
    written = {}

    def approve_later():
        time.sleep(0.3)  # the run has read the file (without a record for it) by now
        approvals.write_text(sign_approval(KEY, "run-42", "v1", "bob", int(time.time()) + 600) + "\n")
        written["at"] = time.monotonic()

    writer = threading.Thread(target=approve_later)
    started = time.monotonic()
    writer.start()
    approver, refusal = action._approval(policy, "carol", False, args, "")  # pylint: disable=protected-access
    returned = time.monotonic()
    writer.join()
    assert (approver, refusal) == ("bob", "")
    assert returned - started >= 0.3, "the run went on before the approval was written"
    assert returned - written["at"] < 1.0, "the run noticed the approval %.2f s after it was written" % (
        returned - written["at"])
