# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action rollback_policy: decide on the controller who rolls back and whether an approver approved it.

Reads the requester from the process (or the AWX job's own extra-vars file), the ``-e``
arguments from ansible-playbook's command line, and signed approval records; never a variable
that claims an identity. Decisions: plugins/module_utils/controller/policy.py. Documentation:
plugins/modules/rollback_policy.py.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ansible import context
from ansible.errors import AnsibleError
from ansible.parsing.splitter import parse_kv
from ansible.plugins.action import ActionBase
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.controller.policy import (
    AWX_KEY_FILE_ENV, IDENTITY_VARS, POLICY_VARS, TEAM_VARS, ApprovalError, PolicyError, approvals_in,
    awx_workflow_approval, check_approval, find_awx_job, first_valid, load_key, load_policy, os_user_name,
    requester_refusal, resolve_identity,
)
from ansible_collections.gitops.rollback.plugins.module_utils.controller.state_pg import open_state

ARGUMENT_SPEC = {
    "policy": {"type": "dict", "default": {}},
    "run_id": {"type": "str", "required": True},
    "target": {"type": "str", "required": True},
    "approval": {"type": "str", "default": ""},
    "approvals_file": {"type": "path", "default": "~/.local/state/gitops-rollback/approvals"},
    "wait": {"type": "bool", "default": True},
    "poll_interval": {"type": "float", "default": 0.5},
    "state_url": {"type": "str", "default": "", "no_log": True},
}
_MAX_APPROVALS_FILE = 1024 * 1024


def extra_var_sources(loader: Any) -> List[Tuple[str, Mapping[str, Any]]]:
    """Return ansible-playbook's ``-e`` arguments in order, each as (``@file`` or the text, its values)."""
    sources: List[Tuple[str, Mapping[str, Any]]] = []
    for arg in context.CLIARGS.get("extra_vars", ()) or ():
        text = str(arg)
        try:
            if text.startswith("@"):
                data = loader.load_from_file(text[1:])
            elif text.lstrip()[:1] in ("{", "["):
                data = loader.load(text)
            else:
                data = parse_kv(text)
        except AnsibleError:
            data = None
        sources.append((text, dict(data) if isinstance(data, Mapping) else {}))
    return sources


def read_approvals(path: str) -> List[str]:
    """Return the records in the approvals file (none when it is missing or not a regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return []
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return []
        return approvals_in(handle.read(_MAX_APPROVALS_FILE).decode("utf-8", "replace"))


class ActionModule(ActionBase):
    """Decide whether this rollback may go on; never fails itself (the role audits a refusal first)."""

    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        result["changed"] = False
        sources = extra_var_sources(self._loader)
        variables = {name: task_vars.get(name) for name in IDENTITY_VARS + TEAM_VARS + POLICY_VARS}
        identity, claims = resolve_identity(os_user_name(), os.environ, sources, variables)
        job = find_awx_job(os.environ, sources)
        result.update(who=identity.who(), identity_source=identity.source, os_user=identity.os_user,
                      approver="", refusal="")
        try:
            policy = load_policy(args["policy"])
        except PolicyError as exc:
            result["refusal"] = "%s; fix the inventory's gitops_rollback_policy" % exc
            return result
        result["policy"] = {"approval_required": policy.approval_required,
                            "confirmation_timeout": policy.confirmation_timeout,
                            "max_rollback_seconds": policy.max_rollback_seconds}
        if claims:
            result["refusal"] = "identity or policy typed in: " + "; ".join(claims)
            return result
        refusal = requester_refusal(policy, identity)
        if refusal or not policy.approval_required or not args["wait"]:
            result["refusal"] = refusal
            return result
        approver, refusal = self._approval(policy, identity.user, job is not None, args,
                                           awx_workflow_approval(policy, identity, job))
        result.update(approver=approver, refusal=refusal)
        return result

    def _approval(self, policy: Any, requester: str, in_awx: bool, args: Mapping[str, Any],
                  workflow: str) -> Tuple[str, str]:
        """Return (approver, '') once an approval counts, or ('', why not)."""
        if workflow:
            return workflow, ""
        key_file = os.environ.get(AWX_KEY_FILE_ENV, "") if in_awx else ""
        key_file = key_file or os.path.expanduser(policy.approval_key_file)
        if not key_file:
            return "", ("approval_required is set but the policy names no approval_key_file (the key approvers "
                        "sign with, on the controller)")
        try:
            key = load_key(key_file)
        except ApprovalError as exc:
            return "", str(exc)
        run_id, target = args["run_id"], args["target"]
        if args["approval"]:
            try:
                return check_approval(key, args["approval"], run_id, target, requester, policy).approver, ""
            except ApprovalError as exc:
                return "", str(exc)
        approvals_file = os.path.expanduser(args["approvals_file"])
        where = "--state \"$GITOPS_ROLLBACK_STATE\"" if args["state_url"] else "--approvals-file " + approvals_file
        self._display.display(
            "Rollback %s to %s by %s needs an approval by one of %s within %d s: on the controller, one of them "
            "runs: gitops-rollback approve %s --target %s --key-file %s %s"
            % (run_id, target, requester, ", ".join(policy.approvers) or "(no approvers)",
               policy.confirmation_timeout, run_id, target, key_file, where))
        deadline = time.monotonic() + policy.confirmation_timeout
        try:
            state = open_state(args["state_url"], dry_run=True)
        except RollbackError as exc:
            return "", str(exc)
        try:
            while True:
                records = state.approvals() if state is not None else read_approvals(approvals_file)
                approval, reasons = first_valid(key, records, run_id, target, requester, policy)
                if approval is not None:
                    return approval.approver, ""
                if time.monotonic() >= deadline:
                    break
                time.sleep(min(args["poll_interval"], max(deadline - time.monotonic(), 0.05)))
                if state is not None and not state.ready:  # the first approval creates the schema
                    state.close()
                    state = open_state(args["state_url"], dry_run=True)
        finally:
            if state is not None:
                state.close()
        mine = [reason for reason in reasons if "not for this run" not in reason]
        return "", ("no approval by %s within %g s (%s)%s" % (
            ", ".join(policy.approvers) or "any approver", policy.confirmation_timeout,
            "gitops-rollback approve %s --target %s" % (run_id, target),
            ("; refused: " + "; ".join(mine[-3:])) if mine else ""))
