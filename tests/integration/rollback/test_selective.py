"""Selective rollback through the rollback playbook: rollback_components rolls back one database of two and one
flag set, and nothing else; the safety checkpoint holds exactly those (ansible-playbook on a local host)."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


def value(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT v FROM t").fetchone()[0]


def deploy(site: Path, version: int) -> None:
    for name in ("app.db", "billing.db"):
        with sqlite3.connect(site / name) as db:
            db.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
            db.execute("DELETE FROM t")
            db.execute("INSERT INTO t VALUES (?)", (version,))
    (site / "etc" / "app.conf").write_text("version=%d\n" % version)
    (site / "flags.json").write_text(json.dumps({"checkout_v2": version == 2}) + "\n")


def test_rollback_components_rolls_back_what_it_names_and_the_safety_checkpoint_covers_exactly_that(
        run_playbook, run_task, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "etc").mkdir(parents=True)
    deploy(site, 1)
    store = tmp_path / "store"
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"app1": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "gitops_rollback_store_path": str(store), "gitops_rollback_paths": [str(site / "etc")],
        "gitops_rollback_flags": [{"path": str(site / "flags.json")}],
        "gitops_rollback_databases": [{"engine": "sqlite", "database": str(site / "app.db")},
                                      {"engine": "sqlite", "database": str(site / "billing.db"), "name": "billing"}],
    }}}}))
    common = {"gitops_rollback_audit_log": str(tmp_path / "audit.jsonl"), "rollback_lock_dir": str(tmp_path / "locks")}
    taken = run_playbook(PLAYBOOKS / "checkpoint.yml", inventory=inventory, extra_vars={**common, "checkpoint_label": "v1"})
    assert taken.ok, taken
    deploy(site, 2)

    rolled = run_playbook(PLAYBOOKS / "rollback.yml", inventory=inventory, extra_vars={
        **common, "rollback_to": "v1", "rollback_components": ["billing", str(site / "flags.json")]})

    assert rolled.ok, [(e["task"], e["result"].get("msg")) for e in rolled.events if e.get("status") == "failed"]
    assert value(site / "billing.db") == 1 and json.loads((site / "flags.json").read_text()) == {"checkout_v2": False}
    assert value(site / "app.db") == 2 and (site / "etc" / "app.conf").read_text() == "version=2\n"  # not named
    shown = [e["result"]["msg"] for e in rolled.events if e["task"].endswith("Show the plan") and e["status"] == "ok"]
    assert [line.split(":")[0] for line in shown[0] if not line.startswith("safety checkpoint")] == ["flags", "database"]
    _run, listed = run_task("gitops.rollback.checkpoint_info", {"store_path": str(store), "details": True})
    safety = [c for c in listed["checkpoints"] if (c.get("label") or "").startswith("safety/")]
    assert len(safety) == 1, listed["checkpoints"]
    assert safety[0]["roots"] == []  # no managed path: the config layer does not change
    assert sorted((c["type"], c["name"]) for c in safety[0]["components"]) == [
        ("database", "sqlite/%s" % (site / "billing.db")), ("flags", "file:%s" % (site / "flags.json"))]
