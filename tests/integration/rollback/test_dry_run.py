"""A dry run changes nothing: guard.yml with rollback_dry_run against a broken v2 in every layer (three SSH
hosts, PostgreSQL with migrations, Terraform state) leaves every layer and every store byte-identical and
says "dry run" in the audit log; an unclear answer stops rollback.yml before anything runs; a real guard run
takes its safety checkpoint of the broken state before it rolls back.

rollback.yml's own dry run (the plan of the first play, nothing else runs) over every layer:
rollback/test_ordered_rollback.py (check mode, which sets the same plays' planning as the answer does); with
the survey's answer, hosts and stores unchanged and the audit log saying dry run: gitops/test_awx_cli_dry_run.py;
the answers themselves: the unit tests of the dry_run filter and run_mode."""

from __future__ import annotations

import json
from pathlib import Path

from test_ordered_rollback import failures

#: A gate that always fails: the command provider reads an error rate of 1.0 from a file.
ERROR_RATE = "error-rate"


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


def guard_vars(drill, **extra) -> dict:
    """A guard whose gate fails at once (command provider), with its state in the test's directory."""
    (drill.tmp / ERROR_RATE).write_text("1.0\n")
    return {"rollback_to": "v1", "guard_interval": 1, "guard_count": 1,
            "guard_metrics": [{"name": "error-rate", "severity": "critical",
                               "provider": {"type": "command", "argv": ["cat", str(drill.tmp / ERROR_RATE)]},
                               "success_condition": "result < 0.05"}],
            "guard_cooldown_path": str(drill.tmp / "cooldown.json"),
            "guard_audit_log_path": str(drill.audit_log), **extra}


def records_since(drill, count: int) -> list[dict]:
    return drill.audit()[count:]


def test_dry_runs_change_nothing_and_a_real_guard_run_checkpoints_first(drill):
    before = fingerprint(drill)

    # The guard, with the dry-run answer as a boolean (an extra var from a file or the API; the AWX survey's
    # "yes": gitops/test_awx_cli_dry_run.py): the gate fails, the rollback is only planned.
    seen = len(drill.audit())
    guard = drill.playbook("guard.yml", **guard_vars(drill, rollback_dry_run=True))
    assert guard.ok, (failures(guard), guard.stdout[-6000:])
    assert fingerprint(drill) == before, "a dry run of the guard changed a layer or a store"
    records = records_since(drill, seen)
    assert {(r["operation"], r["event"]) for r in records} >= {("guard", "alert"), ("rollback", "completed")}, records
    assert all(r.get("dry_run") is True for r in records), [(r["operation"], r["event"], r.get("dry_run"))
                                                            for r in records]
    planned = [r for r in records if r["operation"] == "rollback" and r["event"] == "completed"][-1]
    assert "dry run" in planned["message"] and planned["result"]["check_mode"] is True

    # A dry-run answer that is neither yes nor no stops before anything runs.
    seen = len(drill.audit())
    unclear = drill.playbook("rollback.yml", rollback_to="v1", rollback_dry_run="maybe")
    assert not unclear.ok
    messages = [str(failure[2]) for failure in failures(unclear)]
    assert any("rollback_dry_run must be yes or no (got 'maybe')" in message for message in messages), messages
    assert fingerprint(drill) == before and records_since(drill, seen) == []

    # The real guard run: rolled back to v1, after a safety checkpoint of the broken v2 in every layer.
    seen = len(drill.audit())
    real = drill.playbook("guard.yml", **guard_vars(drill, rollback_dry_run="no"))
    assert real.ok, (failures(real), real.stdout[-6000:])
    after = drill.state()
    for name in ("h1", "h2", "h3"):
        assert after["hosts"][name] == drill.v1["hosts"][name], name
    assert after["orders_columns"] == drill.v1["orders_columns"] and after["tf_release"] == drill.v1["tf_release"]
    records = records_since(drill, seen)
    assert all(r.get("dry_run") is False for r in records), records
    run_id = [r for r in records if r["operation"] == "rollback"][0]["run_id"]
    for host in drill.fleet:
        manifests = [json.loads(p.read_text()) for p in (host.store / "checkpoints").glob("*.json")]
        safety = [m for m in manifests if m["label"] == f"safety/{run_id}"]
        assert len(safety) == 1, (host.name, [m["label"] for m in manifests])
        # the safety checkpoint holds the broken v2 (debug.env): it was taken before the first change
        tree = safety[0]["roots"][0]["tree"]
        paths = [json.loads(line)["path"] for line in
                 (host.store / "objects" / tree[:2] / tree).read_text().splitlines()]
        assert "debug.env" in paths, (host.name, paths)
    assert json.loads(Path(drill.tmp / "cooldown.json").read_text())["last_rollback"], "the real run took the cooldown"
