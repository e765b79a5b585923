"""The one-host site of the hooks tests (a uniquely named module: conftest modules of different test
directories share the name ``conftest``): a release root, a managed directory and a service on one host over the
local connection, checkpointed at v1 by checkpoint.yml once per pytest worker, then at v2."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Tuple

import pytest
import yaml

from harness import run_module_process, run_playbook

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


class Site:
    """One host with a release root, a managed directory and a service, and the hook log."""

    def __init__(self, tmp: Path, run_playbook, collections_dir: Path) -> None:
        self.tmp, self.run_playbook, self.collections_dir = tmp, run_playbook, collections_dir
        self.conf = tmp / "etc" / "app" / "app.conf"
        self.root = tmp / "srv"
        self.log = tmp / "hooks.log"
        self.inventory = tmp / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": {"app1": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "gitops_rollback_store_path": str(tmp / "store"),
            "gitops_rollback_paths": [str(self.conf.parent)],
            "gitops_rollback_release_root": str(self.root),
            "gitops_rollback_services": [{"name": "app", "layers": ["release", "config"], "command": [
                "sh", "-c", 'echo "services restarted" >> "$1"', "restart", str(self.log)]}],
        }}}}))

    def vars(self, **extra) -> dict:
        return {"gitops_rollback_audit_log": str(self.tmp / "audit.jsonl"),
                "rollback_lock_dir": str(self.tmp / "locks"), **extra}

    def deploy(self, tag: str) -> None:
        build = self.tmp / f"build-{tag}"
        build.mkdir(exist_ok=True)
        (build / "VERSION").write_text(tag + "\n")
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"release={tag}\n")
        # Set-up, not what the tests prove: the release module alone, as Ansible runs it on the host.
        result = run_module_process("gitops.rollback.release", {"root": str(self.root), "src": str(build), "label": tag},
                                    collections_dir=self.collections_dir, cwd=self.tmp)
        assert result.ok, result

    def state(self) -> dict:
        return {"conf": self.conf.read_text(), "current": (self.root / "current" / "VERSION").read_text()}

    def hooks(self, spec: dict[str, str]) -> dict[str, str]:
        """Write a hook file for each ``{<when>_<layer>: text}`` and return the role's variables."""
        found = {}
        for key, text in spec.items():
            path = self.tmp / f"{key}.yml"
            path.write_text(text)
            when, layer = key.split("_", 1)
            found[f"gitops_rollback_{when}_{layer}_tasks"] = str(path)
        return found

    def rollback(self, **extra):
        return self.run_playbook(PLAYBOOKS / "rollback.yml", inventory=self.inventory,
                                 extra_vars=self.vars(**extra))


@pytest.fixture(scope="session")
def site_at_v2(tmp_path_factory: pytest.TempPathFactory, collections_path: Path) -> Tuple[Path, Path]:
    """Made once per pytest worker: v1 deployed and checkpointed (a real checkpoint.yml run), then v2 deployed;
    returns the site's directory and a copy of it, which the ``site`` fixture puts back before each test."""
    tmp = tmp_path_factory.mktemp("site")

    def run(playbook, inventory=None, extra_vars=None, **kwargs):
        return run_playbook(playbook, inventory, extra_vars, collections_dir=collections_path,
                            cwd=tmp_path_factory.mktemp("run"), **kwargs)

    made = Site(tmp, run, collections_path)
    made.deploy("v1")
    checkpoint = run(PLAYBOOKS / "checkpoint.yml", made.inventory, made.vars(checkpoint_label="v1"))
    assert checkpoint.ok, checkpoint
    made.deploy("v2")
    copy = tmp_path_factory.mktemp("site-at-v2") / "site"
    shutil.copytree(tmp, copy, symlinks=True)
    return tmp, copy


@pytest.fixture
def site(site_at_v2: Tuple[Path, Path], run_playbook, collections_path: Path) -> Site:
    """v1 deployed and checkpointed (checkpoint.yml), then v2 deployed (put back from the worker's copy)."""
    tmp, copy = site_at_v2
    shutil.rmtree(tmp)
    shutil.copytree(copy, tmp, symlinks=True)
    return Site(tmp, run_playbook, collections_path)
