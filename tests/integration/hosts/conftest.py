"""Fixtures for the host checkpoint/restore end-to-end tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import Fleet, run_playbook
from hosts_support import MANAGED, PLAYBOOKS, host_snapshot, populate, restore_hosts, save_hosts


@dataclass
class AtV1:
    """The fleet's hosts with distinct content (a FIFO in /srv/app), checkpointed as v1 by checkpoint.yml."""

    copy: Path
    """Every host's files and store right after the checkpoint (:func:`hosts_support.save_hosts`)."""
    snapshots: dict
    """Host name -> :func:`hosts_support.host_snapshot` of its content at v1."""


@pytest.fixture
def fleet_vars() -> dict:
    """Extra vars that point the collection's playbooks at the managed paths."""
    return {"gitops_rollback_paths": MANAGED}


@pytest.fixture(scope="session")
def hosts_at_v1(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory, collections_path: Path) -> AtV1:
    """Made once per pytest worker by a real checkpoint.yml run: distinct v1 content on every host (files,
    modes, owners, links, an empty directory and a FIFO), checkpointed as v1; and a copy of all of it, which
    ``checkpointed_fleet`` puts back before each test."""
    fleet.ensure_running()
    fleet.wipe()
    for seed, host in enumerate(fleet, start=1):
        populate(host, seed)
        pipe = host.local("/srv/app") / "pipe"
        os.mkfifo(pipe)
        os.chmod(pipe, 0o640)
    snapshots = {host.name: host_snapshot(host) for host in fleet}
    assert snapshots["h1"] != snapshots["h2"] != snapshots["h3"], "hosts must differ for the tests to mean anything"
    # a FIFO in the tree: the checkpoint does not hang
    taken = run_playbook(PLAYBOOKS / "checkpoint.yml", fleet.inventory, {"gitops_rollback_paths": MANAGED,
                                                                         "checkpoint_label": "v1"},
                         collections_dir=collections_path, cwd=tmp_path_factory.mktemp("checkpoint-run"))
    assert taken.ok, taken
    return AtV1(save_hosts(fleet, tmp_path_factory.mktemp("hosts-at-v1")), snapshots)


@pytest.fixture
def checkpointed_fleet(hosts_at_v1: AtV1, clean_fleet: Fleet) -> Fleet:
    """The fleet as ``hosts_at_v1`` made it (put back from its copy)."""
    restore_hosts(clean_fleet, hosts_at_v1.copy)
    assert {host.name: host_snapshot(host) for host in clean_fleet} == hosts_at_v1.snapshots, "the copy is exact"
    return clean_fleet
