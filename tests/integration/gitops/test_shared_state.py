"""Shared controller state in PostgreSQL: two controllers (separate home directories) share one lock,
one cooldown and one hash-chained audit log, as AWX jobs in throwaway containers must."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict

import psycopg2
import pytest

from harness import repo_root

pytestmark = pytest.mark.slow
ROLLBACK = str(repo_root() / "playbooks" / "rollback.yml")


@pytest.fixture
def controllers(tmp_path: Path) -> Dict[str, Dict[str, str]]:
    """Two controllers: each its own home, so nothing local is shared between them."""
    homes = {}
    for name in ("alice", "bob"):
        home = tmp_path / "home" / name
        home.mkdir(parents=True)
        homes[name] = {"HOME": str(home), "USER": name}
    return homes


@pytest.fixture
def local(tmp_path: Path) -> Dict[str, Path]:
    """An inventory of one host, ``app1``, reached through the local connection."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"app1": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    return {"inventory": inventory}


@pytest.fixture
def app(tmp_path: Path, run_task, local) -> Dict[str, Path]:
    """One local host whose app directory was checkpointed as v1 (the module as Ansible runs it on the
    local host) and then changed."""
    inventory = local["inventory"]
    app_dir = tmp_path / "srv" / "app"
    app_dir.mkdir(parents=True)
    (app_dir / "app.ini").write_text("workers = 4\n")
    _run, made = run_task("gitops.rollback.checkpoint", {
        "paths": [str(app_dir)], "label": "v1", "store_path": str(tmp_path / "store")})
    assert made["status"] == "ok", made
    (app_dir / "app.ini").write_text("workers = 0\n")
    return {"inventory": inventory, "dir": app_dir, "store": tmp_path / "store"}


def audit_rows(url: str) -> list:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT body FROM gitops_rollback.audit ORDER BY seq")
        return [json.loads(body) for (body,) in cursor.fetchall()]


def test_a_second_controller_is_refused_while_the_first_holds_the_lock_and_the_log_has_both_in_order(
        run_playbook, run_task, state_url, controllers, app) -> None:
    """alice's run takes the lock and writes its audit records with the modules as the rollback role runs them
    (``run_task``, alice's home); bob's rollback.yml (another home, the same inventory at another path) is
    refused while she holds it and goes ahead once she released it."""
    alice = controllers["alice"]

    def as_alice(module: str, args: dict) -> dict:
        _run, done = run_task(module, dict(args, state_url=state_url), env=alice)
        assert done["status"] == "ok", done
        return done

    lock = as_alice("gitops.rollback.run_lock", {"name": "shop", "owner": "alice", "operation": "rollback to v1"})
    as_alice("gitops.rollback.audit", {"event": "started", "operation": "rollback", "run_id": "alice-run", "target": "v1"})
    rollback_vars = {"rollback_to": "v1", "gitops_rollback_paths": [str(app["dir"])],
                     "gitops_rollback_store_path": str(app["store"]), "gitops_rollback_state": state_url,
                     "gitops_rollback_lock_name": "shop"}
    # bob keeps the same inventory at another path: the lock is the inventory's name, not its path
    bob_inventory = Path(controllers["bob"]["HOME"]) / "inventory.yml"
    bob_inventory.write_text(app["inventory"].read_text())
    refused = run_playbook(ROLLBACK, inventory=bob_inventory, extra_vars=rollback_vars, env=controllers["bob"])
    assert not refused.ok
    assert "Refusing a second rollback" in refused.stdout and "alice" in refused.stdout, refused.stdout
    assert (app["dir"] / "app.ini").read_text() == "workers = 0\n"  # bob changed nothing

    as_alice("gitops.rollback.audit", {"event": "completed", "operation": "rollback", "run_id": "alice-run",
                                       "target": "v1"})
    released = as_alice("gitops.rollback.run_lock", {"name": "shop", "owner": "alice", "state": "absent",
                                                     "token": lock["token"]})
    assert released["changed"], released
    second = run_playbook(ROLLBACK, inventory=bob_inventory, extra_vars=rollback_vars, env=controllers["bob"])
    assert second.ok, second
    assert (app["dir"] / "app.ini").read_text() == "workers = 4\n"

    rows = audit_rows(state_url)
    order = [(r["run_id"] == "alice-run", r["event"]) for r in rows if r["event"] in ("started", "completed")]
    assert order[:2] == [(True, "started"), (True, "completed")] and order[-2:] == [(False, "started"),
                                                                                    (False, "completed")], rows
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    for home in controllers.values():  # nothing went to the controllers' own files
        assert not (Path(home["HOME"]) / ".local" / "state" / "gitops-rollback" / "audit.jsonl").exists()


# The module behaviours of the shared state run the modules as Ansible runs them on a host (run_task),
# each controller with its own home; the playbook runs above prove the lock through rollback.yml.
def test_the_cooldown_holds_across_controllers(run_task, state_url, controllers) -> None:
    args = {"path": "/nonexistent/unused.json", "key": "prod::web", "cooldown": 3600, "state_url": state_url}
    _run, taken = run_task("gitops.rollback.guard_cooldown", args, env=controllers["alice"])
    assert taken["status"] == "ok", taken
    assert taken["allowed"] and taken["recorded"], taken
    _run, refused = run_task("gitops.rollback.guard_cooldown", args, env=controllers["bob"])
    assert refused["status"] == "ok", refused
    assert not refused["allowed"] and refused["last"] == taken["last"] and refused["seconds_left"] > 3500, refused


def test_a_changed_or_removed_audit_row_is_reported_and_a_dry_run_creates_nothing(
        run_task, state_url, controllers, collections_path) -> None:
    lock = {"name": "inventory", "owner": "alice", "state_url": state_url}
    _run, planned = run_task("gitops.rollback.run_lock", lock, check=True, env=controllers["alice"])
    assert planned["status"] == "ok", planned
    with psycopg2.connect(state_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass('gitops_rollback.locks')")
        assert cursor.fetchone()[0] is None  # check mode: no schema, no row

    sys.path.insert(0, str(collections_path))
    from ansible_collections.gitops.rollback.plugins.module_utils.controller.state_pg import PgState

    with PgState(state_url) as state:
        for event in ("started", "completed", "started"):
            state.append_audit({"event": event, "operation": "rollback", "run_id": "r1"})
        assert state.read_audit()[1]["ok"]
    with psycopg2.connect(state_url) as conn, conn.cursor() as cursor:
        cursor.execute("UPDATE gitops_rollback.audit SET body = replace(body, 'completed', 'failed') WHERE seq = 2")
        cursor.execute("DELETE FROM gitops_rollback.audit WHERE seq = 3")
        cursor.execute("INSERT INTO gitops_rollback.audit SELECT 4, hash, body FROM gitops_rollback.audit WHERE seq = 1")
    with PgState(state_url, create=False) as state:
        integrity = state.read_audit()[1]
    kinds = {(p["seq"], p["kind"]) for p in integrity["problems"]}
    assert (2, "altered") in kinds and not integrity["ok"], integrity
    assert "missing" in {kind for seq, kind in kinds}, integrity


def test_a_state_that_is_not_a_postgresql_url_is_refused_with_the_way_out(run_task, controllers) -> None:
    _run, refused = run_task("gitops.rollback.run_lock", {"name": "x", "owner": "alice",
                                                          "state_url": "mysql://root@localhost/state"},
                             env=controllers["alice"])
    assert refused["status"] == "ignored"  # the task fails
    assert "postgresql:// URL" in refused["msg"], refused


def test_the_report_command_reads_the_shared_audit_log(state_url, collections_path, tmp_path) -> None:
    """``gitops-rollback report --state`` reports the runs of every controller from the shared log."""
    sys.path.insert(0, str(collections_path))
    from ansible_collections.gitops.rollback.plugins.module_utils.controller.state_pg import PgState  # pylint: disable=import-outside-toplevel
    with PgState(state_url) as state:
        for run_id, who, outcome in (("alice-run", "alice", "completed"), ("bob-run", "bob", "failed")):
            for event in ("started", outcome):
                state.append_audit({"event": event, "run_id": run_id, "operation": "rollback", "time": "2026-12-01T10:00:00Z",
                                    "epoch": 1_796_119_200.0, "level": "info", "who": {"user": who}, "target": "v1",
                                    "trigger": "manual"})
    done = subprocess.run(
        [sys.executable, "-m", "gitops_rollback", "report", "--state", state_url, "--json",
         "--log", str(tmp_path / "absent.jsonl"), "--collections-path", str(collections_path)],
        capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    rollbacks = json.loads(done.stdout)["summary"]["rollbacks"]
    assert (rollbacks["total"], rollbacks["success"], rollbacks["failed"]) == (2, 1, 1), rollbacks
    assert "password" not in done.stdout + done.stderr
