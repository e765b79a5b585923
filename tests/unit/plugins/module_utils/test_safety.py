"""The safety checkpoint of one host in one process (plugins/module_utils/controller/safety.py), against a real
store, real files, a real release root and a real SQLite database in a temporary directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import CheckpointParams, list_checkpoints
from ansible_collections.gitops.rollback.plugins.module_utils.release.operations import ReleaseParams, apply
from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import database_passwords, with_passwords
from ansible_collections.gitops.rollback.plugins.module_utils.controller.safety import SafetyRequest, take_safety_checkpoint
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


def host(tmp: Path) -> SafetyRequest:
    """A host at v2: managed files, a current release and a SQLite database with rows."""
    etc = tmp / "etc"
    etc.mkdir()
    (etc / "app.conf").write_text("release=v2\n")
    build = tmp / "build"
    build.mkdir()
    (build / "VERSION").write_text("v2")
    apply("present", ReleaseParams(root=str(tmp / "srv"), owner="t", src=str(build), label="v2"))
    with sqlite3.connect(str(tmp / "app.db")) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        conn.executemany("INSERT INTO orders VALUES (?)", [(1,), (2,)])
    return SafetyRequest(label="safety/run-1", reason="safety checkpoint before rollback to v1",
                         layers=["release", "config", "database"], store_path=str(tmp / "store"), owner="t",
                         paths=[str(etc)], release_root=str(tmp / "srv"),
                         databases=[{"engine": "sqlite", "database": str(tmp / "app.db"), "migrations_dir": "/m"}])


def test_one_run_puts_every_host_layer_into_one_checkpoint(tmp_path):
    request = host(tmp_path)

    taken = take_safety_checkpoint(request)

    assert taken["changed"] and taken["layers"] == ["config", "release", "database"]
    listing = list_checkpoints(CheckpointParams(store_path=request.store_path, owner="t"))["checkpoints"]
    assert [c["label"] for c in listing] == ["safety/run-1"], "one checkpoint holds every layer"
    manifest = Store(request.store_path).find("safety/run-1")
    assert manifest["id"] == taken["checkpoint"]
    assert [root["path"] for root in manifest["roots"]] == request.paths
    kinds = sorted((c["type"], c["name"]) for c in manifest["components"])
    assert kinds == [("database", "sqlite/%s" % request.databases[0]["database"]),
                     ("release", request.release_root)], kinds
    recorded = next(c for c in manifest["components"] if c["type"] == "release")
    assert recorded["release"] == taken["release"]["release"] == Path(request.release_root, "current").readlink().name


def test_check_mode_says_what_it_would_take_and_writes_nothing(tmp_path):
    request = host(tmp_path)
    request.check_mode = True

    taken = take_safety_checkpoint(request)

    assert taken["layers"] == ["config", "release", "database"] and taken["checkpoint"] is None
    assert not Path(request.store_path).exists() or not list(Store(request.store_path).manifests())


def test_only_the_layers_asked_for_and_configured_are_taken(tmp_path):
    request = host(tmp_path)
    request.layers = ["config", "infrastructure"]
    request.release_root = ""

    taken = take_safety_checkpoint(request)

    assert taken["layers"] == ["config"] and "database" not in taken and "release" not in taken
    assert [c["type"] for c in Store(request.store_path).find("safety/run-1").get("components", [])] == []


def test_a_failing_layer_fails_the_run_and_keeps_the_layers_taken_before_it(tmp_path):
    request = host(tmp_path)
    request.databases = [{"engine": "sqlite", "database": str(tmp_path / "missing.db")}]

    with pytest.raises(RollbackError):
        take_safety_checkpoint(request)

    manifest = Store(request.store_path).find("safety/run-1")
    assert manifest["roots"] and [c["type"] for c in manifest["components"]] == ["release"]


def test_a_password_by_name_comes_before_the_entry_s_own_and_only_reaches_its_entry():
    entries = [{"name": "shop", "database": "shop", "login_password": "own"},
               {"database": "crm", "login_password": "crm-own"}, {"database": "log"}]
    passwords = database_passwords(entries, {"shop": "vault", "log": ""})
    assert passwords == {"0": "vault", "1": "crm-own"}
    public = [{k: v for k, v in e.items() if k != "login_password"} for e in entries]
    assert [e.get("login_password") for e in with_passwords(public, passwords)] == ["vault", "crm-own", None]


def test_the_flags_go_into_the_same_checkpoint_as_the_managed_paths(tmp_path):
    request = host(tmp_path)
    flags = tmp_path / "flags.json"
    flags.write_text('{"checkout_v2": true}\n')
    request.layers = ["flags", "release", "config", "database"]
    request.flags = [{"path": str(flags)}]

    taken = take_safety_checkpoint(request)

    assert taken["layers"] == ["config", "flags", "release", "database"]
    listing = list_checkpoints(CheckpointParams(store_path=request.store_path, owner="t"))["checkpoints"]
    assert [c["label"] for c in listing] == ["safety/run-1"], "one checkpoint holds every layer"
    manifest = Store(request.store_path).find("safety/run-1")
    assert ("flags", "file:%s" % flags) in [(c["type"], c["name"]) for c in manifest["components"]]
    assert [root["path"] for root in manifest["roots"]] == request.paths
