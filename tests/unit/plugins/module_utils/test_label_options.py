# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""New labels obey the one label grammar; old checkpoints keep theirs, and every printed label is escaped."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import BadLabel, CheckpointNotFound
from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import (
    CheckpointParams, list_checkpoints, make_checkpoint,
)
from ansible_collections.gitops.rollback.plugins.module_utils.files.restore_ops import restore_host
from ansible_collections.gitops.rollback.plugins.module_utils.module.options import check_label_options
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store, check_new_label, safety_label

BAD = {
    "": "it is empty",
    "   ": "it contains ' '",
    "v1\nv2": "it contains '\\x0a'",
    "v1\x00": "it contains '\\x00'",
    "\x1b[2Jv1": "it contains '\\x1b'",
    "../etc": "it must start with an ASCII letter or a digit",
    "v1;rm": "it contains ';'",
}


@pytest.mark.parametrize("value", list(BAD))
def test_a_new_label_outside_the_grammar_is_refused_with_the_value_escaped(value):
    with pytest.raises(BadLabel) as caught:
        check_label_options({"label": value, "other": "x y"}, "label")
    message = str(caught.value)
    assert message.startswith("label=") and BAD[value] in message and "Nothing was changed" in message
    assert "\n" not in message and "\x00" not in message and "\x1b" not in message


def test_valid_and_absent_labels_pass():
    assert check_new_label("safety/rollback-20261202T190000Z-123") == "safety/rollback-20261202T190000Z-123"
    assert check_new_label(None) is None
    check_label_options({"label": None, "safety_label": "v2.4.0"}, "label", "safety_label")


def test_no_new_checkpoint_gets_a_label_outside_the_grammar(tmp_path):
    store = Store(str(tmp_path / "store"))
    store.init()
    with pytest.raises(BadLabel, match="it contains '\\\\x0a'"):
        store.new_manifest(label="v1\nv2")
    assert store.ids() == []


@pytest.fixture
def old_store(tmp_path):
    """A store holding a checkpoint made before labels were checked: its label has a space and an ESC."""
    managed = tmp_path / "managed"
    managed.mkdir()
    (managed / "a.txt").write_text("old\n")
    store_path = str(tmp_path / "store")
    made = make_checkpoint(CheckpointParams(store_path=store_path, owner="o", paths=[str(managed)], label="v1"))
    manifest_path = os.path.join(store_path, "checkpoints", made["checkpoint"]["id"] + ".json")
    manifest = json.loads(open(manifest_path).read())
    manifest["label"] = "old release\x1b[2J"
    with open(manifest_path, "w") as handle:
        handle.write(json.dumps(manifest))
    return store_path, managed, manifest


def test_an_old_label_outside_the_grammar_is_still_listed_found_and_restored(old_store):
    store_path, managed, manifest = old_store
    listed = list_checkpoints(CheckpointParams(store_path=store_path, owner="o"))
    assert [c["label"] for c in listed["checkpoints"]] == ["old release\x1b[2J"]
    (managed / "a.txt").write_text("new\n")

    result = restore_host(CheckpointParams(store_path=store_path, owner="o", checkpoint="old release\x1b[2J"))

    assert (managed / "a.txt").read_text() == "old\n"
    assert result["safety_checkpoint"]["label"] == "safety/%s" % manifest["id"]


def test_a_missing_checkpoint_message_escapes_the_asked_and_the_listed_labels(old_store):
    store_path, _managed, manifest = old_store
    with pytest.raises(CheckpointNotFound) as caught:
        Store(store_path).find("v9\x1b]0;owned\x07")
    message = str(caught.value)
    assert "'v9\\x1b]0;owned\\x07' is not in" in message
    assert "'old release\\x1b[2J' (%s)" % manifest["id"] in message
    assert "\x1b" not in message and "\x07" not in message


@pytest.mark.parametrize("label,expected", [
    ("v2.4.0", "safety/v2.4.0"), ("safety/v1", "safety/safety/v1"), ("bad label", "safety/ID"),
    ("x" * 128, "safety/ID"), (None, "safety/ID"),
])
def test_the_safety_label_is_in_the_grammar_whatever_the_restored_label(label, expected):
    manifest = {"id": "20261202T190000.000Z-abcdef", "label": label}
    assert safety_label(manifest) == expected.replace("ID", manifest["id"])
