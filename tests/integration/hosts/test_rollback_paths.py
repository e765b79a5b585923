"""End-to-end: rollback_paths naming paths below the managed roots rolls back those paths on three SSH hosts and
leaves every other entry of the roots as it is; the safety checkpoint holds exactly those paths and undoes them."""

from __future__ import annotations

import json

from hosts_support import PLAYBOOKS, break_release, host_snapshot


def _failed(result) -> list:
    return [(e["task"], e["result"].get("msg")) for e in result.events if e.get("status") == "failed"]


def _results(result, task: str, host: str) -> list:
    return [e["result"] for e in result.events if e.get("event") == "result" and e["host"] == host
            and e["task"].split(" : ")[-1] == task]


def test_rollback_paths_below_the_managed_roots_roll_back_only_those_paths(checkpointed_fleet, hosts_at_v1, run_playbook,
                                                                           fleet_vars):
    hosts = checkpointed_fleet  # checkpointed as v1 by checkpoint.yml
    at_v1 = hosts_at_v1.snapshots
    for host in hosts:
        break_release(host)
    broken = {host.name: host_snapshot(host) for host in hosts}
    chosen = ["/etc/app/app.conf", "/srv/app/static"]

    rolled = run_playbook(PLAYBOOKS / "rollback.yml", extra_vars={
        **fleet_vars, "rollback_to": "v1", "rollback_layers": ["config"], "rollback_paths": chosen})

    assert rolled.ok, _failed(rolled)
    for host in hosts:
        now, v1, before = host_snapshot(host), at_v1[host.name], broken[host.name]
        assert now["/etc/app"] == v1["/etc/app"], host.name  # app.conf: bytes, mode and owner of v1
        static = {rel: entry for rel, entry in now["/srv/app"].items() if rel == "static" or rel.startswith("static/")}
        assert static == {rel: entry for rel, entry in v1["/srv/app"].items()
                          if rel == "static" or rel.startswith("static/")}, host.name  # a.png is back
        others = {rel: entry for rel, entry in now["/srv/app"].items() if rel not in static}
        assert others == {rel: entry for rel, entry in before["/srv/app"].items()
                          if rel != "static" and not rel.startswith("static/")}, host.name  # still broken
        plan = _results(rolled, "Show the plan", host.name)[-1]["msg"]
        config = [line for line in plan if line.startswith("config:")]
        assert "restore /etc/app/app.conf, /srv/app/static byte-exact" in config[0], config
        restored = _results(rolled, "Restore the managed paths", host.name)[-1]
        changed = {path: sorted(c["path"] for c in changes) for path, changes in restored["changes"].items()}
        assert changed["/etc/app"] == ["app.conf"] and "static/img/a.png" in changed["/srv/app"], changed
        assert all(rel.startswith("static/") for rel in changed["/srv/app"]), changed
        safety = [json.loads(path.read_text()) for path in (host.store / "checkpoints").glob("*.json")]
        safety = [manifest for manifest in safety if (manifest["label"] or "").startswith("safety/")]
        assert [sorted((root["path"], root["scope"]) for root in manifest["roots"]) for manifest in safety] == \
            [[("/etc/app", ["app.conf"]), ("/srv/app", ["static"])]]

    # Two plays of one run: the safety checkpoint undoes the selective rollback (those paths broken again, the rest
    # as it is); then a path the checkpoint does not hold is refused by the pre-flight, before any change (a
    # path outside the managed roots: badinput/test_restore_paths.py and the plan's unit tests). A refusal ends
    # the run, so it comes last.
    restored_state = {host.name: host_snapshot(host) for host in hosts}
    undo_then_refused = run_playbook(
        [{"import_playbook": str(PLAYBOOKS / "rollback.yml"), "vars": {"rollback_to": safety[0]["label"]}},
         {"import_playbook": str(PLAYBOOKS / "rollback.yml"),
          "vars": {"rollback_to": "v1", "rollback_layers": ["config"], "rollback_paths": ["/srv/app/static/none.css"]}}],
        extra_vars=fleet_vars)

    assert not undo_then_refused.ok
    failed = _failed(undo_then_refused)
    assert failed and all("holds nothing at /srv/app/static/none.css" in str(msg) and "/srv/app, /etc/app" in str(msg)
                          for _task, msg in failed), failed
    undone = [e for e in undo_then_refused.events if e.get("event") == "result" and e["status"] == "ok"
              and e["task"].split(" : ")[-1] == "Restore the managed paths" and e["result"].get("changed")]
    assert {e["host"] for e in undone} == {h.name for h in hosts}, "the undo restored every host"
    for host in hosts:
        assert host_snapshot(host) == broken[host.name], host.name
        assert restored_state[host.name] != broken[host.name]
