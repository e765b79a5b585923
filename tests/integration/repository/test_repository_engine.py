"""The repository engine against a real SSH host: sync, resume after a SIGKILL, rebuild, damage, sharing."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SECRET_LINE = b"db_password=plaintext-that-must-stay-home\n"
KEY = "repository-test-key-0123456789"


def make_tree(root: Path, files: int = 30) -> None:
    """A managed tree: a config file, small files, one large file (a loose object), a symlink, an empty dir."""
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "app.conf").write_bytes(SECRET_LINE)
    (root / "data").mkdir()
    for index in range(files):
        (root / "data" / ("f%03d.txt" % index)).write_bytes(b"content of file %d\n" % index)
    (root / "big.bin").write_bytes(hashlib.sha256(b"big").digest() * 20000)
    (root / "empty").mkdir()
    os.symlink("conf/app.conf", root / "current")


def snapshot(root: Path) -> dict:
    """Every entry below ``root``: type, content or link target, and mode."""
    found = {}
    for path in sorted(root.rglob("*")):
        status = path.lstat()
        if path.is_symlink():
            found[str(path.relative_to(root))] = ("link", os.readlink(path), status.st_mode)
        elif path.is_dir():
            found[str(path.relative_to(root))] = ("dir", None, status.st_mode)
        else:
            found[str(path.relative_to(root))] = ("file", path.read_bytes(), status.st_mode)
    return found


def take(eng: SimpleNamespace, store, root: Path, label: str) -> dict:
    """Checkpoint ``root`` into ``store`` under the lock."""
    request = eng.checkpoint.CheckpointRequest(roots=[eng.checkpoint.RootSpec(str(root), [], [])], label=label)
    with store.lock("test", "checkpoint"):
        return eng.checkpoint.create_checkpoint(store, request)[0]


def repo_files(repo: Path) -> dict:
    """Path -> bytes of every file of a repository."""
    return {str(path.relative_to(repo)): path.read_bytes() for path in repo.rglob("*") if path.is_file()}


def repo_objects(repo: Path) -> dict:
    """Object name -> stored bytes."""
    return {path.name: path.read_bytes() for path in (repo / "objects").glob("*/*")}


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_sync_sends_only_what_is_missing_and_a_lost_host_is_rebuilt_byte_identical(
        eng, repository_host, repo_path, tmp_path, key):
    root = tmp_path / "app"
    make_tree(root)
    store = eng.store.Store(str(tmp_path / "store"), key)
    first = take(eng, store, root, "v1")
    (root / "data" / "f000.txt").write_bytes(b"changed\n")
    second = take(eng, store, root, "v2")
    spec = eng.client.RepositorySpec.from_options(repository_host.options(repo_path))

    sent = eng.sync.sync_store(store, spec)
    needed = set(store.referenced(first)) | set(store.referenced(second))
    assert sent["checkpoints"] == [first["id"], second["id"]]
    assert sent["objects"]["sent"] == len(needed) and sent["objects"]["present"] == 0
    again = eng.sync.sync_store(store, spec)
    assert again["changed"] is False and again["objects"]["sent"] == 0 and again["up_to_date"] == sent["checkpoints"]

    repo = repository_host.local(repo_path)
    objects = repo_objects(repo)
    assert set(objects) == needed
    assert sorted(path.name for path in (repo / "hosts" / "web1" / "checkpoints").glob("*.json")) == [
        first["id"] + ".json", second["id"] + ".json"]
    for name in needed:  # the repository holds each object exactly as the store does
        location = store.object_location(name)
        with open(location[0], "rb") as handle:
            handle.seek(location[1])
            assert objects[name] == handle.read(location[2])
    if key:
        everything = b"".join(repo_files(repo).values())
        assert SECRET_LINE.strip() not in everything and key.encode() not in everything
        sealed = (repo / "hosts" / "web1" / "checkpoints" / (first["id"] + ".json")).read_bytes()
        # the label as JSON would hold it; two bare bytes "v1" turn up in random ciphertext now and then
        assert b'"label"' not in sealed and b'"v1"' not in sealed, "the manifest is sealed"

    needed_by_first = set(store.referenced(first))
    expected = snapshot(root)
    expected["data/f000.txt"] = ("file", b"content of file 0\n", expected["data/f000.txt"][2])
    shutil.rmtree(tmp_path / "store")
    shutil.rmtree(root)
    root.mkdir()
    rebuilt = eng.store.Store(str(tmp_path / "store"), key)
    with eng.fetch.Fetcher(rebuilt, spec, key) as fetcher:
        fetcher.prepare()
        with rebuilt.lock("test", "restore"):
            fetched = fetcher.fetch("v1")
            assert fetched["source"] == "repository" and fetched["checkpoint"]["id"] == first["id"]
            assert fetched["fetched"]["objects"] == len(needed_by_first)
            assert fetched["newest_replicated"]["id"] == second["id"] and 0 <= fetched["rpo_seconds"] < 600
            manifest = rebuilt.find("v1")
            eng.restore.restore_checkpoint(rebuilt, manifest, eng.restore.RestoreOptions(safety_checkpoint=False))
    assert snapshot(root) == expected
    assert rebuilt.verify(manifest) == []
    assert [man["id"] for man in rebuilt.manifests()] == [first["id"]]  # only what was asked for


def test_a_rebuild_is_one_session_with_its_batches_pipelined(eng, repository_host, repo_path, tmp_path, monkeypatch):
    """Fetch and restore of a lost host over one SSH session, the objects asked for in several batches, each
    asked before the previous one was read: every byte comes back, and a second checkpoint is fetched over
    the same session."""
    root = tmp_path / "app"
    make_tree(root)
    store = eng.store.Store(str(tmp_path / "store"))
    first = take(eng, store, root, "v1")
    (root / "data" / "f001.txt").write_bytes(b"changed again\n")
    take(eng, store, root, "v2")
    expected = snapshot(root)
    spec = eng.client.RepositorySpec.from_options(repository_host.options(repo_path))
    eng.sync.sync_store(store, spec)
    needed_by_first = len(set(store.referenced(first)))
    shutil.rmtree(tmp_path / "store")
    shutil.rmtree(root)
    root.mkdir()

    sessions = []

    class Counted(eng.client.Connection):
        def __enter__(self):
            sessions.append(self)
            return super().__enter__()

    monkeypatch.setattr(eng.fetch, "Connection", Counted)
    monkeypatch.setattr(eng.fetch, "NAMES_PER_REQUEST", 4)  # 30+ objects: about ten batches
    rebuilt = eng.store.Store(str(tmp_path / "store"))
    with eng.fetch.Fetcher(rebuilt, spec) as fetcher:
        fetcher.prepare()
        with rebuilt.lock("test", "restore"):
            older = fetcher.fetch("v1")
            newer = fetcher.fetch("v2")
            eng.restore.restore_checkpoint(rebuilt, rebuilt.find("v2"), eng.restore.RestoreOptions(safety_checkpoint=False))
    assert len(sessions) == 1
    assert older["fetched"]["objects"] == needed_by_first
    assert 0 < newer["fetched"]["objects"] < older["fetched"]["objects"]  # only what v1 did not bring
    assert snapshot(root) == expected
    assert rebuilt.verify(rebuilt.find("v1")) == [] and rebuilt.verify(rebuilt.find("v2")) == []


KILL_CODE = r"""
import json, os, signal, sys
from ansible_collections.gitops.rollback.plugins.module_utils.replication import client as _repo_client
from ansible_collections.gitops.rollback.plugins.module_utils.replication import sync as _repo_sync
from ansible_collections.gitops.rollback.plugins.module_utils.store import store as _store
_repo_sync.BATCH_OBJECTS = 10
spec = _repo_client.RepositorySpec.from_options(json.loads(sys.argv[2]))
kill_after = int(sys.argv[3])

def progress(event, count):
    if event == "sent" and count == kill_after:
        os.killpg(0, signal.SIGKILL)  # this process and its ssh, in the middle of a batch

_repo_sync.sync_store(_store.Store(sys.argv[1]), spec, progress=progress)
print("done")
"""


def test_a_sync_killed_in_the_middle_shows_no_checkpoint_and_the_next_sends_only_the_rest(
        eng, repository_host, repo_path, tmp_path, collections_path):
    root = tmp_path / "app"
    make_tree(root, files=60)
    store = eng.store.Store(str(tmp_path / "store"))
    manifest = take(eng, store, root, "v1")
    needed = list(dict.fromkeys(store.referenced(manifest)))
    options = repository_host.options(repo_path)

    killed = subprocess.run([sys.executable, "-c", KILL_CODE, str(tmp_path / "store"), json.dumps(options), "25"],
                            env=dict(os.environ, PYTHONPATH=str(collections_path)), start_new_session=True,
                            capture_output=True, timeout=120, check=False)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]

    repo = repository_host.local(repo_path)
    assert not list((repo / "hosts" / "web1" / "checkpoints").glob("*.json"))
    arrived = repo_objects(repo)
    assert len(arrived) == 20  # two acknowledged batches of ten; the third was cut
    assert all(hashlib.sha256(data).hexdigest() == name for name, data in arrived.items())

    spec = eng.client.RepositorySpec.from_options(options)
    sent_names = []
    resumed = eng.sync.sync_store(store, spec, progress=lambda event, count: sent_names.append(count))
    assert resumed["objects"]["present"] == 20
    assert resumed["objects"]["sent"] == len(needed) - 20
    assert [man.name for man in (repo / "hosts" / "web1" / "checkpoints").glob("*.json")] == [manifest["id"] + ".json"]
    final = repo_objects(repo)
    assert set(final) == set(needed)
    assert all(hashlib.sha256(data).hexdigest() == name for name, data in final.items())


def test_a_corrupted_object_in_the_repository_is_refused_at_restore_naming_it(eng, repository_host, repo_path, tmp_path):
    root = tmp_path / "app"
    make_tree(root)
    store = eng.store.Store(str(tmp_path / "store"))
    manifest = take(eng, store, root, "v1")
    spec = eng.client.RepositorySpec.from_options(repository_host.options(repo_path))
    eng.sync.sync_store(store, spec)
    big = next(entry["sha256"] for entry in store.iter_tree(manifest["roots"][0]["tree"]) if entry["path"] == "big.bin")
    damaged = repository_host.local(repo_path) / "objects" / big[:2] / big
    data = bytearray(damaged.read_bytes())
    data[1000] ^= 0xFF
    damaged.write_bytes(bytes(data))

    shutil.rmtree(tmp_path / "store")
    rebuilt = eng.store.Store(str(tmp_path / "store"))
    with eng.fetch.Fetcher(rebuilt, spec) as fetcher:
        fetcher.prepare()
        with rebuilt.lock("test", "restore"), pytest.raises(eng.errors.IntegrityError) as refused:
            fetcher.fetch("v1")
    assert big in str(refused.value) and "corrupted" in str(refused.value)
    assert refused.value.details["expected"] == big
    assert rebuilt.ids() == [] and not rebuilt.has_blob(big)


def test_two_hosts_with_the_same_content_store_it_once(eng, repository_host, repo_path, tmp_path):
    stores = {}
    for name in ("web1", "web2"):
        root = tmp_path / name / "app"
        make_tree(root)
        stores[name] = eng.store.Store(str(tmp_path / name / "store"))
        take(eng, stores[name], root, "v1")
    first = eng.sync.sync_store(stores["web1"], eng.client.RepositorySpec.from_options(
        repository_host.options(repo_path, name="web1")))
    second = eng.sync.sync_store(stores["web2"], eng.client.RepositorySpec.from_options(
        repository_host.options(repo_path, name="web2")))
    assert second["objects"]["sent"] == 1  # its tree object (other mtimes); every file content was there
    assert second["objects"]["present"] == first["objects"]["sent"] - 1
    repo = repository_host.local(repo_path)
    assert len(repo_objects(repo)) == first["objects"]["sent"] + 1
    assert len(list((repo / "hosts").glob("*/checkpoints/*.json"))) == 2


def test_an_unknown_host_key_is_refused_before_anything_is_sent(eng, repository_host, repo_path, tmp_path):
    root = tmp_path / "app"
    make_tree(root, files=2)
    store = eng.store.Store(str(tmp_path / "store"))
    take(eng, store, root, "v1")
    other = (repository_host.fleet.client_key.parent / "id_ed25519.pub").read_text().split()
    options = repository_host.options(repo_path, known_hosts="[%s]:%d %s %s" % (
        repository_host.host.address, repository_host.host.port, other[0], other[1]))
    with pytest.raises(eng.client.RepositoryError) as refused:
        eng.sync.sync_store(store, eng.client.RepositorySpec.from_options(options))
    assert "known_hosts" in str(refused.value) and "Host key verification failed" in str(refused.value)
    assert not repository_host.local(repo_path).exists()


def test_a_connection_lost_in_the_middle_fails_clearly_and_the_next_sync_completes(
        eng, repository_host, repo_path, tmp_path):
    root = tmp_path / "app"
    make_tree(root, files=60)
    store = eng.store.Store(str(tmp_path / "store"))
    manifest = take(eng, store, root, "v1")
    needed = set(store.referenced(manifest))
    spec = eng.client.RepositorySpec.from_options(repository_host.options(repo_path))
    name = repository_host.host.name

    def cut(event, count):
        if event == "sent" and count == 25:  # the repository host goes away, sshd and the receiver with it
            repository_host.fleet.stop_host(name)

    batch = eng.sync.BATCH_OBJECTS
    eng.sync.BATCH_OBJECTS = 10
    try:
        with pytest.raises(eng.client.RepositoryError, match="could not be reached or stopped answering"):
            eng.sync.sync_store(store, spec, progress=cut)
    finally:
        eng.sync.BATCH_OBJECTS = batch
        repository_host.fleet.start_host(name)
    repo = repository_host.local(repo_path)
    assert not list((repo / "hosts" / "web1" / "checkpoints").glob("*.json"))
    arrived = repo_objects(repo)
    assert len(arrived) == 20 and all(hashlib.sha256(data).hexdigest() == key for key, data in arrived.items())

    resumed = eng.sync.sync_store(store, spec)
    assert resumed["objects"]["present"] == 20 and resumed["objects"]["sent"] == len(needed) - 20
    assert set(repo_objects(repo)) == needed


def in_namespace(host, *argv: str) -> subprocess.CompletedProcess:
    """Run a command in the repository host's mount namespace."""
    return subprocess.run(["nsenter", "--target", str(host.pid), "--mount", "--", *argv], capture_output=True,
                          text=True, check=True, timeout=60)


def test_a_full_repository_disk_fails_clearly_and_keeps_what_was_recorded(eng, repository_host, repo_path, tmp_path):
    host = repository_host.host
    in_namespace(host, "mkdir", "-p", repo_path)
    in_namespace(host, "mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", repo_path)
    try:
        root = tmp_path / "app"
        make_tree(root, files=3)
        store = eng.store.Store(str(tmp_path / "store"))
        first = take(eng, store, root, "v1")
        spec = eng.client.RepositorySpec.from_options(repository_host.options(repo_path))
        eng.sync.sync_store(store, spec)
        (root / "large.bin").write_bytes(os.urandom(2_000_000))
        second = take(eng, store, root, "v2")
        with pytest.raises(eng.errors.StoreFullError, match="is full"):
            eng.sync.sync_store(store, spec)
        listed = in_namespace(host, "ls", "-A", repo_path + "/hosts/web1/checkpoints", repo_path + "/tmp").stdout
        assert first["id"] + ".json" in listed and second["id"] not in listed
        assert ".recv" not in listed  # the cut object was removed
    finally:
        in_namespace(host, "umount", repo_path)


def test_pruning_one_host_never_collects_what_another_host_still_needs(eng, repository_host, repo_path, tmp_path):
    shared = b"shared release content\n" * 1000
    specs, stores, roots = {}, {}, {}
    for name in ("web1", "web2"):
        roots[name] = tmp_path / name / "app"
        roots[name].mkdir(parents=True)
        (roots[name] / "release.js").write_bytes(shared)
        (roots[name] / "own.conf").write_bytes(b"only %s\n" % name.encode())
        stores[name] = eng.store.Store(str(tmp_path / name / "store"))
        specs[name] = eng.client.RepositorySpec.from_options(repository_host.options(repo_path, name=name))
    old = take(eng, stores["web1"], roots["web1"], "build-1")  # no release tag: retention may drop it
    only_old = {entry["sha256"] for entry in stores["web1"].iter_tree(old["roots"][0]["tree"]) if entry["sha256"]}
    (roots["web1"] / "release.js").unlink()
    (roots["web1"] / "own.conf").write_bytes(b"web1, second release\n")
    new = take(eng, stores["web1"], roots["web1"], "v2")
    other = take(eng, stores["web2"], roots["web2"], "v1")
    for name in ("web1", "web2"):
        eng.sync.sync_store(stores[name], specs[name])
    repo = repository_host.local(repo_path)
    shared_name = eng.store.sha256_file(str(roots["web2"] / "release.js"))
    assert shared_name in only_old and shared_name in repo_objects(repo)

    planned = eng.repository.prune_repository(specs["web1"], eng.repository.Policy(keep=1), grace=0, dry_run=True)
    assert planned["deleted"] == [old["id"]] and (repo / "hosts/web1/checkpoints" / (old["id"] + ".json")).exists()
    pruned = eng.repository.prune_repository(specs["web1"], eng.repository.Policy(keep=1), grace=0)
    assert pruned["deleted"] == [old["id"]]
    left = set(repo_objects(repo))
    assert left == set(stores["web1"].referenced(new)) | set(stores["web2"].referenced(other))
    assert shared_name in left  # web2's v1 needs it
    assert pruned["collected"]["objects"] == len((only_old | {old["roots"][0]["tree"]}) - left)
    assert sorted(path.name for path in (repo / "hosts").glob("*/checkpoints/*.json")) == sorted(
        [new["id"] + ".json", other["id"] + ".json"])

    web2_needs = set(stores["web2"].referenced(other))
    shutil.rmtree(tmp_path / "web2" / "store")  # web2's checkpoint still comes back whole (checkpoint_sync state=fetched)
    rebuilt = eng.store.Store(str(tmp_path / "web2" / "store"))
    fetched = eng.repository.fetch_into(rebuilt, specs["web2"], ["v1"], None, "test")
    assert fetched["checkpoints"] == [other["id"]] and fetched["fetched"]["objects"] == len(web2_needs)
    assert fetched["recovery"]["newest_replicated"]["id"] == other["id"] and fetched["recovery"]["rpo_seconds"] < 600
    assert rebuilt.verify(rebuilt.find("v1")) == []
    again = eng.repository.fetch_into(rebuilt, specs["web2"], ["v1"], None, "test")
    assert again["changed"] is False and again["fetched"]["objects"] == 0


def test_after_a_small_change_a_sync_sends_the_changed_files_and_a_delta_of_the_tree(
        eng, repository_host, repo_path, tmp_path):
    root = tmp_path / "app"
    (root / "data").mkdir(parents=True)
    files = [root / "data" / ("f%04d.bin" % index) for index in range(1000)]
    for path in files:
        path.write_bytes(os.urandom(4096))
    store = eng.store.Store(str(tmp_path / "store"))
    take(eng, store, root, "v1")
    spec = eng.client.RepositorySpec.from_options(repository_host.options(repo_path))
    eng.sync.sync_store(store, spec)
    for path in files[::100]:  # 1 % of the files, 40 KB
        path.write_bytes(os.urandom(4096))
    second = take(eng, store, root, "v2")
    tree = second["roots"][0]["tree"]

    sent = eng.sync.sync_store(store, spec)
    changed = 10 * 4096
    assert sent["objects"]["sent"] == 11 and sent["objects"]["as_delta"] == 1  # the files and the tree
    assert sent["objects"]["bytes"] < changed + 3000 < store.object_size(tree)  # the tree: ~200 KB whole
    # all on the wire (requests, the tree's changed lines, lists, the manifest): < 1,000 bytes per changed file,
    # where the tree sent whole costs about 230 bytes per file of the tree (230 KB here)
    assert sent["wire"]["sent"] - changed < 1000 * 10
    repo = repository_host.local(repo_path)
    assert repo_objects(repo)[tree] == store.read_blob(tree)  # the repository holds the tree whole
    assert sorted((repo / "hosts/web1/checkpoints" / (second["id"] + ".needs")).read_text().split()) == needed_list(
        store, second)


def needed_list(store, manifest: dict) -> list:
    """The objects a checkpoint needs, as the repository lists them (sorted here)."""
    return sorted(set(store.referenced(manifest)))


KILL_AT_CODE = r"""
import json, os, signal, sys
from ansible_collections.gitops.rollback.plugins.module_utils.replication import client as _repo_client
from ansible_collections.gitops.rollback.plugins.module_utils.replication import sync as _repo_sync
from ansible_collections.gitops.rollback.plugins.module_utils.store import store as _store
_repo_sync.BATCH_OBJECTS = 10
spec = _repo_client.RepositorySpec.from_options(json.loads(sys.argv[2]))
event, count, victim = sys.argv[3], int(sys.argv[4]), sys.argv[5]


def children():
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % entry) as handle:
                if entry.isdigit() and int(handle.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    found.append(int(entry))
        except (OSError, ValueError):
            pass
    return found


def progress(seen, number):
    if (seen, number) != (event, count):
        return
    if victim == "module":
        os.kill(os.getpid(), signal.SIGKILL)  # ssh sees its stdin end, the receiver the request cut
    elif victim == "module and ssh":
        os.killpg(0, signal.SIGKILL)
    else:
        for child in children():  # the SSH connection: the module goes on writing into it
            os.kill(child, signal.SIGKILL)

_repo_sync.sync_store(_store.Store(sys.argv[1]), spec, progress=progress)
print("done")
"""


def assert_only_complete_checkpoints(repo: Path, store) -> set:
    """Every checkpoint the repository shows has every object it needs, intact; return their ids."""
    folder = repo / "hosts" / "web1" / "checkpoints"
    shown = {path.name[:-len(".json")] for path in folder.glob("*.json")}
    for checkpoint_id in shown:
        listed = (folder / (checkpoint_id + ".needs")).read_text().split()
        assert sorted(set(listed)) == needed_list(store, store.load(checkpoint_id))
        for name in listed:
            assert hashlib.sha256((repo / "objects" / name[:2] / name).read_bytes()).hexdigest() == name
    return shown


def test_syncs_killed_at_random_points_never_show_an_incomplete_checkpoint_and_the_next_completes_them(
        eng, repository_host, repo_path, tmp_path, collections_path):
    """SIGKILL of the module, of the module and its ssh, or of the SSH connection alone, at seeded points
    of successive syncs of two checkpoints (objects in batches of ten, the tree as a delta, then the manifests)."""
    rng = random.Random(23)
    root = tmp_path / "app"
    make_tree(root, files=80)
    store = eng.store.Store(str(tmp_path / "store"))
    take(eng, store, root, "v1")
    options = repository_host.options(repo_path)
    spec = eng.client.RepositorySpec.from_options(options)
    eng.sync.sync_store(store, spec)
    for version in ("v2", "v3"):
        for path in rng.sample(sorted((root / "data").iterdir()), 30):
            path.write_bytes(os.urandom(100))
        take(eng, store, root, version)
    repo = repository_host.local(repo_path)
    needed = set().union(*(store.referenced(man) for man in store.manifests()))
    victims = ["module", "module and ssh", "ssh", "ssh", "module"]
    kills = 0
    for victim in victims:
        missing = len(needed - set(repo_objects(repo)))
        shown = assert_only_complete_checkpoints(repo, store)
        if missing == 0 and len(shown) >= 2:  # nothing left to kill in the middle of
            break
        if missing and (len(shown) == 2 or rng.random() < 0.7):
            point = ("sent", rng.randint(1, missing))
        else:  # between the two manifests
            point = ("recorded", 1)
        run = subprocess.run([sys.executable, "-c", KILL_AT_CODE, str(tmp_path / "store"), json.dumps(options),
                              point[0], str(point[1]), victim],
                             env=dict(os.environ, PYTHONPATH=str(collections_path)), start_new_session=True,
                             capture_output=True, timeout=120, check=False)
        if victim == "ssh":
            assert run.returncode == 1 and b"stopped answering" in run.stderr, (point, run.stderr[-2000:])
        else:
            assert run.returncode == -9, (point, victim, run.stderr[-2000:])
        kills += 1
        arrived = assert_only_complete_checkpoints(repo, store)
        assert len(arrived) < 3  # killed before its end: the last checkpoint is not shown
        assert not [name for name in os.listdir(repo / "tmp") if name in needed]
    assert kills >= 3

    before = set(repo_objects(repo))
    final = eng.sync.sync_store(store, spec)
    assert final["objects"]["sent"] == len(needed - before)  # what arrived before is not sent again
    assert assert_only_complete_checkpoints(repo, store) == set(store.ids())
    assert set(repo_objects(repo)) == needed


def test_a_prune_while_a_sync_runs_keeps_the_sync_whole_or_refuses_it_until_the_next(
        eng, repository_host, repo_path, tmp_path):
    root = tmp_path / "app"
    make_tree(root, files=40)
    store = eng.store.Store(str(tmp_path / "store"))
    spec = eng.client.RepositorySpec.from_options(repository_host.options(repo_path))
    for version in ("build-1", "build-2"):  # no release tags: retention may drop them
        (root / "data" / "f000.txt").write_bytes(version.encode() * 100)
        take(eng, store, root, version)
    eng.sync.sync_store(store, spec)
    repo = repository_host.local(repo_path)

    def prune_when_stored(grace):
        def progress(event, count):
            if event == "stored" and count == 10:  # a batch is in the repository, named by no manifest yet
                pruned.append(eng.repository.prune_repository(spec, eng.repository.Policy(keep=1), grace=grace))
        return progress

    pruned: list = []
    for index in range(25):
        (root / "data" / ("f%03d.txt" % index)).write_bytes(b"v3 %d\n" % index)
    v3 = take(eng, store, root, "build-3")
    eng.sync.BATCH_OBJECTS, batch = 10, eng.sync.BATCH_OBJECTS
    try:
        done = eng.sync.sync_store(store, spec, progress=prune_when_stored(3600))  # objects of a sync are young
        assert done["checkpoints"] == [v3["id"]] and pruned[0]["deleted"] == [store.find("build-1")["id"]]
        assert assert_only_complete_checkpoints(repo, store) == {store.find("build-2")["id"], v3["id"]}

        for index in range(25):
            (root / "data" / ("f%03d.txt" % index)).write_bytes(b"v4 %d\n" % index)
        v4 = take(eng, store, root, "build-4")
        with pytest.raises(eng.client.RepositoryError, match="did not record checkpoint %s" % v4["id"]):
            eng.sync.sync_store(store, spec, ["build-4"], progress=prune_when_stored(0))  # collects the batch just stored
        assert pruned[1]["collected"]["objects"] >= 10
        assert assert_only_complete_checkpoints(repo, store) == {v3["id"]}
    finally:
        eng.sync.BATCH_OBJECTS = batch
    again = eng.sync.sync_store(store, spec, ["build-4"])
    assert again["checkpoints"] == [v4["id"]] and again["objects"]["sent"] >= 10
    assert assert_only_complete_checkpoints(repo, store) == {v3["id"], v4["id"]}


def test_after_a_key_rotation_the_objects_are_sent_again_sealed_under_the_new_key_to_another_repository(
        eng, repository_host, repo_path, tmp_path):
    root = tmp_path / "app"
    make_tree(root, files=5)
    store = eng.store.Store(str(tmp_path / "store"), KEY)
    manifest = take(eng, store, root, "v1")
    old = eng.client.RepositorySpec.from_options(repository_host.options(repo_path, name="web1"))
    first = eng.sync.sync_store(store, old)
    repo = repository_host.local(repo_path)
    before = repo_files(repo)
    new_key = KEY + "-rotated"
    with store.lock("test", "rekey"):
        store.rekey(new_key)
    store = eng.store.Store(str(tmp_path / "store"), new_key)
    with pytest.raises(eng.client.RepositoryError, match="different keys") as refused:
        eng.sync.sync_store(store, old)
    assert store.read_format()["encryption"]["key_id"] in str(refused.value)
    assert repo_files(repo) == before  # nothing was sent

    beside = eng.client.RepositorySpec.from_options(repository_host.options(repo_path, name="web1-rotated"))
    with pytest.raises(eng.client.RepositoryError, match="sealed under another key") as refused:
        eng.sync.sync_store(store, beside)  # the old key's objects are kept: web1's checkpoints stay restorable
    assert "another repository path" in str(refused.value)
    assert repo_objects(repo) == {path.rsplit("/", 1)[1]: data for path, data in before.items() if path.startswith("objects/")}
    assert not [path for path in repo_files(repo) if path.startswith("hosts/web1-rotated/checkpoints/")]

    rotated = eng.client.RepositorySpec.from_options(repository_host.options(repo_path + "-rotated", name="web1"))
    sent = eng.sync.sync_store(store, rotated)
    assert sent["objects"]["present"] == 0 and sent["objects"]["sent"] == first["objects"]["sent"]
    expected = snapshot(root)
    shutil.rmtree(tmp_path / "store")
    shutil.rmtree(root)
    root.mkdir()
    rebuilt = eng.store.Store(str(tmp_path / "store"), new_key)
    with eng.fetch.Fetcher(rebuilt, rotated, new_key) as fetcher:
        fetcher.prepare()
        with rebuilt.lock("test", "restore"):
            fetcher.fetch("v1")
            eng.restore.restore_checkpoint(rebuilt, rebuilt.find("v1"), eng.restore.RestoreOptions(safety_checkpoint=False))
    assert snapshot(root) == expected and rebuilt.verify(rebuilt.find(manifest["id"])) == []
