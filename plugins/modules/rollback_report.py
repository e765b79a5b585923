#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rollback_report
short_description: Write the rollback report, Prometheus metrics and a post-mortem draft from the audit log
version_added: 0.1.0
description:
  - Reads the audit log written by M(gitops.rollback.audit) (rollbacks, the guard's automatic
    rollbacks, refusals) and computes totals, success rate, durations, mean time to recover (from
    the guard's detection, or the rollback's start, to the completed rollback), counts by layer,
    trigger and reason, and a daily trend.
  - Writes any of three files, each atomically and only when its content changes (the content
    depends on the log only, so a second run changes nothing).
  - O(html_path) gets one self-contained HTML page with inline SVG charts and the timeline of each
    rollback; it needs no network, JavaScript or other files.
  - O(prom_path) gets Prometheus text exposition for node_exporter's textfile collector
    (C(gitops_rollback_rollbacks_total{result,trigger}), C(gitops_rollback_failures_total),
    C(gitops_rollback_duration_seconds), C(gitops_rollback_last_timestamp_seconds),
    C(gitops_rollback_mttr_seconds), ...). Name it C(*.prom) in the collector's directory.
  - O(postmortem_path) gets a Markdown post-mortem draft of one rollback (O(run_id), default the
    latest rollback that ran), prefilled with the timeline, trigger, measurements and layers, with
    sections left for the root cause and action items.
  - Checks the audit log's hash chain first. The result's C(summary.integrity), the HTML page, the
    post-mortem draft and the C(gitops_rollback_audit_log_intact) metric name the first altered,
    missing or damaged record; the module warns when the chain is broken (the report is still written).
  - "Run it on the controller (C(delegate_to: localhost), C(run_once: true)), where the log is."
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
  - gitops.rollback.shared_state
options:
  log_path:
    description: The audit log (JSON lines) on the controller. A missing log is an error. Unused with O(state_url).
    type: path
    default: ~/.local/state/gitops-rollback/audit.jsonl
  html_path:
    description: Where to write the HTML report. Not written when not given.
    type: path
  prom_path:
    description: Where to write the Prometheus text file (for example C(/var/lib/node_exporter/textfile/gitops_rollback.prom)).
    type: path
  postmortem_path:
    description:
      - Where to write the post-mortem draft. C({run_id}) in the path is replaced by the run id.
      - A draft that exists with other content (someone edited it) is kept; see O(postmortem_overwrite).
    type: path
  postmortem_overwrite:
    description: Replace an existing post-mortem file whose content differs from the new draft.
    type: bool
    default: false
  run_id:
    description: Run id of the rollback (or of the guard run that started it) for the post-mortem. Default is the latest rollback that ran.
    type: str
  days:
    description: Days in the daily trend, ending on the day of the last record.
    type: int
    default: 30
  max_runs:
    description: Rollbacks whose timelines the HTML report shows (the latest ones).
    type: int
    default: 20
  title:
    description: Title of the HTML report.
    type: str
    default: Rollback report
attributes:
  check_mode:
    support: full
    details: Computes everything and says which files would change; writes nothing.
  diff_mode:
    support: partial
    details: Before and after text of the Prometheus file and the post-mortem draft (not of the HTML page).
seealso:
  - module: gitops.rollback.audit
"""

EXAMPLES = r"""
- name: Write the report, the metrics and a post-mortem draft of the latest rollback
  gitops.rollback.rollback_report:
    log_path: ~/.local/state/gitops-rollback/audit.jsonl
    html_path: /var/www/reports/rollbacks.html
    prom_path: /var/lib/node_exporter/textfile/gitops_rollback.prom
    postmortem_path: ~/postmortems/{run_id}.md
  delegate_to: localhost
  run_once: true

- name: Post-mortem draft of one rollback
  gitops.rollback.rollback_report:
    run_id: rollback-20261121T223000Z-4711
    postmortem_path: ~/postmortems/{run_id}.md
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
summary:
  description: The numbers of the report.
  returned: always
  type: dict
  contains:
    rollbacks:
      description: Counts by outcome (success, failed, refused, incomplete) and total; plans (check mode) are not counted.
      type: dict
      sample: {total: 4, success: 2, failed: 1, refused: 1, incomplete: 0}
    success_rate:
      description: Succeeded over finished (succeeded + failed) rollbacks, 0 to 1; null when none finished.
      type: float
      sample: 0.6667
    duration:
      description: Durations of finished rollbacks in seconds (count, sum, avg, min, max, quantiles).
      type: dict
    mttr_seconds:
      description: Mean time to recover over succeeded rollbacks, in seconds.
      type: float
      sample: 41.2
    by_trigger:
      description: Counts per trigger.
      type: list
      elements: dict
    by_layer:
      description: Counts and average seconds per layer.
      type: list
      elements: dict
    by_reason:
      description: Counts per reason.
      type: list
      elements: dict
    daily:
      description: Counts per day (UTC) over O(days).
      type: list
      elements: dict
    integrity:
      description:
        - The audit log's hash chain. C(ok), C(records), C(legacy_records) (lines from before the chain),
          C(chain_starts_at_line), C(first_problem) and C(problems) (each with C(line), C(seq), C(kind) -
          V(altered), V(missing), V(damaged) or V(head) - and C(message)), C(problem_count), C(summary).
      type: dict
      sample: {ok: false, records: 41, problem_count: 1, first_problem: {line: 17, seq: 17, kind: missing,
               message: "record #17 missing before line 17 (record #18), after line 16"}}
  sample: {rollbacks: {total: 3, success: 2, failed: 0, refused: 1, incomplete: 0}, success_rate: 1.0}
rollback:
  description: The rollback the post-mortem is about; null when no post-mortem was asked or none ran.
  returned: always
  type: dict
  sample: {run_id: rollback-20261121T223000Z-4711, target: v1, outcome: success, trigger: manual, duration: 5.2}
files:
  description: Per file written (html, prom, postmortem) its path, whether it changed, and whether an edited draft was kept.
  returned: always
  type: dict
  sample: {prom: {path: /var/lib/node_exporter/textfile/gitops_rollback.prom, changed: true, kept: false}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gitops.rollback.plugins.module_utils.report import files as _report


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            log_path=dict(type="path", default="~/.local/state/gitops-rollback/audit.jsonl"),
            html_path=dict(type="path"),
            prom_path=dict(type="path"),
            postmortem_path=dict(type="path"),
            postmortem_overwrite=dict(type="bool", default=False),
            run_id=dict(type="str"),
            days=dict(type="int", default=30),
            max_runs=dict(type="int", default=20),
            title=dict(type="str", default="Rollback report"),
            state_url=dict(type="str", default="", no_log=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        outcome = _report.write_reports(
            p["log_path"], html_path=p["html_path"], prom_path=p["prom_path"], postmortem_path=p["postmortem_path"],
            run_id=p["run_id"], days=p["days"], title=p["title"], postmortem_overwrite=p["postmortem_overwrite"],
            check=module.check_mode, max_runs=p["max_runs"], state_url=p["state_url"])
    except (_report.ReportError, OSError) as exc:
        module.fail_json(msg=str(exc))
    files = {kind: {k: v for k, v in planned.items() if k != "before"} for kind, planned in outcome["files"].items()}
    integrity = outcome["summary"]["integrity"]
    if not integrity["ok"]:
        module.warn("The audit log is not intact: %s" % integrity["summary"])
    for kind, planned in files.items():
        if planned["kept"]:
            module.warn("%s was edited since it was drafted, so it was kept; set postmortem_overwrite to replace it."
                        % planned["path"])
    result = dict(changed=outcome["changed"], summary=outcome["summary"], rollback=outcome["rollback"], files=files)
    if module._diff:
        result["diff"] = [{"before_header": planned["path"], "after_header": planned["path"],
                           "before": planned["before"] or "", "after": outcome["texts"][kind]}
                          for kind, planned in outcome["files"].items() if kind != "html" and planned["changed"]]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
