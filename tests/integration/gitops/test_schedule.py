"""Scheduled rollbacks and checkpoints through ``gitops-rollback schedule``: the real rollback and
checkpoint playbooks run by ansible-runner against a local host, planned when scheduled and again
when they run; who scheduled or cancelled what is in the audit log. The checkpoint v1 the rollbacks
go back to is set-up: the checkpoint module as Ansible runs it on the host (``run_task``), not a
playbook run."""

from __future__ import annotations

import datetime
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from gitops_support import cli_env, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # the command runs the playbooks through ansible-runner


@pytest.fixture
def site(tmp_path: Path, run_task: Any, collections_path: Path) -> Dict[str, Any]:
    """A local host whose app directory was checkpointed as v1 (the checkpoint module on the host, as the
    checkpoint playbook runs it) and then changed; the CLI's environment."""
    app = tmp_path / "srv" / "app"
    app.mkdir(parents=True)
    (app / "app.ini").write_text("workers = 4\n")
    home = tmp_path / "home"
    home.mkdir()
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"app1": {
        "ansible_connection": "local", "ansible_python_interpreter": __import__("sys").executable,
        "gitops_rollback_paths": [str(app)], "gitops_rollback_store_path": str(tmp_path / "store")}}}}))
    env = {**cli_env(collections_path), "HOME": str(home)}
    env.pop("XDG_STATE_HOME", None)
    checkpoint = {"paths": [str(app)], "label": "v1", "store_path": str(tmp_path / "store")}
    _run, taken = run_task("gitops.rollback.checkpoint", checkpoint, env={"HOME": str(home)})
    assert taken["status"] == "ok" and taken["changed"], taken
    (app / "app.ini").write_text("workers = 0\n")
    return {"app": app, "home": home, "inventory": inventory, "env": env, "tmp": tmp_path,
            "store": tmp_path / "store", "schedule": home / ".local" / "state" / "gitops-rollback" / "schedule.json",
            "audit": home / ".local" / "state" / "gitops-rollback" / "audit.jsonl"}


def cli(site: Dict[str, Any], *args: str) -> Any:
    return run_cli(["schedule", *args], site["env"], site["tmp"])


def entries(site: Dict[str, Any]) -> List[Dict[str, Any]]:
    return json.loads(site["schedule"].read_text())["entries"] if site["schedule"].exists() else []


def audit(site: Dict[str, Any], operation: str | None = None) -> List[Dict[str, Any]]:
    records = [json.loads(line) for line in site["audit"].read_text().splitlines()] if site["audit"].exists() else []
    return [r for r in records if operation is None or r.get("operation") == operation]


def test_a_scheduled_rollback_is_planned_now_and_runs_when_due(site: Dict[str, Any]) -> None:
    scheduled = cli(site, "rollback", "--to", "v1", "--at", "+2h", "-i", str(site["inventory"]), "--reason", "bad release")
    assert scheduled.returncode == 0, scheduled.stderr + scheduled.stdout
    [entry] = entries(site)
    assert entry["status"] == "pending" and entry["target"] == "v1" and entry["planned"]
    assert (site["app"] / "app.ini").read_text() == "workers = 0\n"  # planned in check mode: nothing changed
    [record] = [r for r in audit(site, "schedule") if r["event"] == "scheduled"]
    assert record["run_id"] == entry["id"] and record["target"] == "v1" and record["scheduled_by"] == entry["scheduled_by"]
    assert record["actor"]["user"] == entry["scheduled_by"]

    early = cli(site, "run-due")  # not due yet
    assert early.returncode == 0 and (site["app"] / "app.ini").read_text() == "workers = 0\n"

    due = cli(site, "run-due", "--now", entry["at"])
    assert due.returncode == 0, due.stdout + due.stderr
    assert (site["app"] / "app.ini").read_text() == "workers = 4\n"
    [entry] = entries(site)
    assert entry["status"] == "done" and entry["runs"][-1]["ok"]
    completed = [r for r in audit(site, "rollback") if r["event"] == "completed"]
    assert completed and completed[-1].get("trigger") == "schedule", completed
    assert entry["id"] in completed[-1].get("reason", ""), completed[-1]

    again = cli(site, "run-due", "--now", entry["at"])  # done: never runs twice
    assert again.returncode == 0 and len([r for r in audit(site, "rollback") if r["event"] == "completed"]) == len(completed)


def test_a_rollback_that_cannot_be_planned_is_not_scheduled(site: Dict[str, Any]) -> None:
    refused = cli(site, "rollback", "--to", "v9", "--at", "+2h", "-i", str(site["inventory"]))
    assert refused.returncode == 1
    assert "cannot be planned, so it was not scheduled" in refused.stderr and "v9" in refused.stderr, refused.stderr
    assert entries(site) == [] and not [r for r in audit(site, "schedule") if r["event"] == "scheduled"]
    bad_label = cli(site, "rollback", "--to", "v1;reboot", "--at", "+2h", "-i", str(site["inventory"]))
    assert bad_label.returncode == 1 and "--to" in bad_label.stderr and entries(site) == []


def test_the_plan_is_made_again_when_it_runs_and_a_vanished_target_changes_nothing(site: Dict[str, Any]) -> None:
    scheduled = cli(site, "rollback", "--to", "v1", "--at", "+1h", "-i", str(site["inventory"]))
    assert scheduled.returncode == 0, scheduled.stderr
    for manifest in (site["store"] / "checkpoints").glob("*.json"):  # v1 is gone by the window
        manifest.unlink()
    [entry] = entries(site)
    due = cli(site, "run-due", "--now", entry["at"])
    assert due.returncode == 1
    assert (site["app"] / "app.ini").read_text() == "workers = 0\n"
    [entry] = entries(site)
    assert entry["status"] == "failed" and not entry["runs"][-1]["ok"]
    failed = [r for r in audit(site, "schedule") if r["event"] == "failed"]
    assert failed and failed[-1]["run_id"] == entry["id"] and failed[-1]["scheduled_by"] == entry["scheduled_by"]


def test_cancelled_and_missed_rollbacks_do_not_run(site: Dict[str, Any]) -> None:
    at = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    site["schedule"].parent.mkdir(parents=True, exist_ok=True)
    base = {"kind": "rollback", "target": "v1", "at": at, "window": 600, "layers": [], "status": "pending",
            "inventory": str(site["inventory"]), "extravars": {}, "scheduled_by": "ops", "scheduled": at}
    site["schedule"].write_text(json.dumps({"format_version": 1, "entries": [
        {**base, "id": "rollback-cancel-me"}, {**base, "id": "rollback-late"}]}))
    cancelled = cli(site, "cancel", "rollback-cancel-me")
    assert cancelled.returncode == 0, cancelled.stderr
    unknown = cli(site, "cancel", "rollback-nope")
    assert unknown.returncode == 1 and "pending: rollback-late" in unknown.stderr
    late = (datetime.datetime.fromisoformat(at.replace("Z", "+00:00")) + datetime.timedelta(hours=2)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    due = cli(site, "run-due", "--now", late)
    assert due.returncode == 1 and "missed" in due.stdout
    assert (site["app"] / "app.ini").read_text() == "workers = 0\n"
    assert {e["id"]: e["status"] for e in entries(site)} == {"rollback-cancel-me": "cancelled", "rollback-late": "missed"}
    events = {(r["event"], r["run_id"]) for r in audit(site, "schedule")}
    assert {("cancelled", "rollback-cancel-me"), ("missed", "rollback-late")} <= events
    assert not audit(site, "rollback")


def test_scheduled_checkpoints_are_labelled_by_their_slot(site: Dict[str, Any]) -> None:
    scheduled = cli(site, "checkpoint", "--every", "1h", "--start", "+1h", "--layers", "config", "-i", str(site["inventory"]))
    assert scheduled.returncode == 0, scheduled.stderr
    [entry] = entries(site)
    first = entry["at"]
    due = cli(site, "run-due", "--now", first)
    assert due.returncode == 0, due.stdout + due.stderr

    def labels() -> List[str]:
        return sorted(json.loads(p.read_text()).get("label") or "" for p in (site["store"] / "checkpoints").glob("*.json"))

    slot = datetime.datetime.fromisoformat(first.replace("Z", "+00:00"))
    assert labels() == sorted(["v1", "scheduled/" + slot.strftime("%Y%m%dT%H%MZ")])
    assert cli(site, "run-due", "--now", first).returncode == 0 and len(labels()) == 2  # that slot is taken
    [entry] = entries(site)
    assert entry["at"] == (slot + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_checkpoints_when_changed_record_only_changes_made_outside_a_deploy(site: Dict[str, Any]) -> None:
    refused = cli(site, "checkpoint", "--every", "15m", "--when-changed", "-i", str(site["inventory"]))
    assert refused.returncode == 1 and "--layers config" in refused.stderr and entries(site) == []
    scheduled = cli(site, "checkpoint", "--every", "15m", "--start", "+1h", "--layers", "config", "--when-changed",
                    "-i", str(site["inventory"]))
    assert scheduled.returncode == 0, scheduled.stderr
    first = entries(site)[0]["at"]
    slot = datetime.datetime.fromisoformat(first.replace("Z", "+00:00"))

    def labels() -> List[str]:
        return sorted(json.loads(p.read_text()).get("label") or "" for p in (site["store"] / "checkpoints").glob("*.json"))

    assert cli(site, "run-due", "--now", first).returncode == 0  # app.ini changed after v1: recorded
    assert labels() == sorted(["v1", "scheduled/" + slot.strftime("%Y%m%dT%H%MZ")])
    later = (slot + datetime.timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cli(site, "run-due", "--now", later).returncode == 0  # nothing changed since: nothing new
    assert len(labels()) == 2


@pytest.mark.deep
def test_checkpoints_when_migrated_record_a_database_only_when_its_migration_version_moved(
        tmp_path: Path, collections_path: Path) -> None:
    database, migrations, home = tmp_path / "app.db", tmp_path / "migrations", tmp_path / "home"
    migrations.mkdir()
    home.mkdir()
    for version, table in enumerate(("customers", "orders"), start=1):
        (migrations / f"V{version:04d}__{table}.up.sql").write_text(f"CREATE TABLE {table} (id INTEGER);\n")
        (migrations / f"V{version:04d}__{table}.down.sql").write_text(f"DROP TABLE {table};\n")
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"db1": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "gitops_rollback_store_path": str(tmp_path / "store"),
        "gitops_rollback_databases": [{"engine": "sqlite", "database": str(database), "migrations_dir": str(migrations)}],
    }}}}))
    site = {"env": {**cli_env(collections_path), "HOME": str(home)}, "tmp": tmp_path,
            "schedule": home / ".local" / "state" / "gitops-rollback" / "schedule.json"}
    site["env"].pop("XDG_STATE_HOME", None)
    if str(collections_path) not in sys.path:
        sys.path.insert(0, str(collections_path))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate as mig
    from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate_plan as plan
    from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection

    def migrate(version: int) -> None:
        conn = DbConnection(engine="sqlite", database=str(database))
        mig.run_operation(plan.Params(operation="apply", conn=conn, migrations_dir=str(migrations), version=str(version)))

    migrate(1)
    refused = cli(site, "checkpoint", "--every", "15m", "--when-migrated", "-i", str(inventory))
    assert refused.returncode == 1 and "--layers database" in refused.stderr and entries(site) == []
    scheduled = cli(site, "checkpoint", "--every", "15m", "--start", "+1h", "--layers", "database", "--when-migrated",
                    "-i", str(inventory))
    assert scheduled.returncode == 0, scheduled.stderr
    slot = datetime.datetime.fromisoformat(entries(site)[0]["at"].replace("Z", "+00:00"))

    def run_slot(number: int) -> Dict[str, Any]:
        now = (slot + datetime.timedelta(minutes=15 * number)).strftime("%Y-%m-%dT%H:%M:%SZ")
        due = cli(site, "run-due", "--now", now)
        assert due.returncode == 0, due.stdout + due.stderr
        found = [json.loads(p.read_text()) for p in (tmp_path / "store" / "checkpoints").glob("*.json")]
        return {m["label"]: [c.get("migration_version") for c in m["components"]] for m in found}

    first = "scheduled/" + slot.strftime("%Y%m%dT%H%MZ")
    assert run_slot(0) == {first: [1]}  # no backup yet: taken
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO customers VALUES (1)")
    assert run_slot(1) == {first: [1]}  # rows changed, the migration version did not: nothing new
    migrate(2)
    third = "scheduled/" + (slot + datetime.timedelta(minutes=30)).strftime("%Y%m%dT%H%MZ")
    assert run_slot(2) == {first: [1], third: [2]}
