# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stat cache's fast path: an unchanged file's tree line straight from its stat, and its object taken
as stored because garbage collection never leaves a cache naming an object it deleted."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.files.capture import (
    CheckpointRequest, RootSpec, create_checkpoint,
)
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import StoreFullError
from ansible_collections.gitops.rollback.plugins.module_utils.store.statcache import CacheWriter
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.plugins.module_utils.store.tree import describe_entry, encode_entry, file_line


@pytest.fixture(params=[None, "a long enough passphrase for the tests"], ids=["plain", "encrypted"])
def store(request, tmp_path):
    if request.param:
        pytest.importorskip("cryptography")
    result = Store(str(tmp_path / "store"), encryption_key=request.param)
    result.init()
    return result


def _tree(root):
    (root / "a" / "b").mkdir(parents=True)
    for index in range(40):
        (root / "a" / ("f%02d" % index)).write_bytes(b"content %d\n" % index)
    (root / "a" / "b" / "x y\u00e9.txt").write_text("unicode name\n")
    os.symlink("f01", str(root / "a" / "link"))


def _checkpoint(store, root):
    return create_checkpoint(store, CheckpointRequest(roots=[RootSpec(str(root))], force=True))[0]


def test_file_line_is_the_encoded_record(tmp_path):
    path = tmp_path / "x\u00e9 \"q\""
    path.write_bytes(b"12345")
    st = os.lstat(str(path))
    entry = dict(describe_entry("dir/" + path.name, st, "file"), sha256="ab" * 32)
    assert file_line("dir/" + path.name, st, "ab" * 32) == encode_entry(entry)


def test_an_unchanged_tree_gets_the_same_tree_object_as_a_fresh_capture(store, tmp_path):
    root = tmp_path / "root"
    _tree(root)
    _checkpoint(store, root)
    (root / "a" / "f07").write_bytes(b"changed\n")
    second = _checkpoint(store, root)  # 40 of 41 files from the cache's fast path
    fresh = Store(str(tmp_path / "fresh"), encryption_key=store.base.key)
    fresh.init()
    content = {entry["path"]: hashlib.sha256(store.read_blob(entry["sha256"])).hexdigest() for entry in
               store.iter_tree(second["roots"][0]["tree"]) if entry["type"] == "file"}
    entries = [dict(entry, sha256=None) for entry in store.iter_tree(second["roots"][0]["tree"])]
    fresh_tree = list(fresh.iter_tree(_checkpoint(fresh, root)["roots"][0]["tree"]))
    assert entries == [dict(entry, sha256=None) for entry in fresh_tree]
    assert content == {entry["path"]: hashlib.sha256(fresh.read_blob(entry["sha256"])).hexdigest() for entry in fresh_tree
                       if entry["type"] == "file"}
    assert second["roots"][0]["entries"] == 44 and second["roots"][0]["bytes"] == sum(
        os.lstat(os.path.join(folder, name)).st_size for folder, _dirs, files in os.walk(str(root)) for name in files
        if not os.path.islink(os.path.join(folder, name)))


def test_garbage_collection_drops_a_cache_naming_an_object_it_deletes(store, tmp_path):
    root = tmp_path / "root"
    _tree(root)
    first = _checkpoint(store, root)
    (root / "a" / "f03").write_bytes(b"second version\n")
    second = _checkpoint(store, root)  # the cache now names the second version's object
    new_object = next(entry["sha256"] for entry in store.iter_tree(second["roots"][0]["tree"])
                      if entry["path"] == "a/f03")
    store.delete(second["id"])
    store.collect_garbage()
    assert not store.has_blob(new_object) and store.ids() == [first["id"]]
    third = _checkpoint(store, root)  # f03 unchanged since the second: must be stored again
    assert store.has_blob(new_object)
    assert all(store.has_blob(entry["sha256"]) for entry in store.iter_tree(third["roots"][0]["tree"])
               if entry["type"] == "file")


def test_garbage_collection_keeps_a_cache_whose_objects_it_keeps(store, tmp_path):
    root = tmp_path / "root"
    _tree(root)
    first = _checkpoint(store, root)
    (root / "a" / "f03").write_bytes(b"second version\n")
    _checkpoint(store, root)
    caches = sorted(os.listdir(store.path("cache")))
    store.delete(first["id"])
    store.collect_garbage()
    assert sorted(os.listdir(store.path("cache"))) == caches


def test_the_new_cache_is_in_tree_order_when_a_changed_file_waits_for_its_worker(tmp_path):
    store = Store(str(tmp_path / "store"))
    store.init()
    root = tmp_path / "root"
    _tree(root)
    _checkpoint(store, root)
    (root / "a" / "f03").write_bytes(b"second version\n")  # hashed by a worker while f04... come from the cache
    _checkpoint(store, root)
    reader = store.cache_reader(str(root))
    paths = []
    while reader._raw is not None:  # pylint: disable=protected-access
        paths.append(json.loads(reader._raw)[0])  # pylint: disable=protected-access
        reader._advance()  # pylint: disable=protected-access
    reader.close()
    assert paths == sorted(paths, key=lambda rel: rel.split("/")) and "a/f03" in paths and len(paths) == 41


def test_a_cache_never_names_an_object_of_a_pack_dropped_by_a_failed_checkpoint(tmp_path, monkeypatch):
    from ansible_collections.gitops.rollback.plugins.module_utils.files import capture as _capture

    store = Store(str(tmp_path / "store"))
    store.init()
    first, second = tmp_path / "first", tmp_path / "second"
    _tree(first)
    _tree(second)
    _checkpoint(store, first)
    (first / "a" / "f05").write_bytes(b"only in the failed checkpoint\n")
    calls = []
    real = _capture.capture_root

    def second_root_fails(*args, **kwargs):
        calls.append(args[1].path)
        if len(calls) == 2:
            raise RuntimeError("the second root failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(_capture, "capture_root", second_root_fails)
    with pytest.raises(RuntimeError):
        create_checkpoint(store, CheckpointRequest(roots=[RootSpec(str(first)), RootSpec(str(second))], force=True))
    monkeypatch.setattr(_capture, "capture_root", real)
    third = _checkpoint(Store(str(tmp_path / "store")), first)
    reopened = Store(str(tmp_path / "store"))
    assert all(reopened.has_blob(entry["sha256"]) for entry in reopened.iter_tree(third["roots"][0]["tree"])
               if entry["type"] == "file")


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "encrypted"])
def test_a_full_disk_while_writing_the_stat_cache_is_a_clear_store_full_error(tmp_path, sealed):
    """The stat cache was the one store write that let a full disk out as a bare OSError: the checkpoint module
    crashed with a traceback (MODULE FAILURE) instead of saying the disk is full, whenever that write came first."""
    store = Store(str(tmp_path / "store"), "full-disk-key-0123456789" if sealed else None)
    writer = CacheWriter(str(tmp_path / "cache"), store.cipher)
    writer._handle.close()  # pylint: disable=protected-access
    writer._handle = open("/dev/full", "wb", buffering=0)  # pylint: disable=protected-access,consider-using-with
    with pytest.raises(StoreFullError, match="No space left while writing the stat cache"):
        for number in range(20000):  # sealed rows are written in batches
            writer.add_row("f%05d\t%s\t1\t1\t1\t1\t1\n" % (number, "0" * 64))
        writer.commit()
    writer.abort()
    assert not os.path.exists(writer.tmp)
