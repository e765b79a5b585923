"""The safety checkpoint taken in the plan's own host run (controller/preview.py preview_with_safety) and its
removal (controller/safety_journal.py discard), against a real store, real files, a real release root and a real
SQLite database: taken only when the host's own plan is clear, and removed byte for byte when the run is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.controller.preview import (
    PreviewRequest, SafetyAsk, preview_with_safety, safety_layers)
from ansible_collections.gitops.rollback.plugins.module_utils.controller.safety_journal import check_journal, discard
from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import CheckpointParams, make_checkpoint
from ansible_collections.gitops.rollback.plugins.module_utils.release.operations import ReleaseParams, apply
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.tests.harness.objects import replace_object
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.tree_state import contents

ASK = SafetyAsk(label="safety/run-1", reason="safety checkpoint before rollback to v1")


def deploy(tmp: Path, tag: str) -> None:
    build = tmp / ("build-" + tag)
    build.mkdir()
    (build / "VERSION").write_text(tag)
    apply("present", ReleaseParams(root=str(tmp / "srv"), owner="t", src=str(build), label=tag))


def drill(tmp: Path) -> PreviewRequest:
    """v1 checkpointed (files, release, database dump), then a v2 of the files and the release."""
    etc, store = tmp / "etc", str(tmp / "store")
    etc.mkdir()
    (etc / "app.conf").write_text("release=v1\n")
    deploy(tmp, "v1")
    with sqlite3.connect(str(tmp / "app.db")) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    database = {"engine": "sqlite", "database": str(tmp / "app.db")}
    make_checkpoint(CheckpointParams(store_path=store, owner="t", paths=[str(etc)], label="v1"))
    apply("recorded", ReleaseParams(root=str(tmp / "srv"), owner="t", checkpoint="v1", store_path=store))
    from ansible_collections.gitops.rollback.plugins.module_utils.controller.safety import SafetyRequest, take_safety_checkpoint
    take_safety_checkpoint(SafetyRequest(label="v1", reason="v1", layers=["database"], store_path=store, owner="t",
                                         databases=[database]))
    (etc / "app.conf").write_text("release=v2\n")
    (etc / "debug.env").write_text("DEBUG=1\n")
    deploy(tmp, "v2")
    with sqlite3.connect(str(tmp / "app.db")) as conn:
        conn.execute("INSERT INTO orders VALUES (1)")
    return PreviewRequest(target="v1", layers=["release", "config", "database"], store_path=store, owner="t",
                          paths=[str(etc)], release_root=str(tmp / "srv"), databases=[database])


def test_a_clear_plan_takes_the_safety_checkpoint_in_the_same_run_and_discard_restores_the_store_byte_for_byte(tmp_path):
    request = drill(tmp_path)
    store = tmp_path / "store"
    before = contents(store)

    outcome = preview_with_safety(request, ASK, check_mode=False)

    assert outcome["problems"] == [] and outcome["previews"]["config"]["changed"]
    safety = outcome["safety"]
    assert safety["layers"] == ["release", "config", "database"] and safety["checkpoint"]
    manifest = Store(str(store)).find("safety/run-1")
    assert sorted(c["type"] for c in manifest["components"]) == ["database", "release"]
    assert [root["path"] for root in manifest["roots"]] == request.paths
    assert contents(store) != before and safety["journal"]["created"] and safety["journal"]["touched"] == []
    assert "checkpoints/%s.json" % manifest["id"] in safety["journal"]["created"]

    removed = discard(Store(str(store)), safety["journal"], "t", 0)

    assert removed["identical"] and removed["removed"] == len(safety["journal"]["created"])
    assert contents(store) == before, "the refused run leaves the store byte for byte as it was"


def test_a_host_whose_plan_found_a_problem_takes_no_safety_checkpoint(tmp_path):
    request = drill(tmp_path)
    store = tmp_path / "store"
    manifest = Store(str(store)).find("v1")
    entry = next(line for line in Store(str(store)).iter_tree(manifest["roots"][0]["tree"]) if line["path"] == "app.conf")
    replace_object(store, entry["sha256"], b"bit rot")
    before = contents(store)

    outcome = preview_with_safety(request, ASK, check_mode=False)

    assert [p["layer"] for p in outcome["problems"]] == ["config"]
    assert outcome["safety"]["layers"] == [] and outcome["safety"]["journal"]["created"] == []
    assert contents(store) == before


def test_check_mode_and_no_safety_asked_take_nothing(tmp_path):
    request = drill(tmp_path)
    before = contents(tmp_path / "store")

    assert "safety" not in preview_with_safety(request, ASK, check_mode=True)
    assert "safety" not in preview_with_safety(request, None, check_mode=False)
    assert contents(tmp_path / "store") == before


def test_a_checkpoint_another_writer_stored_meanwhile_keeps_the_objects_and_only_the_safety_manifest_goes(tmp_path):
    request = drill(tmp_path)
    store = Store(str(tmp_path / "store"))
    safety = preview_with_safety(request, ASK, check_mode=False)["safety"]
    other = make_checkpoint(CheckpointParams(store_path=store.root, owner="t", paths=request.paths, label="v2"))

    removed = discard(store, safety["journal"], "t", 0)

    assert not removed["identical"] and removed["others"] == ["checkpoints/%s.json" % other["checkpoint"]["id"]]
    assert store.find_optional("safety/run-1") is None
    assert store.verify(store.find("v2")) == [], "the other checkpoint's objects are all there"


@pytest.mark.parametrize("path", ["../etc/passwd", "objects/../../x", "/etc/passwd", "format", "objects/ab/c/d/e"])
def test_a_journal_naming_a_path_outside_the_store_layout_is_refused(path):
    with pytest.raises(RollbackError, match="outside the store"):
        check_journal({"created": [path]})


@pytest.mark.parametrize("problems, changes, changing, expected", [
    ([], ["config"], False, ["release", "config"]),
    ([], [], True, ["release", "config"]),
    ([], [], False, []),
    ([{"layer": "config", "problem": "bad"}], ["config"], True, []),
])
def test_the_safety_checkpoint_is_taken_only_when_the_host_plan_is_clear_and_something_changes(
        problems, changes, changing, expected):
    plan = {"problems": problems, "changes": changes, "safety_host": ["release", "config"]}
    assert safety_layers(plan, changing) == expected
