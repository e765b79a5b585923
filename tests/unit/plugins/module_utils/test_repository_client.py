# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client of a repository against an untrusted repository host: the real engine and receiver over pipes
(no SSH), the receiver replaced by one that sends what a compromised repository host could."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.files import capture, restore, restore_ops
from ansible_collections.gitops.rollback.plugins.module_utils.replication import client, fetch, replies, repository, sync
from ansible_collections.gitops.rollback.plugins.module_utils.replication import receiver as _receiver
from ansible_collections.gitops.rollback.plugins.module_utils.replication.client import RepositoryError
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import EncryptionKeyError, IntegrityError

KEY = "client-test-key-0123456789abcdef"
BIG = hashlib.sha256(b"big").digest() * 20000  # 640 KB: a loose object, not packed


class _Pipes:
    """A stand-in for the ssh process: the receiver ``receiver_class`` in a thread, on two pipes."""

    def __init__(self, receiver_class) -> None:
        to_receiver, self_stdin = os.pipe()
        self_stdout, from_receiver = os.pipe()
        self.stdin, self.stdout = os.fdopen(self_stdin, "wb"), os.fdopen(self_stdout, "rb")
        their_in, their_out = os.fdopen(to_receiver, "rb"), os.fdopen(from_receiver, "wb")

        def run() -> None:
            try:
                receiver_class(their_in, their_out).serve()
            except (OSError, ValueError, EOFError):
                pass  # the client went away
            finally:
                for stream in (their_in, their_out):
                    try:
                        stream.close()
                    except OSError:
                        pass

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def poll(self):
        return None if self.thread.is_alive() else 0

    def wait(self, timeout=None):
        self.thread.join(timeout)
        return 0

    def kill(self) -> None:
        pass


@pytest.fixture
def repo(monkeypatch):
    """Sessions to a receiver in this process; set ``repo.receiver`` to a subclass to make the repository lie."""
    state = type("Repo", (), {"receiver": _receiver.Receiver})()

    def enter(self):
        self.workdir = tempfile.mkdtemp(prefix="gitops-rollback-test-")
        self.stderr_path = os.path.join(self.workdir, "stderr")
        open(self.stderr_path, "wb").close()  # pylint: disable=consider-using-with
        self.proc = _Pipes(state.receiver)
        return self

    monkeypatch.setattr(client.Connection, "__enter__", enter)
    return state


def synced(tmp_path, key=None):
    """A tree, a store with checkpoint v1 of it, synced honestly to a repository; (app, store, spec, manifest)."""
    app = tmp_path / "app"
    (app / "data").mkdir(parents=True)
    for number in range(3):
        (app / "data" / ("f%d.txt" % number)).write_bytes(b"content %d\n" % number)
    (app / "big.bin").write_bytes(BIG)
    store = Store(str(tmp_path / "store"), key)
    request = capture.CheckpointRequest(roots=[capture.RootSpec(str(app), [], [])], label="v1")
    with store.lock("test", "checkpoint"):
        manifest = capture.create_checkpoint(store, request)[0]
    spec = client.RepositorySpec.from_options({"host": "backup", "path": str(tmp_path / "repo"), "name": "web1"})
    sync.sync_store(store, spec)
    return app, store, spec, manifest


def lying(**methods):
    """A receiver class whose ``methods`` replace the honest ones."""
    return type("Lying", (_receiver.Receiver,), methods)


def tree_names(manifest):
    return {root["tree"] for root in manifest["roots"]}


@pytest.mark.parametrize("ids", [
    ["../../../../../../../../{tmp}/planted"], ["{tmp}/planted"], ["20261203T090000.000Z-abcdef\n"], [None],
])
def test_manifest_ids_that_are_not_checkpoint_ids_are_refused_before_anything_is_written(tmp_path, repo, ids):
    _app, _store, spec, _manifest = synced(tmp_path)
    ids = [item.format(tmp=str(tmp_path).lstrip("/")) if item else item for item in ids]
    body = json.dumps({"planted": "by the repository"}).encode()

    def get_manifests(self, request):
        self.reply({"ok": True, "ids": ids, "sizes": [len(body)] * len(ids)}, body * len(ids))

    repo.receiver = lying(get_manifests=get_manifests)
    with pytest.raises(RepositoryError, match="malformed reply while listing checkpoints: .* is not a checkpoint id"):
        repository.fetch_into(Store(str(tmp_path / "fresh")), spec, ["v1"], None, "test", dry_run=True)
    assert not (tmp_path / "planted.json").exists() and not os.path.exists("/planted.json")


def test_manifest_ids_and_sizes_that_do_not_pair_up_are_refused(tmp_path, repo):
    _app, store, spec, _manifest = synced(tmp_path)
    honest = _receiver.Receiver.get_manifests

    def get_manifests(self, request):
        out, self.stdout = self.stdout, io.BytesIO()
        honest(self, request)
        line, body = self.stdout.getvalue().split(b"\n", 1)
        self.stdout = out
        reply = json.loads(line)
        self.reply({"ok": True, "ids": reply["ids"] * 2, "sizes": reply["sizes"]}, body)

    repo.receiver = lying(get_manifests=get_manifests)
    with pytest.raises(RepositoryError, match="ids and sizes of the manifests do not pair up"):
        repository.fetch_into(Store(str(tmp_path / "fresh")), spec, ["v1"], None, "test", dry_run=True)
    assert store.ids()  # the honest store is untouched (the test's own sanity)


def test_a_manifest_announced_larger_than_the_cap_is_refused_before_it_is_read(tmp_path, repo):
    _app, _store, spec, _manifest = synced(tmp_path)
    size = replies.MANIFEST_MAX + 1
    sent = []

    def get_manifests(self, request):
        self.reply({"ok": True, "ids": ["20261203T090000.000Z-abcdef"], "sizes": [size]})
        sent.append(size)
        self.stdout.write(b" " * size)  # the client reads none of it: it ends the session (a broken pipe here)
        self.stdout.flush()

    repo.receiver = lying(get_manifests=get_manifests)
    read = []
    real_read = client.Connection.read_exactly
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(client.Connection, "read_exactly", lambda self, count, what: read.append(count) or real_read(self, count, what))
        with pytest.raises(RepositoryError, match="announced with %d bytes \\(a manifest has at most" % size):
            repository.fetch_into(Store(str(tmp_path / "fresh")), spec, ["v1"], None, "test", dry_run=True)
    assert read == []


def _short_get(names_answered):
    """A ``get`` that answers with no sizes (and no bytes) for anything but ``names_answered``."""
    def get(self, request):
        if set(request.get("names", [])) <= names_answered:
            return _receiver.Receiver.get(self, request)
        self.reply({"ok": True, "sizes": []})
        return None
    return get


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_a_reply_with_fewer_sizes_than_objects_is_refused_before_the_restore_changes_anything(tmp_path, repo, key):
    app, store, spec, manifest = synced(tmp_path, key)
    (app / "data" / "f0.txt").write_bytes(b"LIVE CONTENT\n")  # drifted: a restore would rewrite it ...
    (app / "data" / "extra.txt").write_bytes(b"extra live file\n")  # ... and remove this one
    before = {path.name: path.read_bytes() for path in (app / "data").iterdir()}
    repo.receiver = lying(get=_short_get(tree_names(manifest)))
    fresh = Store(str(tmp_path / "fresh"), key)
    with pytest.raises(RepositoryError, match="0 sizes for [0-9]+ objects asked for"):
        with fetch.Fetcher(fresh, spec, key) as fetcher:
            fetcher.prepare()
            with fresh.lock("test", "restore"):
                restore_ops.rebuild(fresh, fetcher, "v1", restore.RestoreOptions(allowed_roots=[str(app)]))
    assert {path.name: path.read_bytes() for path in (app / "data").iterdir()} == before
    assert fresh.ids() == []  # no manifest of a checkpoint whose objects never came
    assert not any(fresh.known_sound(name) for name in store.referenced(manifest) if name not in tree_names(manifest))


def test_the_stream_of_a_rebuild_refuses_a_reply_with_fewer_sizes_than_objects(tmp_path):
    store = Store(str(tmp_path / "store"))
    store.init()
    objects = [b"one", b"two"]

    class Short:  # pylint: disable=too-few-public-methods
        spec = client.RepositorySpec.from_options({"host": "backup", "path": "/srv/repo"})

        def send(self, document):
            pass

        def flush(self, what):
            pass

        def reply(self, what):
            return {"sizes": [len(objects[0])]}

        def read_exactly(self, size, what):
            return objects[0][:size]

    wanted = [(hashlib.sha256(data).hexdigest(), len(data)) for data in objects]
    content = fetch.RemoteContent(store, Short(), wanted)
    try:
        with pytest.raises(RepositoryError, match="1 sizes for 2 objects asked for"):
            b"".join(content.chunks(wanted[0][0]))
    finally:
        content.stop()


def test_an_object_announced_larger_than_the_checkpoint_says_is_refused_before_it_is_written(tmp_path, repo, monkeypatch):
    _app, _store, spec, manifest = synced(tmp_path)
    size = len(BIG) * 4

    def get(self, request):
        names = request.get("names", [])
        if set(names) <= tree_names(manifest):
            return _receiver.Receiver.get(self, request)
        self.reply({"ok": True, "sizes": [size] * len(names)})
        for _name in names:
            self.stdout.write(b"A" * size)
        self.stdout.flush()
        return None

    repo.receiver = lying(get=get)
    written = []
    real_check = fetch._check_fetched  # pylint: disable=protected-access
    monkeypatch.setattr(fetch, "_check_fetched", lambda store, name, tmp, where: written.append(os.path.getsize(tmp))
                        or real_check(store, name, tmp, where))
    fresh = Store(str(tmp_path / "fresh"))
    with pytest.raises(IntegrityError, match="announced with %d bytes where the checkpoint allows at most %d" % (size, len(BIG))):
        repository.fetch_into(fresh, spec, ["v1"], None, "test")
    assert written == [] and fresh.ids() == []


def test_the_repository_error_text_is_escaped_and_shortened(tmp_path, repo):
    _app, _store, spec, _manifest = synced(tmp_path)

    def hello(self, request):
        raise _receiver.Refused("disk fine\n[WARNING]: fake controller line\x1b[2J" + "x" * 5000)

    repo.receiver = lying(hello=hello)
    with pytest.raises(RepositoryError) as caught:
        repository.fetch_into(Store(str(tmp_path / "fresh")), spec, ["v1"], None, "test")
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and "\\x0a[WARNING]" in message and len(message) < 1200


def test_the_error_output_of_ssh_is_escaped_and_shortened(tmp_path):
    conn = client.Connection(client.RepositorySpec.from_options({"host": "backup", "path": "/srv/repo"}))
    conn.stderr_path = str(tmp_path / "stderr")
    (tmp_path / "stderr").write_bytes(b"y" * 3000 + b"banner\n[WARNING]: fake\x1b[2J\n")
    message = str(conn._lost("opening it"))  # pylint: disable=protected-access
    assert "\n" not in message and "\x1b" not in message and "\\x0a[WARNING]: fake" in message and len(message) < 1200


def test_a_key_given_for_a_plain_host_is_refused_before_a_store_is_created(tmp_path, repo):
    _app, _store, spec, _manifest = synced(tmp_path)  # the host's checkpoints are plain
    fresh = Store(str(tmp_path / "fresh"), KEY)
    with pytest.raises(EncryptionKeyError, match="not encrypted, but encryption_key was given"):
        with fetch.Fetcher(fresh, spec, KEY) as fetcher:
            fetcher.prepare()
    assert not (tmp_path / "fresh").exists()  # no plain store left where an encrypted one was asked for
