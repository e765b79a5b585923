"""Fixtures for the GitOps tests: an inventory with the managed paths, a config repo pushed to a bare one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gitops_support import MANAGED, REPO_ROOT, ConfigRepo, InstalledCli, cli_env, deploy, git, install_cli


@pytest.fixture
def gitops_inventory(clean_fleet: Any, tmp_path: Path) -> Path:
    """The fleet's hosts with the managed paths as group vars (a private copy, the session one is untouched)."""
    data = {"all": {"children": {"fleet": {
        "hosts": {h.name: clean_fleet.host_vars(h) for h in clean_fleet},
        "vars": {"gitops_rollback_paths": MANAGED},
    }}}}
    path = tmp_path / "inventory.yml"
    path.write_text(json.dumps(data, indent=2))
    return path


@pytest.fixture
def config_repo(tmp_path: Path, collections_path: Path) -> ConfigRepo:
    bare = tmp_path / "config.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", str(bare))
    return ConfigRepo(work=work, bare=bare, env=cli_env(collections_path))


@pytest.fixture
def checkpointed(clean_fleet: Any, gitops_inventory: Path, run_playbook: Any) -> Any:
    """Hosts with checkpoints v1 and v2 taken with the real checkpoint playbook; v2 deployed."""
    for release in ("v1", "v2"):
        deploy(clean_fleet, release)
        result = run_playbook(REPO_ROOT / "playbooks" / "checkpoint.yml", inventory=gitops_inventory,
                              extra_vars={"checkpoint_label": release})
        assert result.ok, result
    return clean_fleet


@pytest.fixture(scope="session")
def installed_cli(tmp_path_factory: pytest.TempPathFactory) -> InstalledCli:
    """The collection installed from its tarball and the command pip-installed from it (a fresh virtualenv)."""
    return install_cli(tmp_path_factory.mktemp("installed"))
