# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Worker processes that hash and store file contents for a capture."""

from __future__ import annotations

import hashlib
import os
import signal

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.store import contentpool as _contentpool
from ansible_collections.gitops.rollback.plugins.module_utils.common import nofollow as _nofollow
from ansible_collections.gitops.rollback.plugins.module_utils.files.capture import (
    CheckpointRequest, RootSpec, create_checkpoint,
)
from ansible_collections.gitops.rollback.plugins.module_utils.store.contentpool import BATCH_FILES, ContentPool
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError, StoreFullError
from ansible_collections.gitops.rollback.plugins.module_utils.files.restore import RestoreOptions, restore_checkpoint
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


@pytest.fixture
def store(tmp_path):
    result = Store(str(tmp_path / "store"))
    result.init()
    return result


def _tree(root, count, size=3000):
    """Write ``count`` files of random bytes; return {relative path: bytes}."""
    content = {}
    for index in range(count):
        rel = "d%d/f%04d" % (index % 7, index)
        data = os.urandom(size + index)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        content[rel] = data
    return content


def _live(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _no_children_left():
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def _pack_names(store):
    return sorted(name for name in os.listdir(store.path("packs")) if name.endswith(".idx"))


def test_a_large_capture_is_stored_by_workers_and_restores_byte_for_byte(store, tmp_path, monkeypatch):
    started = []
    real_fork = ContentPool._fork

    def counting_fork(self):
        worker = real_fork(self)
        started.append(worker.pid)
        return worker

    monkeypatch.setattr(ContentPool, "_fork", counting_fork)
    monkeypatch.setattr(_contentpool, "usable_cpus", lambda: 2)
    root = tmp_path / "app"
    content = _tree(root, BATCH_FILES * 4)
    (root / "big.bin").write_bytes(os.urandom(600_000))  # a loose object, written by a worker
    content["big.bin"] = (root / "big.bin").read_bytes()
    manifest, _changed, totals = create_checkpoint(store, CheckpointRequest([RootSpec(str(root))], label="v1"))
    assert len(started) == 2, "the capture forked two workers"
    assert totals["new_blobs"] == len(content)
    assert len(_pack_names(store)) >= 2, "each worker wrote a pack of its own"
    for rel, data in content.items():  # findable in this process right after the capture
        assert store.read_blob(hashlib.sha256(data).hexdigest()) == data
    assert store.verify(manifest) == []
    _no_children_left()

    for path in root.rglob("*"):
        if path.is_file():
            path.write_bytes(b"changed")
    options = RestoreOptions(only_paths=[], dry_run=False, want_diff=False, safety_checkpoint=False, creator="test")
    restore_checkpoint(store, store.find("v1"), options)
    assert _live(root) == content


def test_a_small_capture_runs_in_process(store, tmp_path, monkeypatch):
    monkeypatch.setattr(ContentPool, "_fork", lambda self: pytest.fail("no worker for a few files"))
    root = tmp_path / "app"
    content = _tree(root, BATCH_FILES // 2)
    manifest, _changed, totals = create_checkpoint(store, CheckpointRequest([RootSpec(str(root))], label="v1"))
    assert totals["new_blobs"] == len(content)
    assert store.verify(manifest) == []


def _capture_with_a_bad_file(store, root, monkeypatch, name, misbehave):
    """Capture a tree with workers where storing the file ``name`` calls ``misbehave()`` first."""
    monkeypatch.setattr(_contentpool, "usable_cpus", lambda: 2)
    _tree(root, BATCH_FILES * 3)

    def before_reading(point, where):
        if point == "capture.read" and where["rel"].endswith(name):
            misbehave()

    monkeypatch.setattr(_nofollow, "race_hook", before_reading)
    create_checkpoint(store, CheckpointRequest([RootSpec(str(root))], label="v1"))


def _disk_full():
    raise StoreFullError("The store's file system is full (test).")


def test_an_error_in_a_worker_is_raised_by_the_parent_and_no_pack_is_left(store, tmp_path, monkeypatch):
    with pytest.raises(StoreFullError, match="full"):
        _capture_with_a_bad_file(store, tmp_path / "app", monkeypatch, "f0300", _disk_full)
    assert store.ids() == []
    assert os.listdir(store.path("tmp")) == [], "every unfinished pack was dropped"
    _no_children_left()


def test_a_worker_that_dies_is_named(store, tmp_path, monkeypatch):
    with pytest.raises(RollbackError, match=r"worker process \(pid \d+\) ended without answering"):
        _capture_with_a_bad_file(store, tmp_path / "app", monkeypatch, "f0200",
                                 lambda: os.kill(os.getpid(), signal.SIGKILL))
    assert store.ids() == []
    _no_children_left()


def test_a_worker_whose_parent_goes_drops_its_pack(store, tmp_path):
    root = tmp_path / "app"
    content = _tree(root, 40)
    pool = ContentPool(lambda path, known, size: store.put_file_counted(path, size), store, workers=1)
    pool._start_workers()  # pylint: disable=protected-access
    jobs = [pool.submit(str(root / rel), None, len(data)) for rel, data in content.items()]
    assert pool.result(jobs[-1])[0] == hashlib.sha256(content[list(content)[-1]]).hexdigest()
    assert os.listdir(store.path("tmp")), "the worker has an unfinished pack"
    pool.abort()  # as when the parent is killed: the worker reads end of file
    assert os.listdir(store.path("tmp")) == []
    assert not os.path.isdir(store.path("packs")) or _pack_names(store) == []
    _no_children_left()


class _NoStore:
    """A pool's store that stores nothing."""

    def enter_worker(self):
        pass

    def finish_worker(self):
        return []

    def abort_worker(self):
        pass

    def adopt_packs(self, names):
        pass


def test_results_come_back_in_job_order_across_workers():
    pool = ContentPool(lambda path, known, size: (path, size, known is None), _NoStore(), workers=2)
    pool._start_workers()  # pylint: disable=protected-access
    jobs = [pool.submit("p%d" % index, None if index % 2 else "k", index) for index in range(1000)]
    assert [pool.result(job) for job in jobs] == [("p%d" % i, i, bool(i % 2)) for i in range(1000)]
    pool._reap()  # pylint: disable=protected-access
    _no_children_left()
