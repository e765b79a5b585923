"""A Terraform entry with a name (its snapshots' component <workspace>@<name>): the checkpoint playbook
snapshots it under that name and the rollback playbook finds and reverts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e  # runs ansible-playbook through the tf_local fixture
TfSetup = Any  # the fixture object of conftest.py

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


def test_a_named_project_is_checkpointed_and_rolled_back_by_its_name(tf_local: TfSetup, tmp_path: Path) -> None:
    tf = tf_local
    v1 = tf.deploy("v1")
    entry = tf.module_args(name="infra-prod")  # verified against the configuration at the tag v1
    entry.pop("state_lock_timeout")
    variables = {"gitops_rollback_terraform": [entry], "gitops_rollback_audit_log": str(tmp_path / "audit.jsonl"),
                 "rollback_lock_dir": str(tmp_path / "locks"), "gitops_rollback_store_path": str(tmp_path / "host-store"),
                 "gitops_rollback_paths": []}

    checkpoint = tf.run(PLAYBOOKS / "checkpoint.yml", inventory=tf.inventory, env=tf.env,
                        extra_vars={**variables, "checkpoint_label": "v1"})
    assert checkpoint.ok, [(e["task"], e["result"].get("msg")) for e in checkpoint.events if e["status"] == "failed"]
    tf.deploy("v2")

    rollback = tf.run(PLAYBOOKS / "rollback.yml", inventory=tf.inventory, env=tf.env,
                      extra_vars={**variables, "rollback_to": "v1", "rollback_layers": ["infrastructure"]})

    assert rollback.ok, [(e["task"], e["result"].get("msg")) for e in rollback.events if e["status"] == "failed"]
    after = tf.state()
    assert after["outputs"] == v1["outputs"] and after["lineage"] == v1["lineage"]
