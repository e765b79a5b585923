"""Before/after hooks per layer (gitops_rollback_before_<layer>_tasks, gitops_rollback_after_<layer>_tasks)
around the layers of the rollback role, and two runs of the role in one playbook, on one host over the local
connection (site_support.Site): release, config and services layers, checkpointed at v1, then v2 deployed.

A failing before hook stops playbooks/rollback.yml; every layer's hooks run in order in the first of the two
runs, whose second one (limited to its rollback time limit) must stop before its layers."""

from __future__ import annotations

import json

from site_support import Site

#: A hook task: appends "<when> <layer> <checkpoint id of the plan> <app.conf's release line>" to the log.
HOOK = """- name: Note the {when} hook of {{{{ gitops_rollback_layer }}}}
  ansible.builtin.command:
    argv: [sh, -c, 'printf "%s %s\\n" "$1" "$(grep release= "$2")" >> "$3"', hook,
           "{when} {{{{ gitops_rollback_layer }}}} {{{{ gitops_rollback_layer_plan.checkpoint | default('-') }}}}",
           "{conf}", "{log}"]
  changed_when: true
"""

FAILING_HOOK = """- name: Refuse to touch {{ gitops_rollback_layer }}
  ansible.builtin.command:
    argv: [sh, -c, 'echo maintenance window closed >&2; exit 4']
  changed_when: false
"""


def v1_checkpoint(site: Site) -> str:
    manifests = [json.loads(p.read_text()) for p in (site.tmp / "store" / "checkpoints").iterdir()]
    return next(m["id"] for m in manifests if m.get("label") == "v1")


def hook_spec(site: Site, layers: list[str]) -> dict[str, str]:
    return {f"{when}_{layer}": HOOK.format(when=when, conf=site.conf, log=site.log)
            for layer in layers for when in ("before", "after")}


def test_a_failing_before_hook_stops_the_rollback_before_its_layer_changes_anything(site: Site):
    # A before hook of the config layer fails: the rollback stops before config changes anything, and
    # the release layer, rolled back before it, is brought back to the safety checkpoint.
    v2 = site.state()
    spec = hook_spec(site, ["release"])
    spec["before_config"] = FAILING_HOOK

    failed_run = site.rollback(rollback_to="v1", **site.hooks(spec))

    assert not failed_run.ok
    assert site.state() == v2, "config never changed; the release is back at the safety checkpoint"
    ran = [line.split()[:2] for line in site.log.read_text().splitlines()]
    assert ran == [["before", "release"], ["after", "release"]]
    audit = [json.loads(line) for line in (site.tmp / "audit.jsonl").read_text().splitlines()]
    failed = [e for e in audit if e["event"] == "failed"]
    assert failed and failed[-1]["result"]["layer"] == "config"
    assert failed[-1]["result"]["recovered_to_safety_checkpoint"] is True, failed[-1]["result"]
    message = [e for e in failed_run.events if e.get("status") == "failed"][-1]["result"]["msg"]
    assert "at the config layer (task 'Refuse to touch config')" in message, message
    assert "maintenance window closed" in message
    # Compared with the safety checkpoint in the host's store (gitops_rollback_store_path), not only restored.
    assert failed[-1]["result"]["recovery_state"] == "at_safety_checkpoint", failed[-1]["result"]
    assert "is back at its safety checkpoint" in message, message


def role(tasks_from: str, **variables) -> dict:
    return {"name": "Rollback role, %s" % tasks_from, "ansible.builtin.include_role": {
        "name": "gitops.rollback.rollback", "tasks_from": tasks_from}, "vars": variables}


def test_hooks_run_around_their_layer_only_when_it_runs_and_a_second_run_keeps_its_rollback_time_limit(site: Site):
    # The first run rolls every layer the host has back (release and config) and restarts the service, its last
    # layer, with every layer's hooks set - the traffic and database layers' included, which do not run here. The
    # second one, limited to 1 s, spends 2 s before its layers: it must stop before its services layer, whatever
    # layer the first run ended in, under a run id of its own.
    hooks = site.hooks(hook_spec(site, ["traffic", "release", "config", "database", "services"]))
    limited = {"rollback_layers": ["services"],
               "gitops_rollback_policy": {"max_rollback_seconds": 1}}
    tasks = [
        role("main", **hooks),
        role("preflight", **limited),
        {"name": "A slow pre-flight", "ansible.builtin.pause": {"seconds": 2}},
        role("layers", **limited),
    ]
    play = [{"hosts": "all", "gather_facts": False, "vars": site.vars(rollback_to="v1"), "tasks": tasks}]

    result = site.run_playbook(play, inventory=site.inventory)

    assert not result.ok, "the second run went past its rollback time limit"
    assert site.state() == {"conf": "release=v1\n", "current": "v1\n"}, "the first run rolled back"
    checkpoint = v1_checkpoint(site)
    assert site.log.read_text().splitlines() == [
        f"before release {checkpoint} release=v2",
        f"after release {checkpoint} release=v2",
        f"before config {checkpoint} release=v2",  # the config layer has not run yet
        f"after config {checkpoint} release=v1",   # it has
        "before services - release=v1",
        "services restarted",
        "after services - release=v1",
    ], "no hook of the traffic and database layers, which do not run on this host; the service restarted once, " \
       "by the first run"
    audit = [json.loads(line) for line in (site.tmp / "audit.jsonl").read_text().splitlines()]
    failed = [e for e in audit if e["event"] == "failed"]
    completed = [e for e in audit if e["event"] == "completed"]
    assert len(failed) == 1 and len(completed) == 1, audit
    # Neither run was given an id: each names its own (and its safety checkpoint safety/<id>), the second one's
    # not taken from the first one's fact.
    assert failed[0]["run_id"].startswith("rollback-") and completed[0]["run_id"].startswith("rollback-"), audit
    assert failed[0]["run_id"] != completed[0]["run_id"], "the second run reused the first run's id"
    assert failed[0]["result"]["layer"] == "before the layers", failed[0]["result"]
    assert "exceeded max_rollback_seconds (1 s)" in failed[0]["result"]["problem"], failed[0]["result"]
    assert "before services" in failed[0]["result"]["problem"], failed[0]["result"]
