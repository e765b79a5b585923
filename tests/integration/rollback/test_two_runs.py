"""Two runs of the rollback role in one playbook, on one host over the local connection (site_support.Site):
the second run starts afresh - its rollback time limit holds from its first layer on."""

from __future__ import annotations

import json

from site_support import Site


def role(tasks_from: str, **variables) -> dict:
    return {"name": "Rollback role, %s" % tasks_from, "ansible.builtin.include_role": {
        "name": "gitops.rollback.rollback", "tasks_from": tasks_from}, "vars": variables}


def test_a_second_run_in_the_same_playbook_keeps_its_rollback_time_limit(site: Site):
    # The first run rolls the release and config layers back and restarts the service, its last layer; the
    # second one, limited to 1 s, spends 2 s before its layers: it must stop before its services layer,
    # whatever layer the first run ended in.
    limited = {"rollback_run_id": "run-2", "rollback_layers": ["services"],
               "gitops_rollback_policy": {"max_rollback_seconds": 1}}
    tasks = [
        role("main", rollback_run_id="run-1", rollback_layers=["release", "config", "services"]),
        role("preflight", **limited),
        {"name": "A slow pre-flight", "ansible.builtin.pause": {"seconds": 2}},
        role("layers", **limited),
    ]
    play = [{"hosts": "all", "gather_facts": False, "vars": site.vars(rollback_to="v1"), "tasks": tasks}]

    result = site.run_playbook(play, inventory=site.inventory)

    assert not result.ok, "the second run went past its rollback time limit"
    assert site.state() == {"conf": "release=v1\n", "current": "v1\n"}, "the first run rolled back"
    assert site.log.read_text().splitlines() == ["services restarted"], "once, by the first run"
    audit = [json.loads(line) for line in (site.tmp / "audit.jsonl").read_text().splitlines()]
    failed = [e for e in audit if e["event"] == "failed"]
    assert [e["run_id"] for e in failed] == ["run-2"], audit
    assert failed[0]["result"]["layer"] == "before the layers", failed[0]["result"]
    assert "exceeded max_rollback_seconds (1 s)" in failed[0]["result"]["problem"], failed[0]["result"]
    assert "before services" in failed[0]["result"]["problem"], failed[0]["result"]
