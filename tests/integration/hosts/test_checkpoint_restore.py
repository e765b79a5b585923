"""End-to-end: checkpoint and roll back three real SSH hosts through ansible-playbook."""

from __future__ import annotations

import json
import os

from harness.objects import replace_object
from hosts_support import PLAYBOOKS, break_release, host_snapshot


def task_results(result, task, host=None, status=None):
    """Results of a task (role tasks are named '<role> : <task>') on a host."""
    return [e for e in result.events if e.get("event") == "result" and e["task"].split(" : ")[-1] == task
            and (host is None or e["host"] == host) and (status is None or e["status"] == status)]


def task_result(result, task, host):
    found = task_results(result, task, host)
    assert found, "no result for %r on %s\n%s" % (task, host, result)
    return found[-1]["result"]


def checkpoint(run_playbook, fleet_vars, label, **kwargs):
    result = run_playbook(PLAYBOOKS / "checkpoint.yml", extra_vars={**fleet_vars, "checkpoint_label": label}, **kwargs)
    assert result.ok, result
    return result


def rollback(run_playbook, fleet_vars, target, **kwargs):
    return run_playbook(PLAYBOOKS / "rollback.yml", extra_vars={**fleet_vars, "rollback_to": target}, **kwargs)


def test_rollback_brings_every_host_back_to_its_own_checkpoint(prepared_fleet, run_playbook, fleet_vars):
    before = {host.name: host_snapshot(host) for host in prepared_fleet}
    assert before["h1"] != before["h2"] != before["h3"], "hosts must differ for the test to mean anything"
    checkpoint(run_playbook, fleet_vars, "v1")
    for host in prepared_fleet:
        break_release(host)
        assert host_snapshot(host) != before[host.name]

    result = rollback(run_playbook, fleet_vars, "v1")

    assert result.ok, result
    for host in prepared_fleet:
        assert host_snapshot(host) == before[host.name], host.name
        restored = task_result(result, "Restore the managed paths", host.name)
        assert restored["changed"] and restored["verified"]
        ops = {(c["op"], c["path"]) for c in restored["changes"]["/srv/app"]}
        assert {("update", "index.html"), ("delete", "new.js"), ("delete", "newdir"), ("create", "empty"),
                ("update", "logo"), ("create", "static/img/a.png"), ("meta", "run.sh")} <= ops


def test_a_rollback_can_itself_be_rolled_back(prepared_fleet, run_playbook, fleet_vars):
    at_v1 = {host.name: host_snapshot(host) for host in prepared_fleet}
    checkpoint(run_playbook, fleet_vars, "v1")
    for host in prepared_fleet:
        break_release(host)
    broken = {host.name: host_snapshot(host) for host in prepared_fleet}
    assert rollback(run_playbook, fleet_vars, "v1").ok

    labels = set()
    for host in prepared_fleet:
        for manifest in (host.store / "checkpoints").iterdir():
            labels.add(json.loads(manifest.read_text())["label"])
    safety = [label for label in labels if label and label.startswith("safety/rollback-")]
    assert len(safety) == 1, labels

    undo = rollback(run_playbook, fleet_vars, safety[0])

    assert undo.ok, undo
    for host in prepared_fleet:
        assert host_snapshot(host) == broken[host.name], host.name

    # Retention: keep_last=1 keeps the newest checkpoint, the release tag (v1) and the newest safety
    # checkpoint; the dry run deletes nothing (the real run then deletes exactly what it listed), and
    # v1 still restores after the objects only the forgotten checkpoints used are collected.
    stores = {host.name: _store_listing(host) for host in prepared_fleet}
    prune = {"state": "pruned", "keep_last": 1}
    pruned = run_playbook([{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "retention dry run", "check_mode": True, "gitops.rollback.checkpoint": prune},
        {"name": "retention", "gitops.rollback.checkpoint": prune},
    ]}])
    assert pruned.ok, pruned
    for host in prepared_fleet:
        listing = stores[host.name]
        newest = max(listing)
        newest_safety = max(cid for cid, label in listing.items() if label.startswith("safety/"))
        keep = {newest, newest_safety} | {cid for cid, label in listing.items() if label == "v1"}
        assert len(keep) == 2 and len(listing) > len(keep), listing
        dry = task_result(pruned, "retention dry run", host.name)
        assert sorted(dry["deleted"]) == sorted(set(listing) - keep), (listing, dry)
        assert {item["id"] for item in dry["forgotten"]} == set(listing) - keep
        reasons = {item["id"]: item["reasons"] for item in dry["kept"]}
        assert set(reasons) == keep and "label matches v[0-9]*" in reasons[min(keep)], reasons
        assert reasons[newest] == ["newest", "newest safety checkpoint", "last"], reasons
        real = task_result(pruned, "retention", host.name)
        assert real["changed"] and real["deleted"] == dry["deleted"], real
        assert _store_listing(host) == {cid: listing[cid] for cid in keep}
    assert rollback(run_playbook, fleet_vars, "v1").ok
    for host in prepared_fleet:
        assert host_snapshot(host) == at_v1[host.name], host.name


def _store_listing(host) -> dict:
    """Checkpoint id -> label of every checkpoint in the host's store."""
    return {path.stem: json.loads(path.read_text())["label"] or ""
            for path in (host.store / "checkpoints").glob("*.json")}


def test_a_fifo_is_checkpointed_and_restored_and_a_planted_link_is_replaced_not_followed(
        prepared_fleet, run_playbook, fleet_vars, tmp_path):
    secret = tmp_path / "root-only"
    secret.write_bytes(b"only root may read this\n")
    os.chmod(secret, 0o600)
    for host in prepared_fleet:
        pipe = host.local("/srv/app") / "pipe"
        os.mkfifo(pipe)
        os.chmod(pipe, 0o640)
    before = {host.name: host_snapshot(host) for host in prepared_fleet}
    checkpoint(run_playbook, fleet_vars, "v1")  # a FIFO in the tree: the checkpoint does not hang
    for host in prepared_fleet:
        app = host.local("/srv/app")
        (app / "pipe").unlink()
        (app / "index.html").unlink()
        os.symlink(secret, app / "index.html")  # planted by the application user
        os.chmod(app / "run.sh", 0o777)
    secret_before = (secret.read_bytes(), secret.stat().st_mode, secret.stat().st_mtime_ns)

    result = rollback(run_playbook, fleet_vars, "v1")

    assert result.ok, result
    for host in prepared_fleet:
        assert host_snapshot(host) == before[host.name], host.name
    assert (secret.read_bytes(), secret.stat().st_mode, secret.stat().st_mtime_ns) == secret_before, \
        "the file behind the planted link kept its bytes, mode and time"


def test_second_rollback_changes_nothing(prepared_fleet, run_playbook, fleet_vars):
    checkpoint(run_playbook, fleet_vars, "v1")
    for host in prepared_fleet:
        break_release(host)
    assert rollback(run_playbook, fleet_vars, "v1").ok

    again = rollback(run_playbook, fleet_vars, "v1")

    assert again.ok, again
    assert all(stats["changed"] == 0 for stats in again.stats.values()), again.stats


def test_check_mode_reports_the_plan_and_changes_nothing(prepared_fleet, run_playbook, fleet_vars):
    checkpoint(run_playbook, fleet_vars, "v1")
    for host in prepared_fleet:
        break_release(host)
    broken = {host.name: host_snapshot(host) for host in prepared_fleet}
    stores = {host.name: sorted(os.listdir(host.store / "checkpoints")) for host in prepared_fleet}

    plan = rollback(run_playbook, fleet_vars, "v1", check=True, diff=True)

    assert plan.ok, plan
    for host in prepared_fleet:
        assert host_snapshot(host) == broken[host.name]
        assert sorted(os.listdir(host.store / "checkpoints")) == stores[host.name], "check mode wrote a checkpoint"
        assert not task_results(plan, "Restore the managed paths", host.name)  # the dry run is the plan
        config = [line for line in task_result(plan, "Show the plan", host.name)["msg"] if line.startswith("config:")]
        assert config and "/srv/app: " in config[0] and "update index.html" in config[0], config


def test_unknown_label_lists_the_available_checkpoints(prepared_fleet, run_playbook, fleet_vars):
    checkpoint(run_playbook, fleet_vars, "v1")

    result = rollback(run_playbook, fleet_vars, "v9")

    assert not result.ok
    failed = task_results(result, "Refuse the rollback, naming what is missing where", status="failed")
    assert len(failed) == 1
    message = failed[0]["result"]["msg"]
    assert "nothing was changed on any host" in message
    for host in ("h1", "h2", "h3"):
        assert "[%s / config]" % host in message
    assert "'v9' is not in" in message and "v1 (" in message and "checkpoint_info" in message


def test_corrupted_blob_is_refused_before_any_change(prepared_fleet, run_playbook, fleet_vars):
    checkpoint(run_playbook, fleet_vars, "v1")
    for host in prepared_fleet:
        break_release(host)
    h2 = prepared_fleet["h2"]
    manifest = json.loads(next((h2.store / "checkpoints").iterdir()).read_text())
    tree_sha = manifest["roots"][0]["tree"]
    tree = [json.loads(line) for line in (h2.store / "objects" / tree_sha[:2] / tree_sha).read_text().splitlines()]
    victim = next(e for e in tree if e["path"] == "index.html")
    replace_object(h2.store, victim["sha256"], b"tampered")
    broken = {host.name: host_snapshot(host) for host in prepared_fleet}

    result = rollback(run_playbook, fleet_vars, "v1")

    assert not result.ok
    for host in prepared_fleet:
        assert host_snapshot(host) == broken[host.name], "a corrupted checkpoint on h2 must stop every host"
    message = task_results(result, "Refuse the rollback, naming what is missing where", status="failed")[0]["result"]["msg"]
    assert "[h2 / config]" in message and victim["sha256"] in message
    assert "[h1 / config]" not in message and "[h3 / config]" not in message


def test_restore_module_refuses_corrupted_blob_naming_path_and_hashes(prepared_fleet, run_playbook, fleet_vars):
    checkpoint(run_playbook, fleet_vars, "v1")
    h1 = prepared_fleet["h1"]
    break_release(h1)
    manifest = json.loads(next((h1.store / "checkpoints").iterdir()).read_text())
    tree_sha = manifest["roots"][0]["tree"]
    tree = [json.loads(line) for line in (h1.store / "objects" / tree_sha[:2] / tree_sha).read_text().splitlines()]
    victim = next(e for e in tree if e["path"] == "index.html")
    replace_object(h1.store, victim["sha256"], b"tampered")
    broken = host_snapshot(h1)

    play = [{"hosts": "h1", "gather_facts": False, "tasks": [
        {"name": "restore", "gitops.rollback.restore": {"checkpoint": "v1"}}]}]
    result = run_playbook(play)

    assert not result.ok
    message = task_result(result, "restore", "h1")["msg"]
    assert "/srv/app/index.html" in message and victim["sha256"] in message
    assert "hashes" in message or "found" in message
    assert host_snapshot(h1) == broken
