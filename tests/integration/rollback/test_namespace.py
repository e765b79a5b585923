"""One variable namespace: the roles read the store as gitops_rollback_store_path, also when used
alone; the role-specific name they had before is still read, with a deprecation warning."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

DEPRECATION = "checkpoint_store_path is deprecated: set gitops_rollback_store_path"


def test_the_roles_read_the_store_by_its_one_name_and_an_old_name_with_a_warning(run_playbook, tmp_path: Path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"app1": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    app, old_store, store = tmp_path / "app", tmp_path / "old-store", tmp_path / "store"
    app.mkdir()
    (app / "app.conf").write_text("release=v1\n")

    def checkpoint_play(name: str, **variables) -> dict:
        return {"name": name, "hosts": "all", "gather_facts": False, "tasks": [
            {"name": "checkpoint", "ansible.builtin.include_role": {"name": "gitops.rollback.checkpoint"},
             "vars": {"gitops_rollback_paths": [str(app)], "checkpoint_label": "v1", **variables}}]}

    # The old name alone; then the new name (it wins, without a warning), then the layer role alone by the same
    # name, in one run: the restore reads the store the checkpoint role wrote.
    run = run_playbook([
        checkpoint_play("old name", checkpoint_store_path=str(old_store)),
        checkpoint_play("new name", gitops_rollback_store_path=str(store), checkpoint_store_path=str(old_store)),
        {"name": "layer role", "hosts": "all", "gather_facts": False, "tasks": [
            {"name": "deploy v2", "ansible.builtin.copy": {"dest": str(app / "app.conf"), "content": "release=v2\n"}},
            {"name": "restore", "ansible.builtin.include_role": {"name": "gitops.rollback.rollback_host"},
             "vars": {"rollback_host_checkpoint": "v1", "rollback_host_paths": [str(app)],
                      "rollback_host_safety_checkpoint": False, "gitops_rollback_store_path": str(store)}}]}],
        inventory=inventory, env={"ANSIBLE_DEPRECATION_WARNINGS": "True"})

    assert run.ok, run
    assert DEPRECATION in " ".join((run.stdout + run.stderr).split()), "the old name warns, naming the new one"
    warned = {play: [e["task"] for e in run.events if e["play"] == play and DEPRECATION in str(e["result"].get("deprecations"))]
              for play in ("old name", "new name", "layer role")}
    assert warned["old name"] and not warned["new name"] and not warned["layer role"], warned
    assert [json.loads(p.read_text())["label"] for p in (old_store / "checkpoints").iterdir()] == ["v1"]
    assert [json.loads(p.read_text())["label"] for p in (store / "checkpoints").iterdir()] == ["v1"]
    assert run.result("deploy v2", "app1")["changed"] is True, "v2 was deployed before the restore"
    assert (app / "app.conf").read_text() == "release=v1\n"
