# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's manifests: new, save, find by id, label or prefix, components attached, the objects referenced."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import BadLabel, CheckpointNotFound, IntegrityError
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.store_layers import layers


def test_find_by_id_label_and_prefix(tmp_path):
    manifests = layers(tmp_path / "store").manifests
    first = manifests.new_manifest(label="v1")
    manifests.save(first)
    second = manifests.new_manifest(label="v1")
    manifests.save(second)
    assert manifests.ids() == [first["id"], second["id"]]
    assert manifests.find(first["id"])["id"] == first["id"]
    assert manifests.find("v1")["id"] == second["id"], "the newest checkpoint with the label wins"
    assert manifests.find(first["id"][:-2])["id"] == first["id"]
    with pytest.raises(CheckpointNotFound) as caught:
        manifests.find("v9")
    assert [item["id"] for item in caught.value.details["available"]] == [first["id"], second["id"]]
    assert manifests.find_optional("v9") is None


def test_attaching_a_component_rewrites_the_manifest_and_replaces_its_namesake(tmp_path):
    store = layers(tmp_path / "store")
    manifest = store.manifests.new_manifest(label="v1")
    store.manifests.save(manifest)
    blob = store.writes.put_bytes(b"dump")
    store.manifests.attach_component(manifest, {"type": "database", "name": "sqlite/a", "blobs": [blob]})
    store.manifests.attach_component(manifest, {"type": "database", "name": "sqlite/a", "blobs": [blob], "n": 2})
    loaded = store.manifests.load_manifest(manifest["id"])
    assert [(c.name, c.get("n")) for c in loaded.components_of("database")] == [("sqlite/a", 2)]
    assert list(store.manifests.referenced(store.manifests.load(manifest["id"]))) == [blob]


def test_a_label_outside_the_grammar_is_refused(tmp_path):
    with pytest.raises(BadLabel):
        layers(tmp_path / "store").manifests.new_manifest(label="bad\x1b[2J")


def test_a_damaged_manifest_is_an_integrity_error(tmp_path):
    manifests = layers(tmp_path / "store").manifests
    manifest = manifests.new_manifest(label="v1")
    manifests.save(manifest)
    with open(manifests.manifest_path(manifest["id"]), "w") as handle:
        handle.write("{not json")
    with pytest.raises(IntegrityError, match="not valid JSON"):
        manifests.load(manifest["id"])
