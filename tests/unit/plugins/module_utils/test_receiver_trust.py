# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one login of the repository receiver can do to the checkpoints of another host (no SSH: the receiver on pipes)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys

from ansible_collections.gitops.rollback.plugins.module_utils.replication import receiver as _repo_receiver
from ansible_collections.gitops.rollback.plugins.module_utils.replication.client import receiver_source

ID = "20261203T090000.000Z-abcdef"


def serve(*requests, namespace=None):
    """Run the receiver (bound to ``namespace`` when given) on ``requests``; return its replies."""
    data = b"".join(item if isinstance(item, bytes) else json.dumps(item).encode() + b"\n" for item in requests)
    out = io.BytesIO()
    _repo_receiver.Receiver(io.BytesIO(data), out, **({"namespace": namespace} if namespace else {})).serve()
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith(b"{")]


def hello(root, host="web1"):
    return {"op": "hello", "root": str(root), "host": host, "create": True}


def put(name, body, digest=None):
    return [{"op": "put", "objects": [[name, len(body)]]}, body + (digest or hashlib.sha256(body).hexdigest()).encode()]


def envelope(key_id: bytes, payload: bytes) -> bytes:
    """Bytes shaped as an encrypted store's object: 8 bytes of scheme, the key id in bytes 8-24, then ciphertext."""
    return b"GRENC001" + key_id + payload


def stored(root, name):
    return (root / "objects" / name[:2] / name).read_bytes()


def test_an_object_held_is_never_replaced_by_another_hosts_session(tmp_path):
    repo = tmp_path / "repo"
    good = b"web1's config file\n"
    name = hashlib.sha256(good).hexdigest()
    assert serve(hello(repo), *put(name, good))[1]["stored"] == [name]
    junk = b"junk from web2"
    reply = serve(hello(repo, "web2"), *put(name, junk))[1]  # sent with the junk's own digest, as an envelope is
    assert reply["stored"] == [] and reply["problems"][0]["object"] == name
    assert stored(repo, name) == good
    assert os.listdir(repo / "tmp") == []


def test_an_encrypted_object_held_is_kept_and_one_under_another_key_is_refused(tmp_path):
    repo = tmp_path / "repo"
    name = "ab" * 32  # a keyed name: the receiver cannot tell the content from its name
    held = envelope(b"K" * 16, b"web1's sealed bytes")
    assert serve(hello(repo), *put(name, held))[1]["stored"] == [name]
    assert serve(hello(repo, "web1"), *put(name, held))[1] == {"ok": True, "stored": [name], "problems": []}
    same_key = serve(hello(repo, "web2"), *put(name, envelope(b"K" * 16, b"forged under web1's key id")))[1]
    # held: the one held stays, and the sender learns it holds other bytes (it checks they open under its key)
    assert same_key["ok"] is False and same_key["problems"] == [
        {"object": name, "problem": "held with other bytes, kept", "kind": "other_bytes"}]
    listed = serve(hello(repo, "web2"), {"op": "have", "names": [name], "key_id": (b"K" * 16).hex(), "digests": True})[1]
    assert listed == {"ok": True, "have": [name], "digests": [hashlib.sha256(held).hexdigest()]}
    other_key = serve(hello(repo, "web2"), *put(name, envelope(b"R" * 16, b"sealed under a rotated key")))[1]
    assert other_key["ok"] is False and other_key["problems"] == [
        {"object": name, "problem": "held sealed under another key, kept", "kind": "other_key"}]
    assert stored(repo, name) == held
    assert os.listdir(repo / "tmp") == []


def test_an_object_sent_again_is_made_young_so_a_collection_meanwhile_keeps_it(tmp_path):
    repo = tmp_path / "repo"
    body = b"content no manifest needs yet"
    name = hashlib.sha256(body).hexdigest()
    serve(hello(repo), *put(name, body))
    path = repo / "objects" / name[:2] / name
    os.utime(path, (1, 1))
    assert serve(hello(repo), *put(name, body))[1]["stored"] == [name]
    assert serve(hello(repo), {"op": "collect", "grace": 3600})[1]["objects"] == 0
    assert path.read_bytes() == body


def record(repo, host="web1"):
    """Record checkpoint ``ID`` of ``host`` (one object), unbound; return the manifest's path."""
    body, content = b'{"id": "%s"}' % ID.encode(), b"content of %s" % host.encode()
    name = hashlib.sha256(content).hexdigest()
    manifest = {"op": "put_manifest", "id": ID, "size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "needs": [name]}
    replies = serve(hello(repo, host), *put(name, content), manifest, body)
    assert replies[2]["ok"] is True
    return repo / "hosts" / host / "checkpoints" / (ID + ".json")


def test_a_login_bound_to_its_namespace_can_neither_open_nor_forget_another_hosts_checkpoints(tmp_path):
    repo = tmp_path / "repo"
    manifest = record(repo, "web1")
    replies = serve(hello(repo, "web1"), {"op": "forget", "ids": [ID]}, namespace="web2")
    assert len(replies) == 1 and replies[0]["ok"] is False and "bound to host namespace web2" in replies[0]["error"]
    assert manifest.exists()
    replies = serve(hello(repo, "web2"), {"op": "forget", "ids": [ID]}, namespace="web2")
    assert replies[1] == {"ok": True, "forgotten": []} and manifest.exists()
    assert serve(hello(repo, "web1"), {"op": "forget", "ids": [ID]})[1]["forgotten"] == [ID]  # unbound: as before


def test_an_installed_receiver_run_with_namespace_discards_the_program_sent_and_serves_only_that_namespace(tmp_path):
    repo, marker = tmp_path / "repo", tmp_path / "ran"
    manifest = record(repo, "web1")
    installed = tmp_path / "receiver.py"
    installed.write_bytes(receiver_source())
    sent = b"open(%r, 'w').write('the program sent ran')\n" % str(marker).encode()
    requests = b"".join(json.dumps(item).encode() + b"\n" for item in (hello(repo, "web1"), {"op": "forget", "ids": [ID]}))
    done = subprocess.run([sys.executable, "-I", "-S", str(installed), "--namespace", "web2"],
                          input=b"%d\n" % len(sent) + sent + requests, capture_output=True, check=True, timeout=60)
    assert "bound to host namespace web2" in json.loads(done.stdout)["error"]
    assert manifest.exists() and not marker.exists()
    done = subprocess.run([sys.executable, "-I", "-S", str(installed), "--namespace", "web1"],
                          input=b"%d\n" % len(sent) + sent + requests, capture_output=True, check=True, timeout=60)
    assert [json.loads(line)["ok"] for line in done.stdout.splitlines()] == [True, True] and not manifest.exists()
    assert not marker.exists()


def test_names_with_a_trailing_newline_are_refused_and_nothing_is_created(tmp_path):
    repo = tmp_path / "repo"
    content = b"content"
    name = hashlib.sha256(content).hexdigest()
    assert serve(hello(repo, "web1\n"))[0]["ok"] is False
    assert not repo.exists()
    replies = serve(hello(repo), *put(name + "\n", content, name))
    assert replies[1]["ok"] is False and "not an object name" in replies[1]["error"]
    replies = serve(hello(repo), {"op": "forget", "ids": [ID + "\n"]})
    assert replies[1]["ok"] is False and "not a checkpoint id" in replies[1]["error"]
    assert os.listdir(repo / "hosts") == ["web1"] and os.listdir(repo / "objects") == []


def test_a_delta_that_would_rebuild_an_object_larger_than_its_base_and_itself_stops_there(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    base = os.urandom(1 << 20)
    base_name = hashlib.sha256(base).hexdigest()
    delta = b"C 0 %d\n" % len(base) * 200  # 2.4 KB asking for 200 MiB
    target = "0" * 64
    written = []
    receive = _repo_receiver.Receiver._receive

    def measured(self, tmp, chunks):
        sizes = []
        try:
            return receive(self, tmp, (sizes.append(len(chunk)) or chunk for chunk in chunks))
        finally:
            written.append(sum(sizes))

    monkeypatch.setattr(_repo_receiver.Receiver, "_receive", measured)
    replies = serve(hello(repo), *put(base_name, base), {"op": "put", "objects": [[target, len(delta), base_name]]},
                    delta + target.encode(), {"op": "have", "names": []})
    assert written[1] <= len(base) + len(delta)
    assert replies[2]["stored"] == [] and replies[2]["problems"][0]["object"] == target  # the sender sends it whole
    assert replies[3]["ok"] is True and not (repo / "objects" / "00").exists()
