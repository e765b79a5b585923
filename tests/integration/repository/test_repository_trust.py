"""What a repository host, or another host sharing it, cannot make a host do: a forged manifest cannot reach the store
outside the allowed paths (the rebuild playbook refusing one: test_rebuild_playbook.py), and objects another namespace
sent first under this store's names cannot pass for its own."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from harness import Fleet
from test_rebuild_playbook import forge_root
from test_repository_engine import KEY, make_tree, take


def squat(eng, spec, names, key_id: str, scheme: bytes) -> None:
    """Send garbage under ``names`` from another namespace, each shaped as an envelope naming ``key_id``."""
    with eng.client.Connection(spec) as conn:
        conn.hello(create=True)
        bodies = [scheme + bytes.fromhex(key_id) + b"garbage from another host %d" % index for index in range(len(names))]
        conn.send({"op": "put", "objects": [[name, len(body)] for name, body in zip(names, bodies)]})
        for body in bodies:
            conn.write(body + hashlib.sha256(body).hexdigest().encode("ascii"))
        assert conn.reply("squatting")["stored"] == list(names)


def test_objects_another_namespace_sent_first_under_this_stores_names_refuse_the_sync(
        eng, repository_host, repo_path, tmp_path):
    root = tmp_path / "app"
    make_tree(root, files=3)
    store = eng.store.Store(str(tmp_path / "store"), KEY)
    manifest = take(eng, store, root, "v1")
    names = list(dict.fromkeys(store.referenced(manifest)))
    key_id = store.read_format()["encryption"]["key_id"]
    location = store.object_location(names[0])
    with open(location[0], "rb") as handle:
        handle.seek(location[1])
        scheme = handle.read(8)
    squat(eng, eng.client.RepositorySpec.from_options(repository_host.options(repo_path, name="web2")),
          names[:2], key_id, scheme)

    spec = eng.client.RepositorySpec.from_options(repository_host.options(repo_path, name="web1"))
    with pytest.raises(eng.client.RepositoryError, match="does not open with this store's key") as refused:
        eng.sync.sync_store(store, spec)
    assert names[0] in str(refused.value) or names[1] in str(refused.value)
    repo = repository_host.local(repo_path)
    assert not list((repo / "hosts" / "web1").glob("checkpoints/*.json")), "no checkpoint recorded that needs garbage"


def test_a_host_sharing_the_key_reuses_the_objects_another_host_sent(eng, repository_host, repo_path, tmp_path):
    root = tmp_path / "app"
    make_tree(root, files=3)
    first = eng.store.Store(str(tmp_path / "first"), KEY)
    take(eng, first, root, "v1")
    eng.sync.sync_store(first, eng.client.RepositorySpec.from_options(repository_host.options(repo_path, name="web1")))
    second = eng.store.Store(str(tmp_path / "second"), KEY)
    eng.fetch.seed_store(second, first.read_format())  # the same key and naming key: the same object names
    manifest = take(eng, second, root, "v1")
    spec = eng.client.RepositorySpec.from_options(repository_host.options(repo_path, name="web3"))
    sent = eng.sync.sync_store(second, spec)
    assert sent["checkpoints"] == [manifest["id"]] and sent["objects"]["present"] > 0, sent
    shutil.rmtree(root)
    root.mkdir()
    rebuilt = eng.store.Store(str(tmp_path / "rebuilt"), KEY)
    with eng.fetch.Fetcher(rebuilt, spec, KEY) as fetcher:
        fetcher.prepare()
        with rebuilt.lock("test", "restore"):
            assert fetcher.fetch("v1")["checkpoint"]["id"] == manifest["id"]
    assert rebuilt.verify(rebuilt.find("v1")) == []


def test_a_forged_manifest_is_not_fetched_into_the_store_outside_the_allowed_paths(
        clean_fleet: Fleet, repository_host, repo_path):
    """checkpoint_sync state=fetched: a later restore from the local store trusts the roots a manifest names, so a
    manifest from the repository naming a root outside allowed_paths never reaches the store (nor any of its objects)."""
    host = clean_fleet["h1"]
    host.write_text("/srv/app/conf/app.conf", "listen 8080\n")
    taken = host.module("gitops.rollback.checkpoint", {"paths": ["/srv/app"], "label": "v1"}).events[-1]["result"]
    options = repository_host.options(repo_path, name="h1")
    host.module("gitops.rollback.checkpoint_sync", {"repository": options})
    forge_root(repository_host.local(repo_path), "h1", taken["checkpoint"]["id"], "/etc/app")
    host.wipe()

    def fetch(**extra):
        args = {"state": "fetched", "checkpoints": ["v1"], "repository": options, **extra}
        return host.module("gitops.rollback.checkpoint_sync", args).events[-1]

    for refused, named in ((fetch(allowed_paths=["/srv/app"]), "/etc/app, outside the paths this restore may write (/srv/app)"),
                           (fetch(), "/srv/app, outside the paths this restore may write (none given)")):
        assert refused["status"] == "failed", refused
        assert "would restore " + named in refused["result"]["msg"], refused["result"]["msg"]
        assert not list(host.store.glob("**/checkpoints/*.json")), "no manifest fetched into the store"
        assert not [path for path in host.store.glob("objects/*/*") if path.is_file()], "no object fetched"
    fetched = fetch(allowed_paths=["/srv/app", "/etc/app"])
    assert fetched["status"] != "failed" and fetched["result"]["checkpoints"] == [taken["checkpoint"]["id"]], fetched
