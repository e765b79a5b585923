"""End to end: the rollback_infrastructure role (checkpoint, then rollback with a no-drift proof)."""

from __future__ import annotations

from typing import Any

import pytest

TfSetup = Any  # the fixture object of conftest.py

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # the role through ansible-playbook (TfSetup.play)


def role_vars(tf: TfSetup, label: str, **extra: Any) -> dict[str, Any]:
    args = tf.module_args()
    found = {
        "rollback_infrastructure_project_path": args["project_path"],
        "rollback_infrastructure_label": label,
        "rollback_infrastructure_store_path": args["store_path"],
        "rollback_infrastructure_variables": args["variables"],
        "rollback_infrastructure_state_lock_timeout": 10,
    }
    if tf.conn_str:
        found["rollback_infrastructure_backend_config_secrets"] = {"conn_str": tf.conn_str}
    found.update(extra)
    return found


def checkpoint_play(tf: TfSetup, label: str) -> list[dict[str, Any]]:
    return [{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "Checkpoint the infrastructure",
        "ansible.builtin.include_role": {"name": "gitops.rollback.rollback_infrastructure", "tasks_from": "checkpoint"},
        "vars": role_vars(tf, label),
    }]}]


def rollback_play(tf: TfSetup, label: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"hosts": "localhost", "gather_facts": False,
             "roles": [{"role": "gitops.rollback.rollback_infrastructure", "vars": role_vars(tf, label, **extra)}]}]


def test_role_checkpoints_refuses_a_label_without_snapshot_rolls_back_with_no_drift_and_applies_at_a_tag(
        tf_pg: TfSetup) -> None:
    """One configuration on the pg backend: the role's checkpoint, a refusal, a dry run, the rollback with its
    no-drift proof, then the apply_at mode (one set-up; the checkpoint and the refusal share a run, each other step
    is its own ansible-playbook run)."""
    tf = tf_pg
    v1 = tf.deploy("v1")
    # The checkpoint, then (the last play of the same run) a rollback to the tag v2, which has no snapshot
    run = tf.run(checkpoint_play(tf, "v1") + rollback_play(tf, "v2"), inventory=tf.inventory, env=tf.env)
    assert not run.ok
    failed = run.results(status="failed")
    assert [e["task"].split(" : ")[-1] for e in failed] == ["Pre-flight - the snapshot exists"], failed
    assert "No Terraform snapshot labelled v2" in failed[0]["result"]["msg"], failed
    assert tf.state()["serial"] == v1["serial"], "the refused rollback changed the state"
    v2 = tf.deploy("v2")

    dry = tf.run(rollback_play(tf, "v1"), inventory=tf.inventory, env=tf.env, check=True)
    assert dry.ok, dry
    assert tf.state()["serial"] == v2["serial"], "check mode changed the state"

    run = tf.run(rollback_play(tf, "v1"), inventory=tf.inventory, env=tf.env)
    assert run.ok, run
    ran = [e for e in run.results(host="localhost") if e["action"] == "gitops.rollback.terraform_state"
           and e.get("status") != "skipped"]
    assert [e["task"].split(" : ")[-1] for e in ran] == ["Pre-flight - find the snapshot to revert to",
                                                         "Roll the infrastructure back"], \
        "the revert and its no-drift proof are one module run"
    assert ran[-1]["result"]["verify"]["drift"] is False and ran[-1]["result"]["verify"]["tag"] == "v1"
    now = tf.state()
    assert now["outputs"]["release"]["value"] == "v1"
    assert now["lineage"] == v1["lineage"] and now["serial"] > v2["serial"]

    # apply_at: the configuration at a tag (v2, which has no snapshot), not the checkout's (v1), applied
    tf.repo.git("checkout", "--quiet", "--detach", "v1")
    run = tf.run(rollback_play(tf, "v2", rollback_infrastructure_mode="apply_at"), inventory=tf.inventory, env=tf.env)
    assert run.ok, run
    assert tf.state()["outputs"]["release"]["value"] == "v2"
