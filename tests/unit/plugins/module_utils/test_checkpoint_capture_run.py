"""state=present with verify and a retention option: the capture, the re-hash and the prune in one run."""

from __future__ import annotations

import os

from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import CheckpointParams, make_checkpoint
from ansible_collections.gitops.rollback.plugins.module_utils.store.retention import Policy
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


def _params(tmp_path, **extra) -> CheckpointParams:
    return CheckpointParams(store_path=str(tmp_path / "store"), owner="test@host", paths=[str(tmp_path / "app")], **extra)


def _app(tmp_path, content: bytes) -> None:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "data.bin").write_bytes(content)


def test_verify_fails_naming_a_damaged_object_of_the_checkpoint_it_reports(tmp_path):
    _app(tmp_path, os.urandom(300_000))
    first = make_checkpoint(_params(tmp_path, label="v1", verify=True))
    assert first["changed"] and "failed" not in first
    store = Store(str(tmp_path / "store"))
    blob = next(entry for entry in store.iter_tree(store.find("v1")["roots"][0]["tree"]) if entry.get("sha256"))["sha256"]
    with open(store.blob_path(blob), "r+b") as handle:
        handle.write(b"rotten")

    again = make_checkpoint(_params(tmp_path, label="v1", verify=True))
    unverified = make_checkpoint(_params(tmp_path, label="v1"))

    assert again["changed"] is False and again["failed"] is True
    assert [(item["object"], item["problem"]) for item in again["problems"][first["checkpoint"]["id"]]] == [
        (blob, "hash mismatch")]
    assert blob in again["msg"] and "hash mismatch" in again["msg"] and "state=absent" in again["msg"]
    assert "failed" not in unverified  # without verify the capture trusts what the store holds


def test_a_retention_option_prunes_after_the_capture_and_keeps_the_new_checkpoint(tmp_path):
    ids = []
    for number in range(3):
        _app(tmp_path, b"release %d" % number)
        ids.append(make_checkpoint(_params(tmp_path, label="build-%d" % number))["checkpoint"]["id"])
    _app(tmp_path, b"release 3")

    dry = make_checkpoint(_params(tmp_path, label="build-3", policy=Policy(keep=2), check_mode=True))
    assert Store(str(tmp_path / "store")).ids() == ids  # check mode deletes nothing
    result = make_checkpoint(_params(tmp_path, label="build-3", policy=Policy(keep=2), verify=True))

    store = Store(str(tmp_path / "store"))
    assert result["changed"] and result["pruned"]["deleted"] == ids[:2] and result["pruned"]["collected"]["objects"] >= 1
    assert store.ids() == [ids[2], result["checkpoint"]["id"]]
    assert dry["pruned"]["deleted"] == ids[:2] and "collected" not in dry["pruned"]
