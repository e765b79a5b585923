"""Load: checkpoint and roll back 20 real SSH hosts at once (forks 20), the rollback while a second inventory
(five of the hosts) rolls back concurrently against stores whose locks must be honoured. Figures are printed and
written to $GITOPS_ROLLBACK_LOAD_REPORT (JSON) when set."""

from __future__ import annotations

import json
import os
import random
import resource
import threading
import time
from pathlib import Path

import pytest

from harness import run_playbook as harness_run_playbook, start_hosts

pytestmark = pytest.mark.slow

HOSTS = 20
FILES = 200
#: Forks for every host at once. Two such runs open 25 SSH connections together on a machine the rest of the suite
#: keeps busy: the connection timeout is longer than the harness's 15 s (what is proven here is the store lock and
#: the restored bytes, not how fast sshd answers; a fresh-clone run once failed one of the two runs, cause unseen).
ENV = {"ANSIBLE_FORKS": str(HOSTS), "ANSIBLE_PIPELINING": "True", "ANSIBLE_TIMEOUT": "60"}


@pytest.fixture(scope="module")
def big_fleet(tmp_path_factory):
    fleet = start_hosts(HOSTS, tmp_path_factory.mktemp("load-fleet"))
    fleet.write_inventory(fleet.workdir / "inventory.yml")
    yield fleet
    fleet.stop()


def fill(fleet, version: str) -> dict:
    """Write FILES files under each host's /srv/app; return {host: {path: bytes}}."""
    trees = {}
    for host in fleet:
        root = host.local("/srv/app")
        rng = random.Random(host.name + version)
        tree = {}
        for index in range(FILES):
            rel = "d%d/f%03d" % (index % 10, index)
            data = rng.randbytes(2000 if index % 20 else 100_000)
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
            tree[rel] = data
        trees[host.name] = tree
    return trees


def tree_of(host) -> dict:
    root = host.local("/srv/app")
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def play(module: str, args: dict, name: str = "task", hosts: str = "fleet") -> list:
    return [{"name": name, "hosts": hosts, "gather_facts": False,
             "tasks": [{"name": name, module: args}]}]


@pytest.fixture(scope="module")
def checkpoint_v1(big_fleet, collections_path) -> dict:
    """Every host of the big fleet filled with its v1 tree and checkpointed at once (label v1), timed: the trees
    written, the run and its seconds. The test rolls back to it."""
    for host in big_fleet:
        host.wipe()
    trees = fill(big_fleet, "v1")
    store = {"store_path": "/var/lib/gitops-rollback", "lock_timeout": 30}
    started = time.monotonic()
    result = harness_run_playbook(play("gitops.rollback.checkpoint", dict(store, paths=["/srv/app"], label="v1")),
                                  big_fleet.inventory, env=ENV, collections_dir=collections_path)
    return {"trees": trees, "result": result, "seconds": time.monotonic() - started}


def report(figures: dict) -> None:
    print("LOAD", json.dumps(figures))
    path = os.environ.get("GITOPS_ROLLBACK_LOAD_REPORT")
    if path:
        existing = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        existing.update(figures)
        Path(path).write_text(json.dumps(existing, indent=1))


def run_failures(index: int, result) -> tuple:
    """Which of the two runs failed: its failed or unreachable hosts and tasks with their messages, and stderr."""
    failed = [(e["host"], e["task"], e.get("status"), e["result"].get("msg")) for e in result.events
              if e.get("status") in ("failed", "unreachable")]
    return index, failed, result.stderr[-2000:]


def test_twenty_hosts_checkpoint_and_roll_back_at_once_while_another_inventory_rolls_back_five(
        big_fleet, checkpoint_v1, run_playbook, tmp_path):
    """Twenty hosts checkpointed at once (forks 20: ``checkpoint_v1``), then rolled back at once by one run (its
    inventory: all twenty) while a second inventory (h6..h10) rolls back at the same time.

    On the shared hosts one run waits for the store lock (lock_timeout) instead of interleaving; every host ends
    exactly at its checkpoint and both runs succeed.
    """
    env = ENV
    store = {"store_path": "/var/lib/gitops-rollback", "lock_timeout": 120}
    v1, result, checkpoint_s = checkpoint_v1["trees"], checkpoint_v1["result"], checkpoint_v1["seconds"]
    assert result.ok, result
    assert len(result.results("task", status="ok")) == HOSTS

    fill(big_fleet, "v2")
    hosts = list(big_fleet)
    shared = tmp_path / "inv-h6-h10.json"
    shared.write_text(json.dumps({"all": {"children": {"fleet": {
        "hosts": {h.name: big_fleet.host_vars(h) for h in hosts[5:10]}}}}}))
    inventories = [big_fleet.inventory, shared]
    results = [None, None]
    seconds = [0.0, 0.0]

    def roll(index):
        started = time.monotonic()
        results[index] = run_playbook(play("gitops.rollback.restore", dict(store, checkpoint="v1", paths=["/srv/app"])),
                                      inventory=inventories[index], env=env)
        seconds[index] = time.monotonic() - started

    started = time.monotonic()
    threads = [threading.Thread(target=roll, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    both_s = time.monotonic() - started
    assert all(r.ok for r in results), [run_failures(index, r) for index, r in enumerate(results) if not r.ok]
    assert len(results[0].results("task", status="ok")) == HOSTS, "the first run rolled back all twenty"
    for host in big_fleet:
        assert tree_of(host) == v1[host.name], host.name
    changed = {e["host"] for r in results for e in r.results("task") if e["result"].get("changed")}
    assert changed == {h.name for h in hosts}, "every host was restored by a run that reached it"
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report({"hosts": HOSTS, "files_per_host": FILES, "checkpoint_s": round(checkpoint_s, 1),
            "rollback_s": round(seconds[0], 1), "concurrent_inventories_s": round(both_s, 1),
            "controller_peak_rss_mib": round(peak_kib / 1024, 1)})
