"""Fixtures for the GitOps tests: an inventory with the managed paths, a config repo pushed to a bare one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import run_playbook
from gitops_support import MANAGED, REPO_ROOT, ConfigRepo, InstalledCli, cli_env, deploy, git, install_cli


@pytest.fixture
def gitops_inventory(clean_fleet: Any, tmp_path: Path) -> Path:
    """The fleet's hosts with the managed paths as group vars (a private copy, the session one is untouched)."""
    path = tmp_path / "inventory.yml"
    path.write_text(json.dumps(inventory_data(clean_fleet), indent=2))
    return path


def inventory_data(fleet: Any) -> dict:
    """The fleet's hosts with the managed paths as group vars, and pipelining on as roles/rollback/README.md
    recommends (and inventories/demo does): the runs of the CLI and its hook, which start from a user's plain
    environment (no ANSIBLE_PIPELINING), make one SSH command per module run, not five."""
    return {"all": {"children": {"fleet": {
        "hosts": {h.name: fleet.host_vars(h) for h in fleet},
        "vars": {"gitops_rollback_paths": MANAGED, "ansible_pipelining": True},
    }}}}


@pytest.fixture
def config_repo(tmp_path: Path, collections_path: Path) -> ConfigRepo:
    bare = tmp_path / "config.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", str(bare))
    return ConfigRepo(work=work, bare=bare, env=cli_env(collections_path))


@pytest.fixture(scope="session")
def checkpointed_copy(fleet: Any, tmp_path_factory: pytest.TempPathFactory, collections_path: Path) -> Path:
    """Made once per session (per pytest worker) with the real checkpoint playbook: checkpoints v1 and v2, v2
    deployed; a copy of the hosts' files and stores, which ``checkpointed`` puts back before each test (the
    GitOps modules that start from it test what comes after the checkpoints, not the checkpoint playbook)."""
    fleet.ensure_running()
    fleet.wipe()
    tmp = tmp_path_factory.mktemp("checkpointed")
    inventory = tmp / "inventory.yml"
    inventory.write_text(json.dumps(inventory_data(fleet), indent=2))
    for release in ("v1", "v2"):
        deploy(fleet, release)
        result = run_playbook(REPO_ROOT / "playbooks" / "checkpoint.yml", inventory,
                              {"checkpoint_label": release}, collections_dir=collections_path, cwd=tmp)
        assert result.ok, result
    return fleet.snapshot(tmp / "hosts")


@pytest.fixture
def checkpointed(clean_fleet: Any, checkpointed_copy: Path, run_playbook: Any) -> Any:
    """Hosts with checkpoints v1 and v2 taken with the real checkpoint playbook; v2 deployed (put back
    from the module's copy, after ``clean_fleet`` emptied them)."""
    clean_fleet.restore(checkpointed_copy)
    return clean_fleet


@pytest.fixture(scope="session")
def installed_cli(tmp_path_factory: pytest.TempPathFactory) -> InstalledCli:
    """The collection installed from its tarball and the command pip-installed from it (a fresh virtualenv)."""
    return install_cli(tmp_path_factory.mktemp("installed"))
