# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's maintenance: garbage collection keeps what manifests reference, verify names what is damaged,
rekey re-seals everything under the new key."""

from __future__ import annotations

import os

from ansible_collections.gitops.rollback.plugins.module_utils.store.root import StoreRoot
from ansible_collections.gitops.rollback.plugins.module_utils.store.writes import SMALL_FILE
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.store_layers import layers

KEY = "unit-test-key-0123456789"
NEW_KEY = "unit-test-key-new-9876543210"


def checkpoint_with(store, *blobs):
    manifest = store.manifests.new_manifest(label="v1")
    manifest["components"] = [{"type": "test", "name": "t", "blobs": list(blobs)}]
    store.manifests.save(manifest)
    return manifest


def test_garbage_collection_keeps_referenced_objects_only(tmp_path):
    store = layers(tmp_path / "store")
    kept_small, kept_large = store.writes.put_bytes(b"keep"), store.writes.put_bytes(b"K" * (SMALL_FILE + 1))
    dropped_small, dropped_large = store.writes.put_bytes(b"drop"), store.writes.put_bytes(b"D" * (SMALL_FILE + 1))
    checkpoint_with(store, kept_small, kept_large)
    removed, freed = store.maintenance.collect_garbage()
    assert removed == 2 and freed >= SMALL_FILE + 1
    store.objects.forget_fanouts()
    assert store.objects.has_blob(kept_small) and store.objects.has_blob(kept_large)
    assert not store.objects.has_blob(dropped_small) and not store.objects.has_blob(dropped_large)


def test_verify_names_the_missing_object_and_what_uses_it(tmp_path):
    store = layers(tmp_path / "store")
    large = store.writes.put_bytes(b"L" * (SMALL_FILE + 1))
    manifest = checkpoint_with(store, large, store.writes.put_bytes(b"small"))
    assert store.maintenance.verify(manifest) == []
    os.unlink(store.objects.blob_path(large))
    assert store.maintenance.verify(manifest) == [
        {"object": large, "used_by": "test t", "actual": None, "problem": "missing"}]


def test_rekey_reseals_objects_and_manifests_under_the_new_key(tmp_path):
    store = layers(tmp_path / "store", KEY)
    small, large = store.writes.put_bytes(b"small"), store.writes.put_bytes(b"L" * (SMALL_FILE + 1))
    manifest = checkpoint_with(store, small, large)
    result = store.maintenance.rekey(NEW_KEY)
    assert result["changed"] and result["manifests"] == 1 and result["objects"] >= 2
    again = layers(tmp_path / "store", NEW_KEY)
    assert again.objects.read_blob(small) == b"small" and again.objects.read_blob(large) == b"L" * (SMALL_FILE + 1)
    assert again.manifests.load(manifest["id"])["label"] == "v1"
    assert not store.maintenance.rekey(NEW_KEY)["changed"], "a second rekey to the same key has nothing to do"
    assert StoreRoot(str(tmp_path / "store"), NEW_KEY).encrypted
