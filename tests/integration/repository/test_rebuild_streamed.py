"""A rebuild from the repository streams the objects the local store lacks straight into the restored files:
every byte checked against its object name before anything is renamed into place, no link followed, the
files equal, and nothing of the content written to the local store."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from test_repository_engine import KEY, make_tree, snapshot, take


@pytest.fixture
def ops(eng: SimpleNamespace):
    """The restore module's operation (``files.restore_ops``), and the no-follow rules' test hook."""
    # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.common import nofollow
    from ansible_collections.gitops.rollback.plugins.module_utils.files import restore_ops
    return SimpleNamespace(restore_ops=restore_ops, nofollow=nofollow)


def replicated(eng, repository_host, repo_path: str, tmp_path: Path, key=None):
    """A tree (with two files of the same content and an empty one) checkpointed, synced, then lost with its store."""
    root = tmp_path / "app"
    make_tree(root)
    (root / "data" / "same-a.txt").write_bytes(b"the same content\n" * 100)
    (root / "data" / "same-b.txt").write_bytes(b"the same content\n" * 100)
    (root / "data" / "empty.txt").write_bytes(b"")
    store = eng.store.Store(str(tmp_path / "store"), key)
    manifest = take(eng, store, root, "v1")
    expected = snapshot(root)
    spec = eng.client.RepositorySpec.from_options(repository_host.options(repo_path))
    eng.sync.sync_store(store, spec)
    content = {entry["path"]: entry["sha256"] for entry in store.iter_tree(manifest["roots"][0]["tree"])
               if entry["type"] == "file"}
    shutil.rmtree(tmp_path / "store")
    shutil.rmtree(root)
    return SimpleNamespace(root=root, spec=spec, expected=expected, manifest=manifest, content=content)


def rebuild(eng, ops, tmp_path: Path, lost, key=None, **options):
    """Restore checkpoint v1 from the repository into a new local store, as the restore module does (allowed to
    write the lost tree's root)."""
    store = eng.store.Store(str(tmp_path / "store"), key)
    options.setdefault("allowed_roots", [str(lost.root)])
    with eng.fetch.Fetcher(store, lost.spec, key) as fetcher:
        fetcher.prepare()
        with store.lock("test", "restore"):
            manifest, outcome, fetched = ops.restore_ops.rebuild(store, fetcher, "v1", eng.restore.RestoreOptions(**options))
    return store, manifest, outcome, fetched


def test_a_rebuild_writes_the_files_straight_from_the_repository_equal_to_the_checkpoint(
        eng, ops, repository_host, repo_path, tmp_path, monkeypatch):
    lost = replicated(eng, repository_host, repo_path, tmp_path)
    monkeypatch.setattr(eng.fetch, "NAMES_PER_REQUEST", 4)  # several batches, each asked before the last is read
    store, manifest, outcome, fetched = rebuild(eng, ops, tmp_path, lost)
    assert snapshot(lost.root) == lost.expected
    assert outcome["verified"] and manifest["id"] == lost.manifest["id"]
    assert fetched["source"] == "repository" and fetched["checkpoint"]["id"] == lost.manifest["id"]
    files = list(lost.content.values())
    assert fetched["fetched"]["objects"] == len(set(files)) + 1  # each content once (two files share one), the tree
    # the content went into the files only: the local store holds the tree, not the checkpoint's content
    assert not any(store.has_blob(sha) for sha in files)
    assert store.find_optional(lost.manifest["id"]) is None
    assert not [name for name in os.listdir(lost.root) if ".grtmp" in name]


def test_content_several_files_have_is_fetched_once_or_again_beyond_the_memory_kept(
        eng, ops, repository_host, repo_path, tmp_path, monkeypatch):
    lost = replicated(eng, repository_host, repo_path, tmp_path)
    shared = lost.content["data/same-a.txt"]
    (tmp_path / "once").mkdir()
    (tmp_path / "twice").mkdir()
    _store, _manifest, outcome, fetched = rebuild(eng, ops, tmp_path / "once", lost)
    assert snapshot(lost.root) == lost.expected and outcome["verified"]
    once = fetched["fetched"]
    shutil.rmtree(lost.root)
    monkeypatch.setattr(eng.fetch, "REPEATS_KEPT", 0)  # nothing kept in memory: the shared content comes twice
    _store, _manifest, outcome, fetched = rebuild(eng, ops, tmp_path / "twice", lost)
    assert snapshot(lost.root) == lost.expected and outcome["verified"]
    assert fetched["fetched"]["objects"] == once["objects"] + 1
    assert fetched["fetched"]["bytes"] == once["bytes"] + len(b"the same content\n" * 100)
    assert list(lost.content.values()).count(shared) == 2


@pytest.mark.parametrize("damaged_path", ["big.bin", "data/f005.txt"], ids=["loose", "small"])
def test_a_corrupted_object_is_refused_naming_it_and_nothing_is_restored(
        eng, ops, repository_host, repo_path, tmp_path, damaged_path):
    lost = replicated(eng, repository_host, repo_path, tmp_path)
    name = lost.content[damaged_path]
    damaged = repository_host.local(repo_path) / "objects" / name[:2] / name
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))

    with pytest.raises(eng.errors.IntegrityError) as refused:
        rebuild(eng, ops, tmp_path, lost)
    assert name in str(refused.value) and "corrupted" in str(refused.value) and lost.spec.where() in str(refused.value)
    assert refused.value.details["damaged"][0]["object"] == name
    assert refused.value.details["damaged"][0]["restore_path"] == str(lost.root / damaged_path)
    assert list(lost.root.iterdir()) == []  # no file renamed into place, no staged file, no directory left


def test_an_object_of_another_size_is_refused_before_a_byte_of_it_is_written(
        eng, ops, repository_host, repo_path, tmp_path, monkeypatch):
    lost = replicated(eng, repository_host, repo_path, tmp_path)
    name = lost.content["data/f005.txt"]
    grown = repository_host.local(repo_path) / "objects" / name[:2] / name
    grown.write_bytes(grown.read_bytes() + b"\0" * (1 << 20))  # a repository that would fill the managed disk
    written = []
    chunks = eng.fetch.RemoteContent.chunks
    monkeypatch.setattr(eng.fetch.RemoteContent, "chunks",
                        lambda self, sha: (written.append(sha) or chunk for chunk in chunks(self, sha)))

    with pytest.raises(eng.errors.IntegrityError) as refused:
        rebuild(eng, ops, tmp_path, lost)
    assert name in str(refused.value) and "bytes where the checkpoint's file has" in str(refused.value)
    assert name not in written  # refused when its size arrived, before its first chunk
    assert list(lost.root.iterdir()) == []


def test_a_repository_host_lost_in_the_middle_of_the_stream_fails_clearly_and_nothing_is_restored(
        eng, ops, repository_host, repo_path, tmp_path, monkeypatch):
    lost = replicated(eng, repository_host, repo_path, tmp_path)
    name = repository_host.host.name
    monkeypatch.setattr(eng.fetch, "NAMES_PER_REQUEST", 4)
    monkeypatch.setattr(eng.fetch, "READ_AHEAD", 1)  # the reader waits after one object: the rest is still to come

    def cut(point: str, _where: dict) -> None:
        if point == "restore.planned":  # the reader has begun; the repository host goes away, sshd with it
            repository_host.fleet.stop_host(name)

    monkeypatch.setattr(ops.nofollow, "race_hook", cut)
    try:
        with pytest.raises(eng.client.RepositoryError, match="could not be reached or stopped answering"):
            rebuild(eng, ops, tmp_path, lost)
    finally:
        repository_host.fleet.start_host(name)
    assert list(lost.root.iterdir()) == []  # nothing renamed into place, nothing staged left, no directory made
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("gitops-rollback")]


def test_a_link_planted_after_the_plan_is_not_followed(eng, ops, repository_host, repo_path, tmp_path, monkeypatch):
    lost = replicated(eng, repository_host, repo_path, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()

    def plant(point: str, _where: dict) -> None:
        if point == "restore.planned":
            lost.root.mkdir(exist_ok=True)
            os.symlink(str(outside), lost.root / "data")  # where the checkpoint has a directory

    monkeypatch.setattr(ops.nofollow, "race_hook", plant)
    with pytest.raises(eng.errors.UnsafePathError):
        rebuild(eng, ops, tmp_path, lost)
    assert list(outside.iterdir()) == []
    assert sorted(os.listdir(lost.root)) == ["data"] and os.path.islink(lost.root / "data")


def test_a_rebuild_that_removes_entries_fetches_into_the_store_first(eng, ops, repository_host, repo_path, tmp_path):
    """A target that is not empty: the checkpoint is fetched whole and checked before anything is removed."""
    lost = replicated(eng, repository_host, repo_path, tmp_path)
    lost.root.mkdir()
    (lost.root / "left-over.txt").write_bytes(b"not in the checkpoint\n")
    os.symlink("/etc", lost.root / "conf")  # where the checkpoint has a directory: removed, not followed
    store, _manifest, outcome, fetched = rebuild(eng, ops, tmp_path, lost, safety_checkpoint=False)
    assert snapshot(lost.root) == lost.expected and outcome["verified"]
    assert store.verify(store.find("v1")) == []  # the store holds the checkpoint whole
    assert fetched["fetched"]["objects"] == len(set(lost.content.values())) + 1


def test_an_encrypted_store_is_rebuilt_through_the_store(eng, ops, repository_host, repo_path, tmp_path):
    lost = replicated(eng, repository_host, repo_path, tmp_path, KEY)
    store, _manifest, outcome, _fetched = rebuild(eng, ops, tmp_path, lost, KEY)
    assert snapshot(lost.root) == lost.expected and outcome["verified"]
    assert store.verify(store.find("v1")) == []
