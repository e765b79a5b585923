"""End-to-end: checkpoint and roll back three real SSH hosts through ansible-playbook (all of it, or paths below the
managed roots); retention on each host; the checkpoint role's retention and its refusal of a damaged object.

One module: the hosts' v1 checkpoint (``hosts_at_v1``, a checkpoint.yml run) is made once per pytest worker, and each
module of its own could go to another worker, which would take it again."""

from __future__ import annotations

import hashlib
import json
import os

from hosts_support import MANAGED, PLAYBOOKS, break_release, host_snapshot


def task_results(result, task, host=None, status=None):
    """Results of a task (role tasks are named '<role> : <task>') on a host."""
    return [e for e in result.events if e.get("event") == "result" and e["task"].split(" : ")[-1] == task
            and (host is None or e["host"] == host) and (status is None or e["status"] == status)]


def task_result(result, task, host):
    found = task_results(result, task, host)
    assert found, "no result for %r on %s\n%s" % (task, host, result)
    return found[-1]["result"]


def failures(result) -> list:
    """(task, message) of each failed task result."""
    return [(e["task"], e["result"].get("msg")) for e in result.events if e.get("status") == "failed"]


def rollback(run_playbook, fleet_vars, target, **kwargs):
    return run_playbook(PLAYBOOKS / "rollback.yml", extra_vars={**fleet_vars, "rollback_to": target}, **kwargs)


def test_checkpoint_plan_rollback_again_undo_selective_and_retention_on_three_hosts(checkpointed_fleet, hosts_at_v1,
                                                                                    run_playbook, fleet_vars,
                                                                                    tmp_path):
    """One checkpoint of three SSH hosts (checkpoint.yml, with a FIFO in the tree: ``hosts_at_v1``) and the
    playbook runs that follow it, each proving its own outcome: check mode is the plan, the rollback brings every
    host back to its own checkpoint (a FIFO in the tree, a planted link replaced, not followed), a second
    rollback changes nothing and the rollback is itself rolled back through its safety checkpoint, then
    rollback_paths naming paths below the managed roots rolls back only those paths on h3 (three imports of
    rollback.yml in one run); the selective rollback's safety checkpoint holds exactly those paths and undoes them,
    and a path the checkpoint does not hold is refused before any change (one run on h3: no selective step is
    shared between hosts, each rolls back on its own as the full rollback shows); then retention
    (the checkpoint module on each host, as the tasks run it) keeps what it must and v1 still restores. (A
    target a host's store does not hold is refused naming what there is: unit test_plan.py, and the plan's
    refusal fails the run before any change on any host: rollback/test_ordered_rollback.py over three
    hosts; a corrupted object: there too, and badinput/test_failed_restore.py for the restore module; a
    selective path outside the managed roots: badinput/test_restore_paths.py and the plan's unit tests.)"""
    hosts = checkpointed_fleet
    secret = tmp_path / "root-only"
    secret.write_bytes(b"only root may read this\n")
    os.chmod(secret, 0o600)
    at_v1 = hosts_at_v1.snapshots

    # A bad deploy, then check mode: the plan, and no change, no checkpoint written.
    for host in hosts:
        break_release(host)
    broken = {host.name: host_snapshot(host) for host in hosts}
    stores = {host.name: sorted(os.listdir(host.store / "checkpoints")) for host in hosts}

    plan = rollback(run_playbook, fleet_vars, "v1", check=True, diff=True)

    assert plan.ok, plan
    for host in hosts:
        assert host_snapshot(host) == broken[host.name]
        assert sorted(os.listdir(host.store / "checkpoints")) == stores[host.name], "check mode wrote a checkpoint"
        assert not task_results(plan, "Restore the managed paths", host.name)  # the dry run is the plan
        config = [line for line in task_result(plan, "Show the plan", host.name)["msg"] if line.startswith("config:")]
        assert config and "/srv/app: " in config[0] and "update index.html" in config[0], config

    # The FIFO gone and, on h3, a link planted by the application user where index.html was.
    for host in hosts:
        (host.local("/srv/app") / "pipe").unlink()
    h3_app = hosts["h3"].local("/srv/app")
    (h3_app / "index.html").unlink()
    os.symlink(secret, h3_app / "index.html")
    secret_before = (secret.read_bytes(), secret.stat().st_mode, secret.stat().st_mtime_ns)
    broken = {host.name: host_snapshot(host) for host in hosts}

    result = rollback(run_playbook, fleet_vars, "v1")

    assert result.ok, result
    for host in hosts:
        assert host_snapshot(host) == at_v1[host.name], host.name
    for name in ("h1", "h2"):
        restored = task_result(result, "Restore the managed paths", name)
        assert restored["changed"] and restored["verified"]
        ops = {(c["op"], c["path"]) for c in restored["changes"]["/srv/app"]}
        assert {("update", "index.html"), ("delete", "new.js"), ("delete", "newdir"), ("create", "empty"),
                ("update", "logo"), ("create", "static/img/a.png"), ("meta", "run.sh")} <= ops
    assert (secret.read_bytes(), secret.stat().st_mode, secret.stat().st_mtime_ns) == secret_before, \
        "the file behind the planted link kept its bytes, mode and time"

    # The same rollback again changes nothing; then the rollback rolled back: its safety checkpoint brings the
    # broken state back; then rollback_paths below the managed roots roll back only those paths. Three imports of
    # rollback.yml in one run, a marker play between them: the first is a run of its own (nothing before it), the
    # second needs the label of the first rollback's safety checkpoint, the third starts from what the undo left.
    labels = set()
    for host in hosts:
        for manifest in (host.store / "checkpoints").iterdir():
            labels.add(json.loads(manifest.read_text())["label"])
    safety = [label for label in labels if label and label.startswith("safety/rollback-")]
    assert len(safety) == 1, labels
    rollback_yml = str(PLAYBOOKS / "rollback.yml")
    chosen = ["/etc/app/app.conf", "/srv/app/static"]

    def marker(name):
        return {"name": name, "hosts": "all", "gather_facts": False,
                "tasks": [{"name": name, "ansible.builtin.debug": {"msg": name}}]}

    again_undo_selective = run_playbook(
        [{"import_playbook": rollback_yml, "vars": {"rollback_to": "v1"}}, marker("Undo next"),
         {"import_playbook": rollback_yml, "vars": {"rollback_to": safety[0]}}, marker("Selective next"),
         {"import_playbook": rollback_yml,
          "vars": {"rollback_to": "v1", "rollback_layers": ["config"], "rollback_paths": chosen,
                   "gitops_rollback_hosts": "h3"}}],
        extra_vars=fleet_vars)

    assert again_undo_selective.ok, failures(again_undo_selective)
    events = again_undo_selective.events
    split = next(i for i, e in enumerate(events) if e["task"] == "Undo next")
    split_selective = next(i for i, e in enumerate(events) if e["task"] == "Selective next")
    again, undo = events[:split], [e for e in events[split:split_selective] if e["task"] != "Undo next"]
    selective = [e for e in events[split_selective:] if e["task"] != "Selective next"]
    assert {e["host"] for e in again} == {host.name for host in hosts}, again
    assert not [e for e in again if e["changed"]], [e for e in again if e["changed"]]
    assert {e["host"] for e in undo if e["task"].split(" : ")[-1] == "Restore the managed paths" and e["changed"]} \
        == {host.name for host in hosts}, "the undo restored every host"
    assert {e["host"] for e in selective} == {"h3"}, selective
    for host in hosts:
        held = [json.loads(path.read_text()) for path in (host.store / "checkpoints").glob("*.json")]
        held = [manifest for manifest in held if (manifest["label"] or "").startswith("safety/")]
        if host.name != "h3":  # the undo brought the broken state back; the rollback again took no safety checkpoint
            assert host_snapshot(host) == broken[host.name], host.name
            assert len(held) == 2, (host.name, [manifest["label"] for manifest in held])  # the first's, the undo's
            continue
        # h3 (a link planted where index.html was): the selective rollback put back app.conf and static only
        now, v1, before = host_snapshot(host), at_v1[host.name], broken[host.name]
        assert now["/etc/app"] == v1["/etc/app"], host.name  # app.conf: bytes, mode and owner of v1
        static = {rel: entry for rel, entry in now["/srv/app"].items() if rel == "static" or rel.startswith("static/")}
        assert static == {rel: entry for rel, entry in v1["/srv/app"].items()
                          if rel == "static" or rel.startswith("static/")}, host.name  # a.png is back
        others = {rel: entry for rel, entry in now["/srv/app"].items() if rel not in static}
        assert others == {rel: entry for rel, entry in before["/srv/app"].items()
                          if rel != "static" and not rel.startswith("static/")}, host.name  # still as the undo left it
        plan = [e["result"] for e in selective if e["host"] == host.name and e["task"].endswith("Show the plan")]
        config = [line for line in plan[-1]["msg"] if line.startswith("config:")]
        assert "restore /etc/app/app.conf, /srv/app/static byte-exact" in config[0], config
        restored = [e["result"] for e in selective if e["host"] == host.name
                    and e["task"].split(" : ")[-1] == "Restore the managed paths"][-1]
        changed = {path: sorted(c["path"] for c in changes) for path, changes in restored["changes"].items()}
        assert changed["/etc/app"] == ["app.conf"] and "static/img/a.png" in changed["/srv/app"], changed
        assert all(rel.startswith("static/") for rel in changed["/srv/app"]), changed
        # the first rollback's, the undo's and the selective rollback's: the rollback again took none
        assert len(held) == 3, (host.name, [manifest["label"] for manifest in held])
        scoped = [manifest for manifest in held if any(root.get("scope") for root in manifest["roots"])]
        assert [sorted((root["path"], root["scope"]) for root in manifest["roots"]) for manifest in scoped] == \
            [[("/etc/app", ["app.conf"]), ("/srv/app", ["static"])]], "the selective safety holds those paths"
        assert max(held, key=lambda manifest: manifest["id"]) is scoped[0], "and it is the newest"
    selective_safety = scoped[0]["label"]

    # Two plays of one run on h3: the selective rollback's safety checkpoint undoes it (those paths broken again, the
    # rest as it is); then a path the checkpoint does not hold is refused by the pre-flight, before any change. A
    # refusal ends the run, so it comes last.
    restored_state = {host.name: host_snapshot(host) for host in hosts}
    undo_then_refused = run_playbook(
        [{"import_playbook": rollback_yml, "vars": {"rollback_to": selective_safety, "gitops_rollback_hosts": "h3"}},
         {"import_playbook": rollback_yml,
          "vars": {"rollback_to": "v1", "rollback_layers": ["config"], "rollback_paths": ["/srv/app/static/none.css"],
                   "gitops_rollback_hosts": "h3"}}],
        extra_vars=fleet_vars)

    assert not undo_then_refused.ok
    failed = failures(undo_then_refused)
    assert failed and all("holds nothing at /srv/app/static/none.css" in str(msg) and "/srv/app, /etc/app" in str(msg)
                          for _task, msg in failed), failed
    undone = [e for e in undo_then_refused.events if e.get("event") == "result" and e["status"] == "ok"
              and e["task"].split(" : ")[-1] == "Restore the managed paths" and e["result"].get("changed")]
    assert {e["host"] for e in undone} == {"h3"}, "the undo restored h3"
    for host in hosts:
        assert host_snapshot(host) == broken[host.name], host.name
    assert restored_state["h3"] != broken["h3"]

    # Retention: keep_last=1 keeps the newest checkpoint, the release tag (v1) and the newest safety
    # checkpoint; the dry run deletes nothing (the real run then deletes exactly what it listed), and
    # v1 still restores after the objects only the forgotten checkpoints used are collected.
    stores = {host.name: _store_listing(host) for host in hosts}
    prune = {"state": "pruned", "keep_last": 1}
    for host in hosts:
        listing = stores[host.name]
        dry = _module(host, "gitops.rollback.checkpoint", prune, check=True)
        assert _store_listing(host) == listing, "the dry run deleted something"
        real = _module(host, "gitops.rollback.checkpoint", prune)
        newest = max(listing)
        newest_safety = max(cid for cid, label in listing.items() if label.startswith("safety/"))
        keep = {newest, newest_safety} | {cid for cid, label in listing.items() if label == "v1"}
        assert len(keep) == 2 and len(listing) > len(keep), listing
        assert sorted(dry["deleted"]) == sorted(set(listing) - keep), (listing, dry)
        assert {item["id"] for item in dry["forgotten"]} == set(listing) - keep
        reasons = {item["id"]: item["reasons"] for item in dry["kept"]}
        assert set(reasons) == keep and "label matches v[0-9]*" in reasons[min(keep)], reasons
        assert reasons[newest] == ["newest", "newest safety checkpoint", "last"], reasons
        assert real["changed"] and real["deleted"] == dry["deleted"], real
        assert _store_listing(host) == {cid: listing[cid] for cid in keep}
        restored = _module(host, "gitops.rollback.restore", {"checkpoint": "v1"})
        assert restored["changed"] and host_snapshot(host) == at_v1[host.name], host.name


ROLE = "gitops.rollback.checkpoint"


def _checkpoint_play(label: str, content: str, keep: int = 0) -> dict:
    """h1: app.conf changed to ``content``, then the checkpoint role with ``label`` (and a retention count)."""
    role_vars = {"checkpoint_label": label, "gitops_rollback_paths": MANAGED, "gitops_rollback_keep": keep}
    return {"hosts": "h1", "gather_facts": False, "tasks": [
        {"name": "Change the configuration", "ansible.builtin.copy": {"dest": "/etc/app/app.conf", "content": content}},
        {"name": "Checkpoint", "ansible.builtin.include_role": {"name": ROLE}, "vars": role_vars}]}


def _labels(host) -> list:
    """The labels of a host's checkpoints, oldest first."""
    found = [json.loads(path.read_text()) for path in (host.store / "checkpoints").glob("*.json")]
    return [manifest["label"] for manifest in sorted(found, key=lambda manifest: manifest["id"])]


def test_the_role_prunes_to_keep_and_refuses_a_damaged_checkpoint_naming_the_object(checkpointed_fleet, run_playbook):
    """The checkpoint role's one module run per host verifies what it stored and prunes to gitops_rollback_keep; a
    damaged object of the checkpoint it reports fails the run, naming the object."""
    h1, h2 = checkpointed_fleet.hosts[0], checkpointed_fleet.hosts[1]
    big = os.urandom(300_000)  # a loose object (not packed), so one file to damage
    (h1.local("/srv/app") / "big.bin").write_bytes(big)

    kept = run_playbook([_checkpoint_play("build-2", "workers=2\n"), _checkpoint_play("build-3", "workers=3\n"),
                         _checkpoint_play("build-4", "workers=4\n", keep=2)])

    assert kept.ok, kept
    # build-2 pruned on h1 only; the release tag v1 is never pruned
    assert _labels(h1) == ["v1", "build-3", "build-4"] and _labels(h2) == ["v1"]
    objects = sorted(path.name for path in (h1.store / "objects").rglob("*") if path.is_file())
    sha = hashlib.sha256(big).hexdigest()
    damaged = next(path for path in (h1.store / "objects").rglob(sha + "*"))
    damaged.write_bytes(b"rotten" + big[6:])

    again = run_playbook([_checkpoint_play("build-4", "workers=4\n", keep=2)])

    assert not again.ok
    assert sha in again.stdout and "hash mismatch" in again.stdout and "state=absent" in again.stdout, again.stdout
    assert _labels(h1) == ["v1", "build-3", "build-4"]  # nothing stored is lost
    assert sorted(path.name for path in (h1.store / "objects").rglob("*") if path.is_file()) == objects


def _module(host, module: str, args: dict, check: bool = False) -> dict:
    """What ``module`` returns run on ``host`` as a task runs it there (no controller); fails the test on an error."""
    done = host.module(module, args, check=check)
    assert done.ok and not done.events[-1]["result"].get("failed"), (host.name, module, done.events[-1]["result"])
    return done.events[-1]["result"]


def _store_listing(host) -> dict:
    """Checkpoint id -> label of every checkpoint in the host's store."""
    return {path.stem: json.loads(path.read_text())["label"] or ""
            for path in (host.store / "checkpoints").glob("*.json")}
