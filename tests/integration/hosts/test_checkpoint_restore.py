"""End-to-end: checkpoint and roll back three real SSH hosts through ansible-playbook; retention on each host."""

from __future__ import annotations

import json
import os

from hosts_support import PLAYBOOKS, break_release, host_snapshot


def task_results(result, task, host=None, status=None):
    """Results of a task (role tasks are named '<role> : <task>') on a host."""
    return [e for e in result.events if e.get("event") == "result" and e["task"].split(" : ")[-1] == task
            and (host is None or e["host"] == host) and (status is None or e["status"] == status)]


def task_result(result, task, host):
    found = task_results(result, task, host)
    assert found, "no result for %r on %s\n%s" % (task, host, result)
    return found[-1]["result"]


def rollback(run_playbook, fleet_vars, target, **kwargs):
    return run_playbook(PLAYBOOKS / "rollback.yml", extra_vars={**fleet_vars, "rollback_to": target}, **kwargs)


def test_checkpoint_plan_rollback_again_undo_and_retention_on_three_hosts(checkpointed_fleet, hosts_at_v1,
                                                                          run_playbook, fleet_vars, tmp_path):
    """One checkpoint of three SSH hosts (checkpoint.yml, with a FIFO in the tree: ``hosts_at_v1``) and the
    playbook runs that follow it, each proving its own outcome: check mode is the plan, the rollback brings every
    host back to its own checkpoint (a FIFO in the tree, a planted link replaced, not followed), a second
    rollback changes nothing and the rollback is itself rolled back through its safety checkpoint (two imports of
    rollback.yml in one run); then retention
    (the checkpoint module on each host, as the tasks run it) keeps what it must and v1 still restores. (A
    target a host's store does not hold is refused naming what there is: unit test_plan.py, and the plan's
    refusal fails the run before any change on any host: rollback/test_ordered_rollback.py over three
    hosts; a corrupted object: there too, and badinput/test_failed_restore.py for the restore module.)"""
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
    # broken state back. Two imports of rollback.yml in one run, a marker play between them: the first is a run
    # of its own (nothing before it), the second needs the label of the first rollback's safety checkpoint.
    labels = set()
    for host in hosts:
        for manifest in (host.store / "checkpoints").iterdir():
            labels.add(json.loads(manifest.read_text())["label"])
    safety = [label for label in labels if label and label.startswith("safety/rollback-")]
    assert len(safety) == 1, labels
    rollback_yml = str(PLAYBOOKS / "rollback.yml")
    marker = {"name": "undo", "hosts": "all", "gather_facts": False,
              "tasks": [{"name": "Undo next", "ansible.builtin.debug": {"msg": "undo"}}]}

    again_then_undo = run_playbook([{"import_playbook": rollback_yml, "vars": {"rollback_to": "v1"}}, marker,
                                    {"import_playbook": rollback_yml, "vars": {"rollback_to": safety[0]}}],
                                   extra_vars=fleet_vars)

    assert again_then_undo.ok, again_then_undo
    split = next(i for i, e in enumerate(again_then_undo.events) if e["task"] == "Undo next")
    again, undo = again_then_undo.events[:split], again_then_undo.events[split + 1:]
    assert {e["host"] for e in again} == {host.name for host in hosts}, again
    assert not [e for e in again if e["changed"]], [e for e in again if e["changed"]]
    assert {e["host"] for e in undo if e["task"].split(" : ")[-1] == "Restore the managed paths" and e["changed"]} \
        == {host.name for host in hosts}, "the undo restored every host"
    for host in hosts:
        assert host_snapshot(host) == broken[host.name], host.name
        held = [json.loads(path.read_text())["label"] or "" for path in (host.store / "checkpoints").glob("*.json")]
        assert len([label for label in held if label.startswith("safety/")]) == 2, \
            (host.name, held)  # the first rollback's and the undo's: the rollback again took none

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


def _module(host, module: str, args: dict, check: bool = False) -> dict:
    """What ``module`` returns run on ``host`` as a task runs it there (no controller); fails the test on an error."""
    done = host.module(module, args, check=check)
    assert done.ok and not done.events[-1]["result"].get("failed"), (host.name, module, done.events[-1]["result"])
    return done.events[-1]["result"]


def _store_listing(host) -> dict:
    """Checkpoint id -> label of every checkpoint in the host's store."""
    return {path.stem: json.loads(path.read_text())["label"] or ""
            for path in (host.store / "checkpoints").glob("*.json")}
