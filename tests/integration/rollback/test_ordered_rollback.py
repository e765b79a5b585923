"""The drill: three SSH hosts, PostgreSQL with migrations, Terraform state; roll every layer back
in order with playbooks/rollback.yml and prove each equals v1.

The dry runs are the first plays of the real rollback's run: guard.yml with the AWX survey's answer "yes"
(its gate fails, the rollback is only planned) and rollback.yml with the answer as a boolean (an extra var
from a file or the API); every layer and every store is compared while the run waits between them and
the real rollback. The answers themselves (yes/no/true/check mode): the unit tests of the dry_run filter
and run_mode; rollback.yml in check mode (``--check --diff``, the AWX job of type check and
``gitops-rollback trigger --check``): gitops/test_awx_cli_dry_run.py; a real guard run's rollback, safety
checkpoint and cooldown: that test's real guard job and health/test_guard_hour.py; every layer rolled back
through the guard: the demo (drill/test_drill.py)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

from harness.objects import replace_object


def failures(result):
    """The failure messages of a run, for assertion messages."""
    return [(e["host"], e["task"], e["result"].get("msg")) for e in result.events if e.get("status") == "failed"]


#: Modules of the layers and of the safety checkpoint: none runs in a dry run, not even in check mode.
LAYER_ACTIONS = {"gitops.rollback.restore", "gitops.rollback.release", "gitops.rollback.db_migrate",
                 "gitops.rollback.db_restore", "gitops.rollback.checkpoint", "gitops.rollback.db_backup",
                 "gitops.rollback.traffic_weights", "ansible.builtin.command", "ansible.builtin.service",
                 "gitops.rollback.feature_flags"}

#: The play of the first test's run between the dry runs and the real rollback.
PAUSE = "Wait while the test compares every layer and store after the dry runs"
GUARD_PLAY = "Guard the release with a health gate"


def assert_plan_only(events, drill):
    """A dry run is the plan: no layer task ran on any host, and each host's printed plan says, per
    layer, what would change - the files, the release that becomes current, the migrations reverted,
    the Terraform snapshot's serial - and what the safety checkpoint must cover."""
    ran = [e for e in events if e.get("status") != "skipped"]
    assert not {e["action"] for e in ran} & LAYER_ACTIONS, sorted({e["action"] for e in ran} & LAYER_ACTIONS)
    previews = [e for e in ran if e["action"] == "gitops.rollback.terraform_state"]
    assert {e["task"].split(" : ")[-1] for e in previews} \
        <= {"Plan the Terraform revert on the controller, and take its safety snapshot"}, "the Terraform revert is only previewed"
    assert not [item for e in previews for item in e["result"].get("results", []) if "safety_snapshot" in item], \
        "a dry run stores no Terraform safety snapshot"
    shown = {e["host"]: e["result"]["msg"] for e in events
             if e["task"].endswith("Show the plan") and e.get("status") == "ok"}
    assert set(shown) == {"h1", "h2", "h3"}, shown
    lines = shown["h1"]
    by_layer = {layer: [line for line in lines if line.startswith(layer + ":")] for layer in
                ("flags", "release", "config", "database", "infrastructure", "services")}
    assert all(by_layer.values()), lines
    assert by_layer["flags"][0].endswith("would change file:%s: checkout_v2 true -> false" % (drill.tmp / "flags-h1.json"))
    assert "etcd:%s: added_in_v2 \"true\" -> null, checkout_v2 \"true\" -> \"false\"" % drill.etcd_prefix \
        in [line for line in shown["h2"] if line.startswith("flags:")][0], shown["h2"]
    assert lines.index(by_layer["flags"][0]) == 0, "the flags layer comes first"
    assert "to v1 (" in by_layer["release"][0] and "needs" in by_layer["release"][0], lines
    assert "debug.env" in by_layer["config"][0] and "/etc/app" in by_layer["config"][0], lines
    assert "version 4 -> 3, reverting V0004__" in by_layer["database"][0], lines
    assert any("serial" in line for line in by_layer["infrastructure"]), lines
    assert "would restart app" in by_layer["services"][0], lines
    assert any(line.startswith("safety checkpoint safety/") for line in lines), lines
    assert not any(line.startswith("database:") for line in shown["h2"]), shown["h2"]


def fingerprint(drill) -> dict:
    """Every layer and every store: files, release link, database rows and migrations, Terraform
    state (serial, lineage, bytes), each host's store, the controller's store, locks and cooldown."""
    return {
        "layers": drill.state(),
        "migrations": drill.sql("SELECT json_agg(m ORDER BY version) FROM gitops_rollback_migrations m"),
        "stores": drill.stores(),
        "locks": sorted(p.name for p in drill.lock_dir.iterdir()) if drill.lock_dir.exists() else None,
        "cooldown": (drill.tmp / "cooldown.json").exists(),
    }


def guard_vars(drill) -> dict:
    """A guard whose gate fails at once (the command provider reads an error rate of 1.0 from a file),
    with its state in the drill's directory."""
    (drill.tmp / "error-rate").write_text("1.0\n")
    return {"guard_interval": 1, "guard_count": 1,
            "guard_metrics": [{"name": "error-rate", "severity": "critical",
                               "provider": {"type": "command", "argv": ["cat", str(drill.tmp / "error-rate")]},
                               "success_condition": "result < 0.05"}],
            "guard_cooldown_path": str(drill.tmp / "cooldown.json"), "guard_audit_log_path": str(drill.audit_log)}


def dry_runs_then_rollback(ready: Path, go: Path) -> list[dict]:
    """One run: the guard's dry run, rollback.yml's dry run, a pause (``ready`` written, waits for ``go``),
    then the real rollback.yml."""
    return [
        {"ansible.builtin.import_playbook": "gitops.rollback.guard", "vars": {"rollback_dry_run": "yes"}},
        {"ansible.builtin.import_playbook": "gitops.rollback.rollback", "vars": {"rollback_dry_run": True}},
        {"name": PAUSE, "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "Say the dry runs are done", "ansible.builtin.file": {"path": str(ready), "state": "touch"}},
            {"name": "Wait for the test", "ansible.builtin.wait_for": {"path": str(go), "timeout": 600}}]},
        {"ansible.builtin.import_playbook": "gitops.rollback.rollback"},
    ]


def test_dry_runs_change_nothing_then_every_layer_comes_back_to_v1_on_every_host_and_a_second_rollback_is_refused(
        drill):
    assert drill.v2 != drill.v1
    before, seen = fingerprint(drill), len(drill.audit())
    ready, go = drill.tmp / "dry-runs-done", drill.tmp / "go"
    paused: dict[str, Any] = {}

    def meanwhile(run: threading.Thread) -> None:
        """Between the dry runs and the real rollback: what they left; then, once the real rollback holds its
        lock, a second one is refused."""
        try:
            wait_until(ready.exists, run, "the dry runs never finished")
            paused.update(fingerprint=fingerprint(drill), audit=drill.audit())
        finally:
            go.touch()
        second_rollback_is_refused(drill, run)

    result = while_running(lambda: drill.run(dry_runs_then_rollback(ready, go), inventory=drill.inventory,
                                             extra_vars=drill.vars(rollback_to="v1", **guard_vars(drill)),
                                             env=drill.tf.env),
                           meanwhile)

    assert result.ok, (failures(result), result.stdout[-6000:])
    pause = next(i for i, e in enumerate(result.events) if e["play"] == PAUSE)
    dry_events, real_events = result.events[:pause], result.events[pause:]
    # The dry runs: nothing changed in any layer or store, no lock or cooldown left; the guard's alert and
    # both planned rollbacks are recorded as dry runs.
    assert paused["fingerprint"] == before, "a dry run changed a layer or a store"
    dry_records = paused["audit"][seen:]
    assert {(r["operation"], r["event"]) for r in dry_records} >= {("guard", "alert"), ("rollback", "completed")}, \
        dry_records
    assert all(r.get("dry_run") is True for r in dry_records), [(r["operation"], r["event"], r.get("dry_run"))
                                                                for r in dry_records]
    planned = [r for r in dry_records if r["operation"] == "rollback" and r["event"] == "completed"]
    assert len(planned) == 2, "the guard's planned rollback and rollback.yml's: %s" % planned
    assert all("dry run" in r["message"] and r["result"]["check_mode"] is True for r in planned), planned
    assert_plan_only([e for e in dry_events if e["play"] != GUARD_PLAY], drill)  # rollback.yml's three plays

    ran = [e for e in real_events if e.get("status") not in ("skipped", None)]
    previews = [item for e in ran if e["action"] == "gitops.rollback.terraform_state"
                for item in e["result"].get("results", [])]
    assert len(previews) == 1 and previews[0]["safety_snapshot"]["label"].startswith("safety/") \
        and previews[0]["safety_snapshot"]["changed"] is True, "the Terraform preview stores the safety snapshot, once"
    assert not [e for e in ran if e["action"] == "ansible.builtin.async_status"], "no background job to wait for"
    assert not [e for e in ran if e["action"] == "gitops.rollback.rollback_safety"], "no separate safety checkpoint run"
    taken = {e["host"]: e["result"]["safety"]["layers"] for e in ran if e["action"] == "gitops.rollback.rollback_plan"}
    assert sorted(taken) == ["h1", "h2", "h3"] and all(taken.values()), \
        "one module run per host for its plan and its safety checkpoint, of all its layers: %s" % taken
    assert not [e for e in ran if e["action"] in ("gitops.rollback.checkpoint", "gitops.rollback.db_backup")]
    after = drill.state()
    for name in ("h1", "h2", "h3"):
        assert after["hosts"][name] == drill.v1["hosts"][name], name
        assert (drill.tmp / f"restarted-{name}").exists(), "services whose layers changed are restarted"
    for key in ("tables", "orders_columns", "orders", "customers", "schema_version", "tf_release", "tf_resources"):
        assert after[key] == drill.v1[key], key
    assert after["tf_lineage"] == drill.v1["tf_lineage"]
    assert after["tf_serial"] > drill.v2["tf_serial"]
    real = [r for r in drill.audit()[len(paused["audit"]):] if r["operation"] == "rollback"]
    assert [r["event"] for r in real] == ["started", "completed"], "the refused second run records nothing"
    assert all(r["dry_run"] is False for r in real), real
    layers = real[-1]["layers"]
    assert set(layers["h1"]) == {"flags", "release", "config", "database", "infrastructure", "services"}
    assert set(layers["h2"]) == {"flags", "release", "config", "infrastructure", "services"}

    # The rollback can be rolled back: its safety checkpoint brings every layer on every host back to v2.
    label = "safety/" + real[-1]["run_id"]
    assert real[-1]["result"]["safety_checkpoint"]["label"] == label, real[-1]["result"]
    undo = drill.playbook("rollback.yml", rollback_to=label)
    assert undo.ok, failures(undo)
    back = drill.state()
    assert back["hosts"] == drill.v2["hosts"] and back["etcd_flags"] == drill.v2["etcd_flags"]
    for key in ("tables", "orders_columns", "orders", "customers", "schema_version", "tf_release", "tf_resources",
                "tf_lineage"):
        assert back[key] == drill.v2[key], key
    assert drill.sql("SELECT string_agg(code || ':' || pct, ',') FROM coupons") == "FREE:100" and \
        drill.sql("SELECT string_agg(coalesce(coupon, '-'), ',' ORDER BY id) FROM orders") == "FREE,FREE", \
        "the rows the down migration dropped are back, from the safety checkpoint's dump"
    assert back["tf_serial"] > after["tf_serial"], "the state is pushed forward, never back"


def test_an_unclear_dry_run_answer_or_the_free_strategy_stops_rollback_before_anything_runs(drill):
    before, seen = fingerprint(drill), len(drill.audit())

    unclear = drill.playbook("rollback.yml", rollback_to="v1", rollback_dry_run="maybe")

    assert not unclear.ok
    messages = [str(failure[2]) for failure in failures(unclear)]
    assert any("rollback_dry_run must be yes or no (got 'maybe')" in message for message in messages), messages
    assert fingerprint(drill) == before and drill.audit()[seen:] == []

    free = drill.playbook("rollback.yml", rollback_to="v1", ansible_env={"ANSIBLE_STRATEGY": "free"})

    assert not free.ok
    messages = [str(failure[2]) for failure in failures(free)]
    assert any("The free strategy runs each host on its own" in message for message in messages), messages
    assert fingerprint(drill) == before and drill.audit()[seen:] == [], "refused before the lock, a record or a change"


def test_a_corrupted_blob_on_one_host_changes_nothing_anywhere(drill):
    h3 = drill.fleet["h3"]
    manifest = next(json.loads(p.read_text()) for p in (h3.store / "checkpoints").iterdir()
                    if json.loads(p.read_text())["label"] == "v1")
    tree_sha = manifest["roots"][0]["tree"]
    entry = next(json.loads(line) for line in (h3.store / "objects" / tree_sha[:2] / tree_sha).read_text().splitlines()
                 if json.loads(line)["path"] == "app.conf")
    replace_object(h3.store, entry["sha256"], b"bit rot")
    stores = drill.stores()

    result = drill.playbook("rollback.yml", rollback_to="v1")

    assert not result.ok
    assert drill.state() == drill.v2, "a refused rollback must not change any layer on any host"
    refusal = [e for e in result.events if e.get("status") == "failed"][-1]["result"]["msg"]
    assert "nothing was changed on any host" in refusal and "[h3 / config]" in refusal and entry["sha256"] in refusal
    assert "[h1 / config]" not in refusal and "[h2 / config]" not in refusal, "only the host whose object is bad"
    assert drill.stores() == stores, "no safety checkpoint anywhere, not even the Terraform snapshot of the controller"
    removed = sorted(e["host"] for e in result.events if e.get("action") == "gitops.rollback.rollback_safety"
                     and e.get("status") not in ("skipped", None))
    assert removed == ["h1", "h2"], "the safety checkpoints the clear hosts took in their plan's run were removed"
    assert [e["event"] for e in drill.audit()] == ["started", "refused"]


def test_a_failure_on_one_host_stops_the_batch_and_brings_that_host_back_and_the_target_is_resolved_once(drill):
    # h2 breaks after its files are restored (not in the plan, not in the recovery). And on h1, just before its
    # files are restored, the broken v2 files are checkpointed under the label v1 again: a label names its newest
    # checkpoint, the plan named the checkpoint id, which h1 must still come back to.
    fail = drill.tmp / "fail_on_h2.yml"
    fail.write_text("- name: Break h2 mid-rollback\n  ansible.builtin.command:\n"
                    "    argv: [sh, -c, 'echo injected failure >&2; exit 3']\n  changed_when: false\n"
                    "  when: inventory_hostname == 'h2' and not (gitops_rollback_planning | default(false))"
                    " and __rollback_target is not defined\n")
    relabel = drill.tmp / "relabel_on_h1.yml"
    relabel.write_text("- name: Checkpoint the broken files as v1 again\n  gitops.rollback.checkpoint:\n"
                       "    paths: [/etc/app]\n    label: v1\n"
                       "    store_path: \"{{ lookup('gitops.rollback.setting', 'gitops_rollback_store_path') }}\"\n"
                       "  when: inventory_hostname == 'h1' and not (gitops_rollback_planning | default(false))"
                       " and __rollback_target is not defined\n")

    result = drill.playbook("rollback.yml", rollback_to="v1", rollback_serial=1, rollback_layers="flags,release,config",
                            rollback_host_before_restore_tasks_file=str(relabel),
                            rollback_host_after_restore_tasks_file=str(fail))

    assert not result.ok
    after = drill.state()
    labels = [json.loads(p.read_text())["label"] for p in (drill.fleet["h1"].store / "checkpoints").glob("*.json")]
    assert labels.count("v1") == 2, ("the hook checkpointed h1's broken files as v1 again", labels)
    assert after["hosts"]["h1"] == drill.v1["hosts"]["h1"], \
        "the batch before the failure completed, back to the checkpoint the plan named, not the label's newest"
    assert after["hosts"]["h2"] == drill.v2["hosts"]["h2"], ("the failed host is back at its safety checkpoint",
                                                             [e["result"].get("recovery_problem") for e in drill.audit()
                                                              if e["event"] == "failed"])
    assert after["hosts"]["h3"] == drill.v2["hosts"]["h3"], "later batches did not run"
    failed = [e for e in drill.audit() if e["event"] == "failed"]
    assert failed and failed[0]["result"]["host"] == "h2" and failed[0]["result"]["layer"] == "config"
    assert failed[0]["result"]["recovered_to_safety_checkpoint"] is True, failed[0]["result"].get("recovery_problem")
    message = [e for e in result.events if e.get("status") == "failed" and e["host"] == "h2"][-1]["result"]["msg"]
    assert "failed on h2 at the config layer" in message and "task 'Break h2 mid-rollback'" in message
    # the command and its exit code, not only "non-zero return code"
    assert "command: sh -c echo injected failure >&2; exit 3; exit code 3; stderr: injected failure" in message
    assert failed[0]["result"]["problem"] in message and failed[0]["result"]["safety_checkpoint"].startswith("safety/")


def while_running(run: Callable[[], Any], meanwhile: Callable[[threading.Thread], None]) -> Any:
    """Start ``run`` in a thread, call ``meanwhile`` with the thread, then return what ``run`` returned."""
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(run()))
    thread.start()
    try:
        meanwhile(thread)
    finally:
        thread.join(timeout=900)
    assert outcome, "the run did not finish"
    return outcome[0]


def wait_until(condition: Callable[[], bool], run: threading.Thread, problem: str) -> None:
    """Wait (at most 300 s) until ``condition`` holds; fail with ``problem`` if ``run`` ended first."""
    deadline = time.monotonic() + 300
    while not condition():
        assert run.is_alive() and time.monotonic() < deadline, problem
        time.sleep(0.2)


def second_rollback_is_refused(drill, run: threading.Thread) -> None:
    """Once the running rollback holds its lock, a second one is refused, naming the first."""
    wait_until(lambda: drill.lock_dir.exists() and any(drill.lock_dir.glob("*.lock")), run,
               "the first rollback never took its lock")

    second = drill.playbook("rollback.yml", rollback_to="v1")

    assert not second.ok
    message = [e for e in second.events if e.get("status") == "failed"][0]["result"]["msg"]
    assert "Refusing a second rollback" in message and "running one since" in message


def finished(drill, result):
    """The run's completed audit record and its printed report."""
    completed = [e for e in drill.audit() if e["operation"] == "rollback" and e["event"] == "completed"][-1]
    report = [e for e in result.events if e["task"].endswith("Report") and e.get("status") == "ok"][-1]["result"]["msg"]
    return completed, report


def test_a_migration_revert_alone_is_a_change_with_a_safety_checkpoint_of_its_own(drill):
    """And the migrations go back to the checkpoint the plan resolved, not to a label moved since: mid-rollback,
    just before the database layer, the migration label v1 is moved to the current (bad) version; the revert
    must still go to the version the plan's checkpoint id recorded."""
    hook = drill.tmp / "move_label.yml"
    hook.write_text(json.dumps([{
        "name": "Move the migration label v1 to the bad version",
        "gitops.rollback.db_migrate": {
            "operation": "label", "label": "v1", "force": True, "engine": "postgresql", "database": drill.database,
            "login_host": drill.pg.host, "login_port": drill.pg.port, "login_user": drill.pg.user},
        "when": "not (gitops_rollback_planning | default(false)) and __rollback_target is not defined"}]))

    # h1 is the only host with a database: the other hosts would only be planned and skipped.
    result = drill.playbook("rollback.yml", rollback_to="v1", rollback_layers="database", gitops_rollback_hosts="h1",
                            rollback_database_before_restore_tasks_file=str(hook))

    assert result.ok, failures(result)
    assert drill.sql("SELECT version FROM gitops_rollback_labels WHERE label = 'v1'") == "4", "the hook ran"
    after = drill.state()
    for key in ("tables", "orders_columns", "schema_version"):
        assert after[key] == drill.v1[key], key
    rolled = [e["result"]["databases"] for e in result.events
              if e["action"].endswith(".rollback_database") and e.get("status") == "ok"]
    assert rolled and rolled[-1][-1]["method"] == "auto", rolled
    assert rolled[-1][-1]["migrated"]["target_version"] == 3, rolled
    assert after["hosts"] == drill.v2["hosts"], "only the database layer was asked for"
    completed, report = finished(drill, result)
    label = "safety/" + completed["run_id"]
    assert completed["result"]["changed_layers"]["h1"] == ["database"], completed["result"]
    assert completed["result"]["safety_checkpoint"] == {"label": label, "layers": {"h1": ["database"]}}
    assert label in completed["message"] and f"-e rollback_to={label}" in report, report
    # Its safety checkpoint undoes it: the rollback to a safety checkpoint restores every layer's dump (the coupons
    # the down migration dropped are back): the first test's rollback to its safety checkpoint; one that holds
    # only the database restores its dump and skips the layers its run did not touch: the plan's unit test
    # (tests/unit/plugins/module_utils/test_plan.py, test_a_safety_checkpoint_restores_the_dump_and_skips_...).


def test_a_failure_after_the_database_and_terraform_layers_brings_both_back_and_each_host_says_where_it_is(drill):
    # One run, one batch, every layer by its default step, each host its own outcome:
    # - h1's application never starts (it fails in the rollback and again in the recovery): the services layer, the
    #   last, fails after the flags, the release, the config, the database and the Terraform state went back to v1.
    #   h1 comes back to its safety checkpoint: the database from its dump (the down migration dropped v2's coupons;
    #   restored, they are there again) and the Terraform state from its safety snapshot (same lineage, serial
    #   pushed forward); the recovery "fails" (the restart), yet its files and release are back, and the message
    #   must say so.
    # - h2's restart succeeds: it stays at v1 (a failure elsewhere in the batch does not take it back).
    # - h3's failing restart leaves a stray file behind in the managed path: said, and named.
    tfstate = drill.tf.state()
    command = ('case "$(hostname)" in h1) echo "app: release v1 will not start" >&2; exit 4;; '
               'h3) echo x > /etc/app/stray.conf; exit 7;; esac')
    services = [{"name": "app", "layers": ["release", "config"], "command": ["sh", "-c", command]}]

    result = drill.playbook("rollback.yml", rollback_to="v1", gitops_rollback_services=services)

    assert not result.ok
    # On h1, in order: the database layer's step, the infrastructure layer's step, the services layer failing.
    on_h1 = [e for e in result.events if e["host"] == "h1" and e.get("status") in ("ok", "failed")]
    migrated, reverted, restart = (next(((i, e) for i, e in enumerate(on_h1) if first(e)), (None, {})) for first in (
        lambda e: e["action"] == "gitops.rollback.rollback_database",
        lambda e: e["action"] == "gitops.rollback.terraform_state"
        and e["result"].get("invocation", {}).get("module_args", {}).get("operation") == "revert",
        lambda e: e["action"] == "ansible.builtin.command"))
    assert [(d["method"], d.get("migrated", {}).get("target_version")) for d in migrated[1]["result"]["databases"]] \
        == [("auto", 3)], ("the database layer's default step reverted V0004", [e["task"] for e in on_h1])
    assert reverted[1]["result"]["revert"]["to_serial"] > tfstate["serial"], "the infrastructure layer's default step"
    assert migrated[0] < reverted[0] < restart[0] and restart[1]["status"] == "failed", \
        ("on h1 the database, then the infrastructure layer ran before the services layer failed",
         [e["task"] for e in on_h1])
    after = drill.state()
    assert after["hosts"]["h1"] == drill.v2["hosts"]["h1"], "h1's files are byte-equal to its safety checkpoint"
    assert after["hosts"]["h2"] == drill.v1["hosts"]["h2"], "h2's restart succeeded: it stays at v1"
    assert after["etcd_flags"] == drill.v1["etcd_flags"], "h2's etcd flags stay at v1"
    for key in ("tables", "orders_columns", "orders", "customers", "schema_version"):
        assert after[key] == drill.v2[key], (key, failures(result))
    assert drill.sql("SELECT string_agg(code || ':' || pct, ',') FROM coupons") == "FREE:100"
    assert drill.sql("SELECT string_agg(coalesce(coupon, '-'), ',' ORDER BY id) FROM orders") == "FREE,FREE", \
        "the rows the down migration dropped are back"
    state = drill.tf.state()
    assert (state["lineage"], state["outputs"], state["resources"]) == \
        (tfstate["lineage"], tfstate["outputs"], tfstate["resources"]), "the Terraform state is back at v2"
    assert state["serial"] > reverted[1]["result"]["revert"]["to_serial"], "the state is pushed forward, never back"
    failed = {e["result"]["host"]: e["result"] for e in drill.audit() if e["event"] == "failed"}
    assert sorted(failed) == ["h1", "h3"], failed
    assert all(f["layer"] == "services" for f in failed.values()), failed
    messages = {e["host"]: e["result"]["msg"] for e in result.events if e.get("status") == "failed"}
    assert "failed on h1 at the services layer" in messages["h1"] and "release v1 will not start" in messages["h1"], \
        messages
    label = failed["h1"]["safety_checkpoint"]
    assert label.startswith("safety/"), failed["h1"]
    assert failed["h1"]["recovery_state"] == "at_safety_checkpoint" and failed["h1"]["recovered_to_safety_checkpoint"] is True
    assert failed["h1"]["recovery_verified"] == ["release", "config"] and "exit code 4" in failed["h1"]["recovery_problem"]
    assert f"The host is back at its safety checkpoint {label} (verified: release and config" in messages["h1"], messages
    assert "NOT" not in messages["h1"], messages

    assert "stray.conf" in after["hosts"]["h3"]["config"]
    assert {k: v for k, v in after["hosts"]["h3"].items() if k != "config"} == \
        {k: v for k, v in drill.v2["hosts"]["h3"].items() if k != "config"}, "h3's release and flags are back"
    assert failed["h3"]["recovery_state"] == "differs" and failed["h3"]["recovered_to_safety_checkpoint"] is False
    assert failed["h3"]["recovery_differences"] == {"config": ["/etc/app: delete stray.conf"]}, failed["h3"]
    assert f"The host is NOT at its safety checkpoint {failed['h3']['safety_checkpoint']}: config differs " \
           "(/etc/app: delete stray.conf)" in messages["h3"], messages
    assert "back at its safety checkpoint" not in messages["h3"]
