"""What a rollback would change on a host (plugins/module_utils/controller/preview.py), read from a real store,
real files and a real release root in a temporary directory: the plan's preview, and nothing changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import CheckpointParams, make_checkpoint
from ansible_collections.gitops.rollback.plugins.module_utils.controller.preview import PreviewRequest, preview_host
from ansible_collections.gitops.rollback.plugins.module_utils.release.operations import ReleaseParams, apply
from ansible_collections.gitops.rollback.tests.harness.objects import replace_object
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.tree_state import contents


def deploy(tmp: Path, tag: str) -> None:
    build = tmp / ("build-" + tag)
    build.mkdir()
    (build / "VERSION").write_text(tag)
    assert apply("present", ReleaseParams(root=str(tmp / "srv"), owner="t", src=str(build), label=tag))["changed"]


def drill(tmp: Path) -> PreviewRequest:
    """v1 checkpointed (files and release), then a v2 of both."""
    etc, store = tmp / "etc", str(tmp / "store")
    etc.mkdir()
    (etc / "app.conf").write_text("release=v1\n")
    deploy(tmp, "v1")
    make_checkpoint(CheckpointParams(store_path=store, owner="t", paths=[str(etc)], label="v1"))
    apply("recorded", ReleaseParams(root=str(tmp / "srv"), owner="t", checkpoint="v1", store_path=store))
    (etc / "app.conf").write_text("release=v2\n")
    (etc / "debug.env").write_text("DEBUG=1\n")
    deploy(tmp, "v2")
    return PreviewRequest(target="v1", layers=["release", "config"], store_path=store, owner="t",
                          paths=[str(etc)], release_root=str(tmp / "srv"))


def test_the_preview_names_the_files_and_the_release_that_would_change_and_changes_nothing(tmp_path):
    request = drill(tmp_path)
    before = contents(tmp_path)

    preview = preview_host(request)

    assert contents(tmp_path) == before, "a preview changes nothing"
    assert preview["problems"] == [] and [c["label"] for c in preview["checkpoints"]] == ["v1"]
    config = preview["previews"]["config"]
    assert config["changed"] and config["verified"]
    assert sorted(config["paths"][request.paths[0]]) == ["delete debug.env", "update app.conf"]
    release = preview["previews"]["release"]
    assert release["changed"] and release["label"] == "v1" and release["from_label"] == "v2"


def test_a_corrupted_object_is_a_problem_of_the_config_layer_and_the_others_are_still_previewed(tmp_path):
    request = drill(tmp_path)
    name = hashlib.sha256(b"release=v1\n").hexdigest()
    replace_object(request.store_path, name, b"bit rot")

    preview = preview_host(request)

    assert [p["layer"] for p in preview["problems"]] == ["config"], preview["problems"]
    assert name in preview["problems"][0]["problem"]
    assert preview["previews"]["release"]["changed"]


def test_an_unknown_target_previews_nothing_and_leaves_the_problem_to_the_plan(tmp_path):
    request = drill(tmp_path)
    request.target = "v9"
    preview = preview_host(request)
    assert preview["checkpoint"] is None and preview["previews"] == {} and preview["problems"] == []
