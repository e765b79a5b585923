# pylint: disable=import-outside-toplevel  # the collection is importable only once collections_path is on sys.path
"""Feature flags in a real etcd: captured under a prefix, restored exactly in one transaction, a
change made meanwhile never overwritten unseen (the engine in-process; a component test)."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from harness import EtcdServer

PREFIX = "/flags/shop/"


@pytest.fixture
def flags(etcd: EtcdServer, collections_path: Path, tmp_path: Path):
    sys.path.insert(0, str(collections_path))
    from ansible_collections.gitops.rollback.plugins.module_utils.release import flags as _flags
    from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
    prefix = PREFIX + tmp_path.name + "/"
    etcd.ctl("put", prefix + "checkout_v2", "true")
    etcd.ctl("put", prefix + "banner", "winter")
    etcd.ctl("put", "/flags/other/keep", "untouched")
    backend = _flags.EtcdFlags(_flags.EtcdConnection([etcd.endpoint]), prefix)

    def request(**fields):
        return _flags.FlagsRequest(backend, Store(str(tmp_path / "store")), "test", **fields)

    return _flags, backend, request, prefix


def keys(etcd: EtcdServer, prefix: str) -> dict:
    lines = etcd.ctl("get", "--prefix", prefix).splitlines()
    return dict(zip(lines[0::2], lines[1::2]))


def test_the_flags_under_the_prefix_come_back_exactly(etcd: EtcdServer, flags) -> None:
    _flags, backend, request, prefix = flags
    assert _flags.capture(request(checkpoint="v1"))["flags"] == {"banner": "winter", "checkout_v2": "true"}
    etcd.ctl("put", prefix + "checkout_v2", "false")
    etcd.ctl("put", prefix + "added_later", "x")
    etcd.ctl("del", prefix + "banner")
    planned = _flags.restore(request(checkpoint="v1", check_mode=True))
    assert planned["changes"] == {"added_later": {"before": "x", "after": None},
                                  "banner": {"before": None, "after": "winter"},
                                  "checkout_v2": {"before": "false", "after": "true"}}
    assert keys(etcd, prefix)[prefix + "added_later"] == "x"  # check mode wrote nothing
    assert _flags.restore(request(checkpoint="v1"))["changed"]
    assert keys(etcd, prefix) == {prefix + "banner": "winter", prefix + "checkout_v2": "true"}
    assert keys(etcd, "/flags/other/") == {"/flags/other/keep": "untouched"}
    assert not _flags.restore(request(checkpoint="v1"))["changed"]
    off = _flags.turn_off(request(names=["checkout_v2"]))
    assert off["changes"] == {"checkout_v2": {"before": "true", "after": "false"}}
    assert keys(etcd, prefix)[prefix + "checkout_v2"] == "false"
    assert backend.read().flags == {"banner": "winter", "checkout_v2": "false"}


def test_a_flag_written_meanwhile_is_not_overwritten_unseen(etcd: EtcdServer, flags) -> None:
    _flags, backend, request, prefix = flags
    _flags.capture(request(checkpoint="v1"))
    etcd.ctl("put", prefix + "checkout_v2", "false")
    current = backend.read()
    target, _checkpoint = _flags.stored_flags(request(checkpoint="v1"))
    etcd.ctl("put", prefix + "banner", "set by someone else meanwhile")
    with pytest.raises(_flags.FlagsError, match="changed while they were being restored; nothing was written"):
        backend.write(target, current)
    assert keys(etcd, prefix) == {prefix + "banner": "set by someone else meanwhile", prefix + "checkout_v2": "false"}


def test_an_unreachable_cluster_is_named(flags) -> None:
    _flags, _backend, request, prefix = flags
    dead = _flags.EtcdFlags(_flags.EtcdConnection(["http://127.0.0.1:9"], timeout=2), prefix)
    with pytest.raises(_flags.FlagsError, match=r"No etcd endpoint answered \(http://127.0.0.1:9"):
        _flags.capture(_flags.FlagsRequest(dead, request().store, "test", checkpoint="v1"))


def _put(endpoint: str, key: str, value: str) -> None:
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value.encode()).decode()})
    with urllib.request.urlopen(urllib.request.Request(endpoint + "/v3/kv/put", body.encode(), method="POST"),
                                timeout=10) as answer:
        answer.read()


def test_a_concurrent_writers_unrelated_keys_are_untouched_while_the_flags_come_back(etcd: EtcdServer, flags) -> None:
    _flags, _backend, request, prefix = flags
    _flags.capture(request(checkpoint="v1"))
    etcd.ctl("put", prefix + "checkout_v2", "false")
    etcd.ctl("put", prefix + "added_later", "x")
    neighbour = prefix.rstrip("/") + "-neighbour/"  # shares the prefix's text up to its last '/'
    stop, written = threading.Event(), []

    def writer() -> None:
        while not stop.is_set():
            number = str(len(written))
            _put(etcd.endpoint, "/flags/other/counter", number)
            _put(etcd.endpoint, neighbour + "counter", number)
            written.append(number)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 3:
            time.sleep(0.01)
        for _round in range(3):  # each restore's transaction lands between the writer's puts
            assert _flags.restore(request(checkpoint="v1"))["flags"] == {"banner": "winter", "checkout_v2": "true"}
            etcd.ctl("put", prefix + "checkout_v2", "false")
        assert _flags.restore(request(checkpoint="v1"))["changed"]
    finally:
        stop.set()
        thread.join()
    assert keys(etcd, prefix) == {prefix + "banner": "winter", prefix + "checkout_v2": "true"}
    assert keys(etcd, "/flags/other/") == {"/flags/other/counter": written[-1], "/flags/other/keep": "untouched"}
    assert keys(etcd, neighbour) == {neighbour + "counter": written[-1]}
    assert len(written) > 3  # the writer kept writing while the flags were restored
