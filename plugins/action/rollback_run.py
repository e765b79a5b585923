# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action rollback_run: a rollback's policy outcome, start, refusal and finish on the controller, one step each.

Each step writes its audit records (and webhook) and takes or releases the run lock in this
process, with the functions the audit and run_lock modules use (module_utils/controller/runstate.py), instead
of one module process per record and per lock operation. The outcome of a run is decided in
module_utils/controller/outcome.py. Documentation: plugins/modules/rollback_run.py.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional

from ansible.plugins.action import ActionBase
from ansible_collections.gitops.rollback.plugins.module_utils.controller import audit as _audit
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.controller.outcome import (
    deadline, preflight_problems, run_report, run_summary)
from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import (
    layer_list, problems_message, request_problems, strategy_problem)
from ansible_collections.gitops.rollback.plugins.module_utils.controller.runstate import (
    lock_name, run_argument_spec, run_lock, send_webhook, take_run_lock, write_record)

ARGUMENT_SPEC = run_argument_spec()
#: The facts the rollback role sets on each host, read by the finish and refuse steps.
HOST_FACTS = {"timings": "__rollback_timings", "changed_layers": "__rollback_changed_layers",
              "safety_taken": "__rollback_safety_taken", "problems": "__rollback_preflight_problems"}


class ActionModule(ActionBase):
    """Start, refuse or finish a rollback on the controller."""

    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    _supports_check_mode = True

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        who = dict(args["decision"].get("who") or {"user": "unknown (policy step not run)"})
        step = {"policy": self._policy, "start": self._start, "refuse": self._refuse,
                "finish": self._finish}[args["step"]]
        try:
            result.update(step(args, who, task_vars))
        except RollbackError as exc:
            result.update(failed=True, msg=str(exc))
        result.setdefault("changed", False)
        return result

    # ----------------------------------------------------------------- records
    def _record(self, args: Mapping[str, Any], who: Mapping[str, Any], event: str, level: str = "info",
                **fields: Any) -> dict:
        """Write one audit record of this run (also in a dry run: it is recorded as one) and send it."""
        record = _audit.make_record(
            event, "rollback", args["run_id"], target=args["target"], trigger=args["trigger"],
            level=level, dry_run=args["dry_run"], who=_audit.who(who.get("user"), who.get("awx_job_id"), who.get("awx_launcher")),
            **fields)
        record = write_record(args["state_url"], args["log_path"], record)
        send_webhook(args["webhook_url"], args["webhook_secret"], record, self._display.warning)
        return record

    def _release(self, args: Mapping[str, Any], who: Mapping[str, Any], name: str) -> bool:
        if not (args["lock_token"] and name):
            return False
        lock = run_lock(name, args["lock_dir"], who.get("user") or "", "rollback", 0, args["state_url"], False)
        return lock.release(args["lock_token"])

    # ------------------------------------------------------------------- steps
    def _policy(self, args: Mapping[str, Any], who: Mapping[str, Any], task_vars: Mapping[str, Any]) -> Dict[str, Any]:
        """Record a refusal by policy and fail, or record the approval; set the run's deadline."""
        hosts = list(task_vars.get("ansible_play_hosts") or [])
        decision = args["decision"]
        if decision.get("refusal"):
            self._record(args, who, "refused", reason=decision["refusal"], level="warning", hosts=hosts)
            return {"failed": True, "msg": "Rollback refused by policy: %s. Nothing was changed; the refusal is in %s."
                    % (decision["refusal"], "the shared state" if args["state_url"] else args["log_path"])}
        if decision.get("approver"):
            self._record(args, who, "progress", reason="approved by %s" % decision["approver"], hosts=hosts)
        policy = decision.get("policy") or {}
        return {"who": who, "deadline": deadline(time.time(), float(policy.get("max_rollback_seconds") or 0))}

    def _start(self, args: Mapping[str, Any], who: Mapping[str, Any], task_vars: Mapping[str, Any]) -> Dict[str, Any]:
        """Refuse a request without a target or with unknown layers; take the run lock (in check mode: see
        that it is free) and record the start."""
        play = self._task.get_play()
        refused = strategy_problem(play.strategy if play is not None else None)
        if refused:
            return {"failed": True, "msg": refused}
        problems = request_problems(args["target"], args["layers"])
        if problems:
            return {"failed": True, "msg": " ".join(problems) + " Nothing was changed."}
        started = time.time()
        name = lock_name(args["lock_name"], task_vars)
        lock: Dict[str, Any] = {"name": name}
        if args["lock"]:
            owner = "%s%s" % (who.get("user"), " (AWX job %s)" % who["awx_job_id"] if who.get("awx_job_id") else "")
            operation = "rollback to %s" % args["target"]
            held = run_lock(name, args["lock_dir"], owner, operation, 3600, args["state_url"], self._task.check_mode)
            lock.update(take_run_lock(held, name, operation, 0, self._task.check_mode))
        summary = ("dry run: plan only, nothing changes" if args["dry_run"]
                   else "layers: " + ", ".join(layer_list(args["layers"])))
        self._record(args, who, "started", reason=args["reason"] or None, measurements=args["measurements"] or None,
                     hosts=list(task_vars.get("ansible_play_hosts") or []), message=summary)
        return {"lock": lock, "started": started}

    def _facts(self, task_vars: Mapping[str, Any], hosts: List[str]) -> Dict[str, Dict[str, Any]]:
        hostvars = task_vars.get("hostvars") or {}
        facts: Dict[str, Dict[str, Any]] = {}
        for host in hosts:
            if host in hostvars:
                known = hostvars[host]  # each lookup of a host gathers all its variables: once per host
                facts[host] = {key: known.get(name) for key, name in HOST_FACTS.items()}
        return facts

    def _refuse(self, args: Mapping[str, Any], who: Mapping[str, Any], task_vars: Mapping[str, Any]) -> Dict[str, Any]:
        """Refuse the run when the pre-flight found problems anywhere: record them, release the lock, fail."""
        everyone = list(task_vars.get("ansible_play_hosts_all") or [])
        alive = list(task_vars.get("ansible_play_hosts") or [])
        facts = self._facts(task_vars, everyone)
        problems = preflight_problems({host: facts.get(host, {}).get("problems") or [] for host in alive},
                                      [host for host in everyone if host not in alive])
        if not problems:
            return {"problems": {}}
        self._record(args, who, "refused", reason="pre-flight failed; nothing was changed", result=problems,
                     level="warning")
        self._release(args, who, lock_name(args["lock_name"], task_vars))
        return {"failed": True, "problems": problems, "msg": problems_message(problems)}

    def _finish(self, args: Mapping[str, Any], who: Mapping[str, Any], task_vars: Mapping[str, Any]) -> Dict[str, Any]:
        """Decide the run's outcome, record it, release the lock; return the summary and the report."""
        everyone = list(task_vars.get("ansible_play_hosts_all") or [])
        summary = run_summary(args["run_id"], args["target"], args["dry_run"], everyone,
                              list(task_vars.get("ansible_play_hosts") or []), self._facts(task_vars, everyone),
                              args["safety_label"], time.time() - args["started"] if args["started"] else 0.0)
        texts = run_report(summary)
        self._record(args, who, "failed" if summary["failed"] else "completed", reason=args["reason"] or None,
                     hosts=everyone, layers=summary["layers"], result=summary, duration=summary["seconds"],
                     message=texts["audit"])
        released = self._release(args, who, lock_name(args["lock_name"], task_vars))
        return {"summary": summary, "report": texts["report"], "lock_released": released}
