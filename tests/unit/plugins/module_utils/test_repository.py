# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The repository receiver and the checks of the repository option (no SSH: the receiver on pipes)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.replication import client as _repo_client
from ansible_collections.gitops.rollback.plugins.module_utils.replication import fetch as _fetch
from ansible_collections.gitops.rollback.plugins.module_utils.replication import receiver as _repo_receiver
from ansible_collections.gitops.rollback.plugins.module_utils.replication.client import (
    Connection, RepositoryError, RepositorySpec, preferred_ciphers, receiver_source,
)
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.plugins.module_utils.replication.sync import (
    encode_delta, needs_digest,
)

ID = "20261203T090000.000Z-abcdef"


def serve(*requests):
    """Run the receiver on ``requests`` (JSON documents, or bytes sent as they are); return its replies."""
    data = b"".join(item if isinstance(item, bytes) else json.dumps(item).encode() + b"\n" for item in requests)
    out = io.BytesIO()
    _repo_receiver.Receiver(io.BytesIO(data), out).serve()
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith(b"{")]


def hello(root, host="web1"):
    return {"op": "hello", "root": str(root), "host": host, "create": True}


def test_objects_are_stored_only_when_they_hash_as_announced(tmp_path):
    good, bad = b"good content", b"tampered content"
    good_name = hashlib.sha256(good).hexdigest()
    bad_name = hashlib.sha256(b"what it should have been").hexdigest()
    replies = serve(hello(tmp_path / "repo"),
                    {"op": "put", "objects": [[good_name, len(good)], [bad_name, len(bad)]]},
                    good + good_name.encode() + bad + bad_name.encode())
    assert replies[1]["stored"] == [good_name]
    assert replies[1]["problems"] == [{"object": bad_name, "expected": bad_name,
                                       "actual": hashlib.sha256(bad).hexdigest()}]
    assert (tmp_path / "repo" / "objects" / good_name[:2] / good_name).read_bytes() == good
    assert not (tmp_path / "repo" / "objects" / bad_name[:2]).exists()
    assert os.listdir(tmp_path / "repo" / "tmp") == []


def test_a_manifest_is_refused_while_an_object_it_needs_is_missing(tmp_path):
    body = b'{"id": "%s"}' % ID.encode()
    needed = hashlib.sha256(b"x").hexdigest()
    manifest = {"op": "put_manifest", "id": ID, "size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                "needs": [needed]}
    replies = serve(hello(tmp_path / "repo"), manifest, body)
    assert replies[1]["ok"] is False and replies[1]["missing"] == [needed]
    assert not (tmp_path / "repo" / "hosts" / "web1" / "checkpoints" / (ID + ".json")).exists()
    replies = serve(hello(tmp_path / "repo"), {"op": "put", "objects": [[needed, 1]]}, b"x" + needed.encode(),
                    manifest, body)
    assert replies[2]["ok"] is True
    assert (tmp_path / "repo" / "hosts" / "web1" / "checkpoints" / (ID + ".json")).read_bytes() == body


@pytest.mark.parametrize("request_", [
    {"op": "have", "names": ["../../../etc/passwd"]},
    {"op": "get", "names": ["../" * 5 + "x" * 50]},
    {"op": "put", "objects": [["../escape", 1]]},
    {"op": "put_manifest", "id": "../../escape", "size": 1, "sha256": "0" * 64},
], ids=["have", "get", "put", "put_manifest"])
def test_names_that_are_not_object_names_or_ids_are_refused_and_end_the_session(tmp_path, request_):
    replies = serve(hello(tmp_path / "repo"), request_, b"x", {"op": "have", "names": []})
    assert len(replies) == 2 and replies[1]["ok"] is False and "is not" in replies[1]["error"]
    assert sorted(os.listdir(tmp_path)) == ["repo"]
    assert sorted(os.listdir(tmp_path / "repo")) == ["format", "hosts", "objects", "tmp"]


@pytest.mark.parametrize("host", ["../evil", "a/b", "", "-x"])
def test_a_host_namespace_outside_the_grammar_is_refused(tmp_path, host):
    replies = serve(hello(tmp_path / "repo", host))
    assert replies[0]["ok"] is False and not (tmp_path / "repo").exists()


def test_a_directory_that_is_not_a_repository_is_refused(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "important.txt").write_text("data")
    replies = serve(hello(tmp_path / "repo"))
    assert replies[0]["ok"] is False and "not a repository" in replies[0]["error"]
    assert os.listdir(tmp_path / "repo") == ["important.txt"]


def test_the_bootstrap_runs_the_receiver_it_reads_from_stdin(tmp_path):
    source = receiver_source()
    request = json.dumps(hello(tmp_path / "repo")).encode() + b"\n"
    done = subprocess.run([sys.executable, "-c", _repo_receiver.BOOTSTRAP], input=b"%d\n" % len(source) + source + request,
                          capture_output=True, check=True, timeout=60)
    assert json.loads(done.stdout)["exists"] is True
    assert json.loads((tmp_path / "repo" / "format").read_text()) == {"format_version": 1, "repository": 1}


@pytest.mark.parametrize("options,problem", [
    ({"host": "-oProxyCommand=touch /tmp/x", "path": "/srv/repo"}, "host="),
    ({"host": "backup; rm -rf /", "path": "/srv/repo"}, "host="),
    ({"host": "backup", "path": "relative/repo"}, "path="),
    ({"host": "backup", "path": "/srv/repo", "user": "root -oX"}, "user="),
    ({"host": "backup", "path": "/srv/repo", "name": "../other"}, "name="),
    ({"host": "backup", "path": "/srv/repo", "port": 70000}, "port="),
    ({"host": "backup\n", "path": "/srv/repo"}, "host="),  # "$" would accept a trailing newline
    ({"host": "backup", "path": "/srv/repo", "user": "repo\n"}, "user="),
    ({"host": "backup", "path": "/srv/repo", "name": "web1\n"}, "name="),
])
def test_repository_options_are_checked_before_anything_runs(options, problem):
    with pytest.raises(RepositoryError, match=problem):
        RepositorySpec.from_options(options)


def test_ssh_checks_host_keys_and_the_remote_command_is_a_constant(tmp_path):
    spec = RepositorySpec.from_options({"host": "backup.example.com", "path": "/srv/repo'; rm -rf / #", "port": 2222,
                                        "user": "repo", "name": "web1"})
    connection = Connection(spec)
    connection.workdir = str(tmp_path)
    argv = connection.argv()
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert argv[-3:] == ["--", "backup.example.com", "python3 -I -S -c '%s'" % _repo_receiver.BOOTSTRAP]
    assert all("/srv/repo" not in arg for arg in argv)


def test_collection_keeps_young_objects_and_those_any_host_needs(tmp_path):
    names = {word: hashlib.sha256(word.encode()).hexdigest() for word in ("needed", "orphan", "young")}
    puts = [{"op": "put", "objects": [[names[word], len(word)]]} for word in names]
    bodies = [word.encode() + names[word].encode() for word in names]
    body = b'{"id": "%s"}' % ID.encode()
    serve(hello(tmp_path / "repo", "web2"), puts[0], bodies[0], puts[1], bodies[1], puts[2], bodies[2],
          {"op": "put_manifest", "id": ID, "size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
           "needs": [names["needed"]]}, body)
    objects = tmp_path / "repo" / "objects"
    for word in ("needed", "orphan"):
        os.utime(objects / names[word][:2] / names[word], (1, 1))
    replies = serve(hello(tmp_path / "repo", "web1"), {"op": "collect", "grace": 60}, {"op": "forget", "ids": [ID]})
    assert replies[1]["objects"] == 1 and replies[1]["kept"] == 1
    assert sorted(path.name for path in objects.glob("*/*")) == sorted([names["needed"], names["young"]])
    assert replies[2]["forgotten"] == []  # web1 cannot forget web2's checkpoints


def tree_lines(count, changed=(), seed=""):
    """Lines shaped like a tree object's entries; those in ``changed`` have another hash."""
    return b"".join(b'{"path":"dir%02d/file%05d.txt","sha256":"%s","size":%d}\n' % (
        number // 100, number, hashlib.sha256(b"%d%s" % (number, (seed if number in changed else "").encode())
                                              ).hexdigest().encode(), number) for number in range(count))


@pytest.mark.parametrize("edit", ["changed", "added_and_removed", "reordered", "unrelated", "empty_base"])
def test_a_delta_rebuilds_the_object_exactly_and_is_small_for_a_small_change(tmp_path, edit):
    base = tree_lines(2000)
    new = {
        "changed": tree_lines(2000, changed=range(0, 2000, 100), seed="v2"),
        "added_and_removed": base[:5000] + b'{"path":"new"}\n' + base[9000:] + b"no newline at the end",
        "reordered": b"".join(reversed(base.splitlines(keepends=True))),
        "unrelated": os.urandom(5000),
        "empty_base": base,
    }[edit]
    if edit == "empty_base":
        base = b""
    delta = encode_delta(base, new)
    (tmp_path / "base").write_bytes(base)
    with open(tmp_path / "base", "rb") as handle:
        assert b"".join(_repo_receiver.apply_delta(delta, handle)) == new
    if edit == "changed":  # 20 of 2,000 entries: the delta is those lines and a few instructions
        assert len(delta) < 20 * 110 + 41 * 20 < len(new) // 20


def put_delta(name, base, delta):
    return [{"op": "put", "objects": [[name, len(delta), base]]}, delta + name.encode()]


def test_an_object_sent_as_a_delta_is_rebuilt_checked_and_stored_whole(tmp_path):
    base, new = tree_lines(300), tree_lines(300, changed=[7, 250], seed="v2")
    base_name, new_name = hashlib.sha256(base).hexdigest(), hashlib.sha256(new).hexdigest()
    forged = hashlib.sha256(b"something else").hexdigest()
    replies = serve(hello(tmp_path / "repo"),
                    *put_delta(new_name, base_name, encode_delta(base, new)),  # the base is not there: sent again
                    {"op": "put", "objects": [[base_name, len(base)]]}, base + base_name.encode(),
                    *put_delta(new_name, base_name, encode_delta(base, new)),
                    *put_delta(forged, base_name, encode_delta(base, new)),  # rebuilt, but not to its name
                    *put_delta(forged, base_name, b"X 1 2\n"))
    assert replies[1]["stored"] == [] and replies[1]["problems"][0]["actual"] is None
    assert replies[3]["stored"] == [new_name]
    assert (tmp_path / "repo" / "objects" / new_name[:2] / new_name).read_bytes() == new
    assert replies[4]["stored"] == [] and replies[4]["problems"][0]["actual"] == new_name
    assert replies[5]["ok"] is False and "instruction" in replies[5]["error"]  # and the session ends
    assert not (tmp_path / "repo" / "objects" / forged[:2]).exists()
    assert os.listdir(tmp_path / "repo" / "tmp") == []


def test_a_list_of_needed_objects_sent_as_a_difference_is_rebuilt_or_asked_for_in_full(tmp_path):
    names = {word: hashlib.sha256(word.encode()).hexdigest() for word in ("kept", "dropped", "added")}
    puts = []
    for word, name in names.items():
        puts += [{"op": "put", "objects": [[name, len(word)]]}, word.encode() + name.encode()]
    second = ID.replace("090000", "100000")
    first_body, second_body = b'{"id": "%s"}' % ID.encode(), b'{"id": "%s"}' % second.encode()

    def record(checkpoint_id, body, **needs):
        return [dict({"op": "put_manifest", "id": checkpoint_id, "size": len(body),
                      "sha256": hashlib.sha256(body).hexdigest()}, **needs), body]

    difference = {"needs_base": ID, "needs_added": [names["added"]], "needs_removed": [names["dropped"]]}
    wanted = needs_digest([names["kept"], names["added"]])
    unknown_base = {"needs_base": second, "needs_added": [names["added"]], "needs_removed": [names["dropped"]]}
    replies = serve(hello(tmp_path / "repo"), *puts,
                    *record(ID, first_body, needs=[names["kept"], names["dropped"]]),
                    *record(second, second_body, needs_sha256=needs_digest([names["kept"]]), **difference),
                    *record(second, second_body, needs_sha256=wanted, **unknown_base),
                    *record(second, second_body, needs_sha256=wanted, **difference))
    folder = tmp_path / "repo" / "hosts" / "web1" / "checkpoints"
    assert replies[5]["needs_in_full"] is True  # the list built would not be the one meant
    assert replies[6]["needs_in_full"] is True  # no such base recorded
    assert replies[7]["ok"] is True
    assert (folder / (second + ".needs")).read_text().split() == [names["kept"], names["added"]]


def test_objects_sent_by_sendfile_after_one_copied_through_the_buffer_keep_their_order(tmp_path, monkeypatch):
    first, second = b"first object " * 100, b"second object " * 100
    names = [hashlib.sha256(data).hexdigest() for data in (first, second)]
    serve(hello(tmp_path / "repo"), {"op": "put", "objects": [[names[0], len(first)], [names[1], len(second)]]},
          first + names[0].encode() + second + names[1].encode())
    real_sendfile = os.sendfile
    refused = []

    def sendfile_refusing_the_first(out, source, offset, count):
        if not refused:  # the first object falls back to a copy through stdout's buffer
            refused.append(source)
            raise OSError(errno.EAGAIN, "try again")
        return real_sendfile(out, source, offset, count)

    monkeypatch.setattr(_repo_receiver.os, "sendfile", sendfile_refusing_the_first)
    request = json.dumps(hello(tmp_path / "repo")).encode() + b"\n" + json.dumps({"op": "get", "names": names}).encode() + b"\n"
    with open(tmp_path / "out", "w+b") as out:
        _repo_receiver.Receiver(io.BytesIO(request), out).serve()
        out.seek(0)
        sent = out.read()
    assert refused and sent.endswith(first + second)


FAKE_SSH = """#!/bin/sh
# ssh -G: the ciphers of the configuration (CONFIGURED), or ssh's own defaults with -F /dev/null
case " $* " in *" -F /dev/null "*) echo "ciphers $DEFAULTS";; *) echo "ciphers $CONFIGURED";; esac
"""
DEFAULT_CIPHERS = "chacha20-poly1305@openssh.com,aes128-ctr,aes128-gcm@openssh.com"


@pytest.mark.parametrize("configured, expected", [
    (DEFAULT_CIPHERS, ["-o", "Ciphers=aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr"]),
    ("aes256-ctr", []),  # set in ~/.ssh/config or /etc/ssh/ssh_config: kept
    ("chacha20-poly1305@openssh.com,aes128-ctr", []),
])
def test_ssh_offers_aes_gcm_first_unless_the_ssh_configuration_names_the_ciphers(tmp_path, monkeypatch, configured, expected):
    (tmp_path / "ssh").write_text(FAKE_SSH)
    (tmp_path / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, os.environ["PATH"]))
    monkeypatch.setenv("DEFAULTS", DEFAULT_CIPHERS)
    monkeypatch.setenv("CONFIGURED", configured)
    monkeypatch.setattr(_repo_client, "_CIPHERS", {})
    connection = Connection(RepositorySpec.from_options({"host": "backup.example.com", "path": "/srv/repo"}))
    connection.workdir = str(tmp_path)
    argv = connection.argv()
    assert [arg for arg in argv if arg.startswith("Ciphers=")] == expected[1:]
    assert argv.index("--") > (argv.index(expected[1]) if expected else 0)


@pytest.mark.parametrize("configured, defaults", [
    (None, None),  # an ssh without -G
    (["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"],) * 2,  # already first
    (["chacha20-poly1305@openssh.com", "aes128-ctr"],) * 2,  # an ssh without it
])
def test_ssh_is_left_to_its_ciphers_when_it_cannot_tell_or_aes_gcm_is_first_or_missing(configured, defaults):
    assert preferred_ciphers(configured, defaults) == []


class _Conn:
    """A repository session on bytes: the replies to ``get`` and the objects, in order."""

    def __init__(self, objects):
        self.objects = objects
        self.data = io.BytesIO(b"".join(objects))
        self.spec = RepositorySpec.from_options({"host": "backup", "path": "/srv/repo"})

    def send(self, document):
        pass

    def flush(self, what):
        pass

    def reply(self, what):
        return {"sizes": [len(data) for data in self.objects]}

    def read_exactly(self, size, what):
        return self.data.read(size)


def test_the_stream_of_a_rebuild_brings_every_object_whole_in_order_handed_over_in_groups(tmp_path, monkeypatch):
    objects = [b"", os.urandom(5), os.urandom(_fetch.READ_CHUNK * 2 + 3)] + [os.urandom(20000) for _number in range(200)]
    names = [hashlib.sha256(data).hexdigest() for data in objects]
    store = Store(str(tmp_path / "store"))
    store.init()
    handed = []
    real_put = _fetch.RemoteContent._put
    monkeypatch.setattr(_fetch.RemoteContent, "_put", lambda self, item: handed.append(item) or real_put(self, item))
    content = _fetch.RemoteContent(store, _Conn(objects), [(name, len(data)) for name, data in zip(names, objects)])
    try:
        assert [b"".join(content.chunks(name)) for name in names] == objects
    finally:
        content.stop()
    assert content.objects == len(objects) and content.bytes == sum(map(len, objects))
    assert len(handed) <= 1 + sum(map(len, objects)) // _fetch.READ_GROUP + 2  # groups, not 203 objects (and the end)


def test_a_rebuild_stopped_while_the_session_sends_nothing_ends_without_waiting_for_it(tmp_path):
    """The reader thread blocked on a silent session holds the pipe's buffer: stopping ends ssh, so closing
    the session does not wait for ssh's own timeouts."""
    store = Store(str(tmp_path / "store"))
    store.init()
    conn = Connection(RepositorySpec.from_options({"host": "backup", "path": "/srv/repo"}))
    conn.proc = subprocess.Popen(["sleep", "120"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    content = _fetch.RemoteContent(store, conn, [("ab" * 32, 10)])
    time.sleep(0.2)  # the reader waits for the reply to its request
    started = time.monotonic()
    content.stop()
    conn.close()
    assert time.monotonic() - started < 15
    assert not content._reader.is_alive()  # pylint: disable=protected-access
