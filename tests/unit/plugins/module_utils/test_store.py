# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The content-addressed store: objects, manifests, lookup, prune and garbage collection."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import (
    CheckpointNotFound, IntegrityError, UnsupportedFormat,
)
from ansible_collections.gitops.rollback.plugins.module_utils.store import writes as _store_writes
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import SMALL_FILE, Store, prune
from ansible_collections.gitops.rollback.plugins.module_utils.store.writes import LOOSE_SYNC_LIMIT


@pytest.fixture
def store(tmp_path):
    """An initialised, empty store."""
    result = Store(str(tmp_path / "store"))
    result.init()
    return result


def _objects(store):
    return sorted(
        name for fan in os.listdir(store.path("objects")) for name in os.listdir(store.path("objects", fan))
    )


def _checkpoint(store, label=None, blobs=(), created=None):
    manifest = store.new_manifest(label=label, reason="test")
    if created:
        manifest["created"] = created
    if blobs:
        manifest["components"] = [{"type": "test", "name": "data", "blobs": list(blobs)}]
    store.save(manifest)
    return manifest


def test_store_layout_is_private(store):
    for sub in ("", "objects", "packs", "checkpoints", "cache", "locks", "tmp"):
        assert os.stat(store.path(sub)).st_mode & 0o777 == 0o700
    assert json.loads(open(store.path("format")).read()) == {"format_version": 3}


@pytest.mark.parametrize("size", [0, 1, 4096, SMALL_FILE, SMALL_FILE + 1, 3 * SMALL_FILE + 7])
def test_put_file_names_objects_by_content_hash(store, tmp_path, size):
    data = os.urandom(size)
    source = tmp_path / "source"
    source.write_bytes(data)
    sha, stored_size = store.put_file(str(source))
    assert sha == hashlib.sha256(data).hexdigest()
    assert stored_size == size
    assert store.read_blob(sha) == data
    store.sync()  # finishes the open pack
    location, _offset, length = store.object_location(sha)
    if size <= SMALL_FILE:
        assert location.startswith(store.path("packs")) and location.endswith(".pack") and length == size
    else:
        assert location == store.blob_path(sha) and location.endswith(os.path.join("objects", sha[:2], sha))
    assert os.listdir(store.path("tmp")) == []
    assert Store(store.root).read_blob(sha) == data, "a new reader finds it through the pack index"


def test_same_content_is_stored_once(store, tmp_path):
    data = os.urandom(5000)
    (tmp_path / "a").write_bytes(data)
    (tmp_path / "b").write_bytes(data)
    first = store.put_file_counted(str(tmp_path / "a"))
    second = store.put_file_counted(str(tmp_path / "b"))
    third = store.put_bytes(data)
    assert first[0] == second[0] == third
    assert (first[2], second[2]) == (True, False)
    assert _objects(store) == [third]


def test_put_stream_hashes_what_it_writes(store):
    sha, size = store.put_stream([b"abc", b"", b"def"])
    assert (sha, size) == (hashlib.sha256(b"abcdef").hexdigest(), 6)


def test_read_blob_refuses_a_corrupted_object(store):
    sha = store.put_bytes(b"original")
    os.chmod(store.blob_path(sha), 0o600)
    with open(store.blob_path(sha), "wb") as handle:
        handle.write(b"tampered")
    with pytest.raises(IntegrityError) as caught:
        store.read_blob(sha)
    assert sha in str(caught.value) and hashlib.sha256(b"tampered").hexdigest() in str(caught.value)


def test_blob_path_refuses_a_name_that_is_not_a_hash(store):
    with pytest.raises(IntegrityError):
        store.blob_path("../../etc/passwd")


def test_find_by_id_label_and_prefix(store):
    first = _checkpoint(store, label="v1")
    second = _checkpoint(store, label="v2")
    newer_v1 = _checkpoint(store, label="v1")
    assert store.find(first["id"])["id"] == first["id"]
    assert store.find("v2")["id"] == second["id"]
    assert store.find("v1")["id"] == newer_v1["id"], "a label names its newest checkpoint"
    assert store.find(second["id"][:-3])["id"] == second["id"]
    assert store.ids() == [first["id"], second["id"], newer_v1["id"]], "ids sort oldest first"


def test_unknown_reference_lists_the_available_checkpoints(store):
    _checkpoint(store, label="v1")
    _checkpoint(store, label="v2")
    with pytest.raises(CheckpointNotFound) as caught:
        store.find("v3")
    message = str(caught.value)
    assert "'v3'" in message and "v1" in message and "v2" in message
    assert "checkpoint_info" in message
    assert [item["label"] for item in caught.value.details["available"]] == ["v1", "v2"]
    assert store.find_optional("v3") is None
    assert store.find_optional(None) is None


def test_short_prefix_is_not_a_reference(store):
    manifest = _checkpoint(store)
    with pytest.raises(CheckpointNotFound):
        store.find(manifest["id"][:4])


def test_unknown_format_version_is_refused(store):
    manifest = _checkpoint(store, label="v1")
    path = store.manifest_path(manifest["id"])
    document = json.loads(open(path).read())
    document["format_version"] = 99
    with open(path, "w") as handle:
        json.dump(document, handle)
    with pytest.raises(UnsupportedFormat):
        store.load(manifest["id"])
    with open(store.path("format"), "w") as handle:
        json.dump({"format_version": 2}, handle)
    with pytest.raises(UnsupportedFormat):
        store.init()


def test_attach_component_replaces_same_type_and_name(store):
    manifest = _checkpoint(store, label="v1")
    store.attach_component(manifest, {"type": "db", "name": "app", "blobs": [store.put_bytes(b"one")]})
    store.attach_component(manifest, {"type": "db", "name": "app", "blobs": [store.put_bytes(b"two")]})
    store.attach_component(manifest, {"type": "db", "name": "other", "blobs": []})
    components = store.find("v1")["components"]
    assert [(c["name"], c["blobs"]) for c in components] == [
        ("app", [hashlib.sha256(b"two").hexdigest()]), ("other", [])]


def test_prune_never_chooses_the_newest(store):
    ids = [_checkpoint(store, created="2020-01-01T00:00:00Z")["id"] for _n in range(3)]
    assert prune(store, keep=0, older_than=None) == ids[:2]
    assert prune(store, keep=2, older_than=None) == ids[:1]
    assert prune(store, keep=None, older_than=60.0) == ids[:2]
    assert prune(store, keep=5, older_than=None) == []


def test_prune_by_age_keeps_recent_checkpoints(store):
    old = _checkpoint(store, created="2020-01-01T00:00:00Z")["id"]
    _checkpoint(store)
    _checkpoint(store)
    assert prune(store, keep=None, older_than=86400.0) == [old]


def test_garbage_collection_keeps_referenced_objects(store, tmp_path):
    kept_blob = store.put_bytes(b"kept")
    doomed_blob = store.put_bytes(b"doomed")
    orphan = store.put_bytes(b"orphan")
    keeper = _checkpoint(store, label="keep", blobs=[kept_blob])
    doomed = _checkpoint(store, label="gone", blobs=[doomed_blob])
    (tmp_path / "leftover").write_bytes(b"x")
    os.rename(str(tmp_path / "leftover"), store.path("tmp", "leftover"))
    store.delete(doomed["id"])
    removed, freed = store.collect_garbage()
    assert (removed, freed) == (2, len(b"doomed") + len(b"orphan"))
    assert _objects(store) == [kept_blob]
    assert not store.has_blob(orphan)
    assert store.verify(keeper) == []
    assert os.listdir(store.path("tmp")) == []


def test_verify_reports_missing_and_corrupted_objects(store):
    good, bad, gone = (store.put_bytes(data) for data in (b"good", b"bad", b"gone"))
    manifest = _checkpoint(store, blobs=[good, bad, gone])
    with open(store.blob_path(bad), "wb") as handle:
        handle.write(b"rotten")
    os.unlink(store.blob_path(gone))
    problems = {item["object"]: item for item in store.verify(manifest)}
    assert set(problems) == {bad, gone}
    assert problems[bad]["problem"] == "hash mismatch"
    assert problems[bad]["actual"] == hashlib.sha256(b"rotten").hexdigest()
    assert problems[gone]["problem"] == "missing"


def _packed_files(store, tmp_path, count, prefix):
    shas = []
    for number in range(count):
        source = tmp_path / ("%s%d" % (prefix, number))
        source.write_bytes(os.urandom(100 + number))
        shas.append(store.put_file(str(source))[0])
    return shas


def test_packed_objects_are_collected_and_live_ones_kept(store, tmp_path):
    kept = _packed_files(store, tmp_path, 30, "keep")
    dropped = _packed_files(store, tmp_path, 20, "drop")
    _checkpoint(store, blobs=kept)  # save() finishes the pack holding all 50
    contents = {sha: store.read_blob(sha) for sha in kept}
    removed, freed = store.collect_garbage()
    assert removed == 20 and freed == sum(100 + number for number in range(20))
    reader = Store(store.root)
    assert {sha: reader.read_blob(sha) for sha in kept} == contents
    assert not any(reader.has_blob(sha) for sha in dropped)
    assert len([name for name in os.listdir(store.path("packs")) if name.endswith(".idx")]) == 1
    assert store.collect_garbage() == (0, 0), "a pack with only live objects is left alone"


def test_a_pack_without_index_is_invisible_and_collected(store, tmp_path):
    shas = _packed_files(store, tmp_path, 5, "f")
    store.packs.finish()
    index = store.packs.indexes()[0]
    os.unlink(index.pack_path[:-len(".pack")] + ".idx")  # a writer killed before its index was written
    reader = Store(store.root)
    assert not any(reader.has_blob(sha) for sha in shas)
    size = os.path.getsize(index.pack_path)
    assert reader.collect_garbage() == (0, size)
    assert os.listdir(store.path("packs")) == []


def test_an_unfinished_pack_is_readable_by_its_writer_and_dropped_at_collection(store, tmp_path):
    shas = _packed_files(store, tmp_path, 3, "f")
    assert all(store.read_blob(sha) for sha in shas), "objects of the open pack can be read back"
    assert not Store(store.root).has_blob(shas[0]), "no other reader sees an unfinished pack"
    store.packs.abort()
    assert Store(store.root).collect_garbage() == (0, 0) and os.listdir(store.path("tmp")) == []


def test_a_version_1_store_is_upgraded_when_its_first_pack_is_written(tmp_path):
    old = Store(str(tmp_path / "store"))
    old.init()
    with open(old.path("format"), "w") as handle:
        json.dump({"format_version": 1}, handle)  # as written before packs existed
    loose = old.put_bytes(b"an object of a version 1 store")
    _checkpoint(old, blobs=[loose])
    reader = Store(old.root)
    source = tmp_path / "small"
    source.write_bytes(b"small file content")
    packed, _size = reader.put_file(str(source))
    assert json.loads(open(reader.path("format")).read()) == {"format_version": 3}
    _checkpoint(reader, blobs=[packed])
    again = Store(old.root)
    assert again.read_blob(loose) == b"an object of a version 1 store"
    assert again.read_blob(packed) == b"small file content"


def test_names_sharing_their_first_eight_bytes_are_told_apart():
    from ansible_collections.gitops.rollback.plugins.module_utils.store.packs import PackIndex, _Lookup
    first, second, absent = (bytes(8) + bytes([n]) * 24 for n in (1, 2, 3))
    lookup = _Lookup([PackIndex("/a.pack", PackIndex.encode({first: (0, 10)})[8:]),
                      PackIndex("/b.pack", PackIndex.encode({second: (5, 7)})[8:])])
    assert lookup.find(first) == ("/a.pack", 0, 10)
    assert lookup.find(second) == ("/b.pack", 5, 7)
    assert lookup.find(absent) is None
    assert lookup.has(first) and lookup.has(second) and not lookup.has(absent)


def test_a_stat_cache_row_whose_hash_is_no_object_name_is_not_an_answer(tmp_path):
    from ansible_collections.gitops.rollback.plugins.module_utils.store.statcache import CacheReader, stat_signature
    from ansible_collections.gitops.rollback.plugins.module_utils.store.tree import path_key
    target = tmp_path / "file"
    target.write_text("x")
    st = os.lstat(str(target))
    cache = tmp_path / "cache.jsonl"
    cache.write_text(json.dumps(["file", "../../etc/passwd"] + stat_signature(st)) + "\n")
    assert CacheReader(str(cache)).lookup(path_key("file"), st) is None


# ------------------------------------------------------------------ sync before a manifest
@pytest.fixture
def flushes(monkeypatch):
    """Record what Store.sync flushes: {"filesystem": calls of syncfs, "paths": paths fsynced}."""
    seen = {"filesystem": 0, "paths": []}
    real_fsync = _store_writes.fsync_path

    def fsync(path):
        seen["paths"].append(path)
        real_fsync(path)

    monkeypatch.setattr(_store_writes, "sync_filesystem", lambda _root: seen.__setitem__("filesystem", seen["filesystem"] + 1))
    monkeypatch.setattr(_store_writes, "fsync_path", fsync)
    return seen


def _large(tmp_path, name, seed):
    path = tmp_path / name
    path.write_bytes(hashlib.sha256(seed).digest() * (SMALL_FILE // 32 + 1))
    return str(path)


def test_a_dump_is_synced_by_itself_not_with_the_whole_file_system(store, tmp_path, flushes):
    """One new loose object (a database dump) is fsynced with its directories; other processes'
    unwritten data on the same file system is not waited for."""
    sha, _size = store.adopt_file(_large(tmp_path, "dump.sql", b"dump"))
    store.put_bytes(b"small, packed")
    store.sync()
    blob = store.blob_path(sha)
    assert flushes["filesystem"] == 0
    assert flushes["paths"][0] == blob
    assert os.path.dirname(blob) in flushes["paths"] and store.path("objects") in flushes["paths"]
    flushes["paths"].clear()
    store.sync()  # nothing new: nothing to flush
    assert flushes == {"filesystem": 0, "paths": []}


def test_many_new_loose_objects_sync_the_file_system(store, tmp_path, flushes):
    for number in range(LOOSE_SYNC_LIMIT + 1):
        store.put_file(_large(tmp_path, "file%d" % number, b"%d" % number))
    store.sync()
    assert flushes["filesystem"] == 1
    again = store.blob_path(store.put_file(_large(tmp_path, "again", b"again"))[0])
    store.sync()  # counting starts again after a sync
    assert flushes["filesystem"] == 1 and again in flushes["paths"]


def test_objects_written_by_content_workers_sync_the_file_system(store, flushes):
    """Loose objects a forked worker wrote are not listed in this process: the whole file system is synced."""
    store.adopt_packs([])
    store.sync()
    assert flushes["filesystem"] == 1


def test_a_dump_that_was_already_stored_is_synced_again(store, tmp_path, flushes):
    """The same dump met again may have been placed by a run killed before its sync: it is flushed too."""
    sha, _size = store.adopt_file(_large(tmp_path, "first.sql", b"same"))
    store.sync()
    flushes["paths"].clear()
    again, _size = store.adopt_file(_large(tmp_path, "second.sql", b"same"))
    store.sync()
    assert again == sha and flushes["filesystem"] == 0 and flushes["paths"][0] == store.blob_path(sha)
    assert not os.path.exists(tmp_path / "second.sql")
