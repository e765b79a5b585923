# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The typed manifest: stores written before it open and rewrite unchanged; one place checks the shape."""

from __future__ import annotations

import copy
import json

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import IntegrityError, UnsupportedFormat
from ansible_collections.gitops.rollback.plugins.module_utils.store.manifest import Component, Manifest
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

CHECKPOINT_ID = "20261203T061254.216Z-5df4ba"
# A manifest as the collection wrote it before the typed manifest (a checkpoint of /etc/app with a
# database backup, a recorded release and a Terraform snapshot attached), byte for byte.
WRITTEN_BEFORE = """{
 "commit": "1b2c3d4",
 "components": [
  {
   "blobs": [
    "b6ca0868bca6a2926b70aa1a71592038d9030fe26d4214edcfbd6cf41f2f4654"
   ],
   "compression": null,
   "created": "2026-11-21T22:03:00.001Z",
   "database": "shop",
   "duration_s": 0.412,
   "engine": "postgresql",
   "format": "custom",
   "migration_version": 5,
   "name": "postgresql/shop",
   "row_counts": {
    "public.orders": 3
   },
   "row_counts_exact": true,
   "server_version": "15.8",
   "sha256": "x",
   "size": 4,
   "type": "database"
  },
  {
   "blobs": [],
   "commit": null,
   "label": "v1.2.0",
   "name": "/srv/app",
   "release": "20261121T221530.123Z",
   "type": "release"
  },
  {
   "backend": "local",
   "blobs": [
    "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
   ],
   "commit": null,
   "created": "2026-11-21T22:03:01.000Z",
   "label": "v1.2.0",
   "lineage": "3f1c",
   "name": "default@/srv/infra",
   "project_path": "/srv/infra",
   "resources": 2,
   "serial": 4,
   "sha256": "y",
   "terraform_version": "1.15.0",
   "type": "terraform_state",
   "workspace": "default"
  }
 ],
 "created": "2026-12-03T06:12:54Z",
 "creator": "ops@h1",
 "facts": {},
 "format_version": 1,
 "host": "vm",
 "id": "20261203T061254.216Z-5df4ba",
 "kind": "checkpoint",
 "label": "v1.2.0",
 "reason": "before deploy",
 "roots": [
  {
   "bytes": 4,
   "entries": 1,
   "exclude": [],
   "include": [],
   "path": "/etc/app",
   "skipped": [],
   "tree": "6096205821110deb4aa6e1f903c6bfe1654bc7cc818f31ce48dcbfbadaaba069"
  }
 ]
}"""


@pytest.fixture
def store(tmp_path):
    store = Store(str(tmp_path / "store"))
    store.init()
    (tmp_path / "store" / "checkpoints" / (CHECKPOINT_ID + ".json")).write_text(WRITTEN_BEFORE)
    return store


def test_a_manifest_written_before_reads_and_writes_back_the_same_document():
    document = json.loads(WRITTEN_BEFORE)
    manifest = Manifest.from_json(copy.deepcopy(document), CHECKPOINT_ID)
    assert manifest.to_json() == document
    assert (manifest.id, manifest.label, manifest.kind, manifest.fields["reason"]) == (
        CHECKPOINT_ID, "v1.2.0", "checkpoint", "before deploy")


def test_an_existing_store_opens_unchanged_and_layers_find_their_component(store, tmp_path):
    assert store.load(CHECKPOINT_ID) == json.loads(WRITTEN_BEFORE)
    manifest = store.find_manifest("v1.2.0")
    assert manifest.component("database", "postgresql/shop").get("migration_version") == 5
    assert manifest.component("release", "/srv/app").fields["release"] == "20261121T221530.123Z"
    assert [c.name for c in manifest.components_of("terraform_state")] == ["default@/srv/infra"]
    assert manifest.component("database", "mysql/shop") is None
    store.save(manifest)  # a rewrite (database prune, attach_component) keeps every field
    path = tmp_path / "store" / "checkpoints" / (CHECKPOINT_ID + ".json")
    assert json.loads(path.read_text()) == json.loads(WRITTEN_BEFORE)


def test_an_older_manifest_without_kind_gains_no_field():
    document = json.loads(WRITTEN_BEFORE)
    del document["kind"]
    assert Manifest.from_json(copy.deepcopy(document)).to_json() == document


def test_put_and_drop_component_replace_by_type_and_name():
    manifest = Manifest.from_json(json.loads(WRITTEN_BEFORE))
    manifest.put_component(Component("release", "/srv/app", [], {"release": "r2"}))
    assert [c.type for c in manifest.components] == ["database", "terraform_state", "release"]
    assert manifest.component("release", "/srv/app").fields == {"release": "r2"}
    for component in list(manifest.components):
        manifest.drop_component(component.type, component.name)
    assert not manifest.empty  # the file roots are left
    manifest.roots = []
    assert manifest.empty


@pytest.mark.parametrize("change,error,message", [
    (lambda d: d.update(format_version=3), UnsupportedFormat, "format_version 3"),
    (lambda d: d["roots"][0].update(scope="conf"), IntegrityError, "scope of root .* is not a list of paths"),
    (lambda d: d.update(id="20261203T061254.216Z-000000"), IntegrityError, "is not its file name"),
    (lambda d: d.update(label=["v1"]), IntegrityError, "label is not text"),
    (lambda d: d.update(components={"type": "database"}), IntegrityError, "components is not a list of objects"),
    (lambda d: d["roots"][0].update(tree=7), IntegrityError, "a root has no path"),
    (lambda d: d["components"][0].update(blobs=[1]), IntegrityError, "'postgresql/shop' lists blobs"),
])
def test_a_malformed_manifest_is_refused_by_name(change, error, message):
    document = json.loads(WRITTEN_BEFORE)
    change(document)
    with pytest.raises(error, match=message):
        Manifest.from_json(document, CHECKPOINT_ID)


def test_the_store_refuses_a_malformed_manifest_when_it_loads_it(store, tmp_path):
    document = json.loads(WRITTEN_BEFORE)
    document["components"][0]["blobs"] = "not a list"
    (tmp_path / "store" / "checkpoints" / (CHECKPOINT_ID + ".json")).write_text(json.dumps(document))
    with pytest.raises(IntegrityError, match="Manifest %s is malformed" % CHECKPOINT_ID):
        store.load(CHECKPOINT_ID)
