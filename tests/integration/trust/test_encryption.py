"""Encryption at rest through ansible-playbook: sealed content, deduplication, wrong keys, tampering,
and a key rotation killed midway that is finished by running it again."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.objects import grep_store, object_names
from trust_helpers import tree_snapshot

KEY = "trust-test-key-0123456789abcdef"
NEW_KEY = "rotated-key-fedcba9876543210-trust"
SECRET = b"db_password=Hunter2-very-secret"


def make_tree(root: Path, version: str) -> None:
    """A small managed tree whose content depends on ``version``."""
    (root / "conf").mkdir(parents=True, exist_ok=True)
    (root / "conf" / "app.conf").write_bytes(SECRET + b"\nversion=" + version.encode() + b"\n")
    (root / "shared.txt").write_text("identical in every version\n")
    (root / "data.bin").write_bytes(random.Random(version).randbytes(300_000))
    link = root / "current"
    if link.is_symlink():
        link.unlink()
    link.symlink_to("conf/app.conf")


def objects(store: Path) -> set:
    return object_names(store)


def checkpoint(run_task, root: Path, store: Path, label: str, key: str = KEY):
    return run_task("gitops.rollback.checkpoint", {"paths": [str(root)], "label": label,
                                                   "store_path": str(store), "encryption_key": key})


def restore(run_task, root: Path, store: Path, label: str, key: str = KEY, check: bool = False):
    return run_task("gitops.rollback.restore", {"checkpoint": label, "paths": [str(root)],
                                                "store_path": str(store), "encryption_key": key}, check=check)


def test_encrypted_store_hides_content_dedups_and_restores(run_task, tmp_path):
    root, store = tmp_path / "app", tmp_path / "store"
    make_tree(root, "v1")
    before = tree_snapshot(root)
    result, cp1 = checkpoint(run_task, root, store, "v1")
    assert cp1["status"] == "ok" and cp1["changed"], cp1
    fmt = json.loads((store / "format").read_text())
    assert fmt["format_version"] == 3 and fmt["encryption"]["key_id"]
    assert KEY not in json.dumps(fmt) and KEY not in result.stdout + result.stderr
    assert grep_store(store, KEY.encode()) == []
    # Neither the secret, nor a path, nor the plain SHA-256 of a file appears in objects or manifests.
    sealed = [store / "objects", store / "checkpoints"]
    for part in sealed:
        assert grep_store(part, SECRET) == [] and grep_store(part, b"app.conf") == []
    import hashlib
    assert hashlib.sha256((root / "shared.txt").read_bytes()).hexdigest() not in objects(store)

    # A second checkpoint of the same tree writes no new content object (keyed names dedup).
    first = objects(store)
    (root / "conf" / "app.conf").write_bytes(SECRET + b"\nversion=v2\n")
    _result, cp2 = checkpoint(run_task, root, store, "v2")
    added = objects(store) - first
    assert cp2["stats"]["new_blobs"] == 1 and len(added) == 2, (cp2, added)  # app.conf + the tree object

    make_tree(root, "v9")
    (root / "extra").write_text("new file")
    _result, restored = restore(run_task, root, store, "v1")
    assert restored["status"] == "ok" and restored["changed"] and restored["verified"], restored
    assert tree_snapshot(root) == before


def test_wrong_or_missing_key_is_refused_before_anything_changes(run_task, tmp_path):
    root, store = tmp_path / "app", tmp_path / "store"
    make_tree(root, "v1")
    checkpoint(run_task, root, store, "v1")
    make_tree(root, "v2")
    live = tree_snapshot(root)
    stored = sorted(p.name for p in store.rglob("*"))

    _result, wrong = restore(run_task, root, store, "v1", key="not-the-right-key-at-all")
    assert wrong["status"] == "ignored" and "not the key of store" in wrong["msg"], wrong
    _result, missing = run_task("gitops.rollback.restore", {"checkpoint": "v1", "paths": [str(root)],
                                                            "store_path": str(store)})
    assert missing["status"] == "ignored" and "is encrypted" in missing["msg"], missing
    _result, listing = run_task("gitops.rollback.checkpoint_info", {"store_path": str(store)})
    assert listing["status"] == "ignored" and "encryption_key" in listing["msg"]
    assert tree_snapshot(root) == live
    assert sorted(p.name for p in store.rglob("*")) == stored


def test_tampered_object_fails_authentication_and_nothing_is_restored(run_task, tmp_path):
    root, store = tmp_path / "app", tmp_path / "store"
    make_tree(root, "v1")
    checkpoint(run_task, root, store, "v1")
    make_tree(root, "v2")
    live = tree_snapshot(root)
    # Flip one byte in the middle of the biggest object (data.bin's ciphertext).
    victim = max((store / "objects").glob("*/*"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))

    _result, tampered = restore(run_task, root, store, "v1")
    assert tampered["status"] == "ignored", tampered
    assert "not authentic" in tampered["msg"] and "Nothing was changed" in tampered["msg"], tampered["msg"]
    assert tree_snapshot(root) == live
    _result, verified = run_task("gitops.rollback.checkpoint", {"state": "verified", "store_path": str(store),
                                                                "encryption_key": KEY})
    assert verified["status"] == "ignored" and verified["problems"], verified


def test_encrypted_database_dump_is_sealed_and_restores(run_task, tmp_path):
    import sqlite3
    db, store = tmp_path / "app.db", tmp_path / "store"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (secret text)")
        conn.execute("INSERT INTO t VALUES (?)", (SECRET.decode(),))
    args = {"engine": "sqlite", "database": str(db), "checkpoint": "v1", "store_path": str(store),
            "encryption_key": KEY}
    _result, backup = run_task("gitops.rollback.db_backup", args)
    assert backup["status"] == "ok", backup
    assert grep_store(store, SECRET) == [] and grep_store(store, b"CREATE TABLE") == []
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM t")
    _result, restored = run_task("gitops.rollback.db_restore", args)
    assert restored["status"] == "ok", restored
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT secret FROM t").fetchall() == [(SECRET.decode(),)]
    assert not list((store / "tmp").iterdir()), "no decrypted copy left behind"


def _rekey_in_subprocess(collections_path: Path, store: Path, delay: float, new_key: str = NEW_KEY) -> subprocess.Popen:
    """Start a rekey that sleeps ``delay`` seconds after each re-encrypted object (to be killed)."""
    code = (
        "import sys, time\n"
        "from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store\n"
        "store = Store(sys.argv[1], sys.argv[2])\n"
        "with store.lock('killer', 'rekey', check_format=False):\n"
        "    store.rekey(sys.argv[3], progress=lambda path: time.sleep(float(sys.argv[4])))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(collections_path))
    return subprocess.Popen([sys.executable, "-c", code, str(store), KEY, new_key, str(delay)], env=env)


def _first_scheme_store(store: Path, collections_path: Path) -> None:
    """Create an empty store as earlier releases did: the first scheme's encryption block in ``format``."""
    code = (
        "import json, os, sys\n"
        "from ansible_collections.gitops.rollback.plugins.module_utils.store.crypto_legacy import LegacyCipher\n"
        "os.makedirs(sys.argv[1], mode=0o700)\n"
        "block = LegacyCipher.create(sys.argv[2]).describe()\n"
        "open(os.path.join(sys.argv[1], 'format'), 'w').write(json.dumps({'format_version': 3, 'encryption': block}))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(store), KEY], check=True,
                   env=dict(os.environ, PYTHONPATH=str(collections_path)))


@pytest.mark.deep
@pytest.mark.parametrize("start", ["aead", "first scheme"])
def test_rekey_killed_midway_is_finished_by_a_rerun_and_loses_no_checkpoint(run_task, tmp_path, collections_path,
                                                                            start):
    """A key rotation (or, for a store of the first scheme, the move to AES-256-GCM with the same key)
    killed three times with SIGKILL, then finished by a rerun; every checkpoint restores byte-exact."""
    rng = random.Random(10)
    root, store = tmp_path / "app", tmp_path / "store"
    new_key = NEW_KEY if start == "aead" else KEY
    if start == "first scheme":
        _first_scheme_store(store, collections_path)
    snapshots = {}
    for version in ("v1", "v2", "v3"):
        make_tree(root, version)
        snapshots[version] = tree_snapshot(root)
        checkpoint(run_task, root, store, version)
    total = len(objects(store)) + 3

    if start == "first scheme":
        assert json.loads((store / "format").read_text())["encryption"]["scheme"] == "shake256-xor+hmac-sha256+hkdf/v1"
    for _round in range(3):  # killed three times at seeded random points, each run resuming the last
        proc = _rekey_in_subprocess(collections_path, store, 0.05, new_key)
        deadline = time.monotonic() + 30
        while "rekey" not in (store / "format").read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.02, 0.05 * total * 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fmt = json.loads((store / "format").read_text())
        assert "rekey" in fmt, "the kill must land during the rekey for this test to mean anything"

    # Until the rekey is finished, the store refuses work with either key and says how to finish.
    _result, refused = checkpoint(run_task, root, store, "v4")
    assert refused["status"] == "ignored" and "interrupted rekey" in refused["msg"], refused

    args = {"state": "rekeyed", "store_path": str(store), "encryption_key": KEY}
    if new_key != KEY:
        args["new_encryption_key"] = new_key
    _result, rekeyed = run_task("gitops.rollback.checkpoint", args)
    assert rekeyed["status"] == "ok" and rekeyed["changed"] and rekeyed["rekey"]["resumed"], rekeyed
    assert rekeyed["rekey"]["objects"] + rekeyed["rekey"]["manifests"] < total, "the first run did some"
    assert rekeyed["rekey"]["scheme"] == "aes-256-gcm-stream/v2"
    _result, again = run_task("gitops.rollback.checkpoint", args)
    assert again["status"] == "ok" and not again["changed"], again
    fmt = json.loads((store / "format").read_text())
    assert fmt["encryption"]["scheme"] == "aes-256-gcm-stream/v2" and "rekey" not in fmt

    if new_key != KEY:
        _result, old = restore(run_task, root, store, "v1", key=KEY)
        assert old["status"] == "ignored" and "not the key" in old["msg"]
    for version in ("v1", "v2", "v3"):
        _result, restored = restore(run_task, root, store, version, key=new_key)
        assert restored["status"] == "ok", restored
        assert tree_snapshot(root) == snapshots[version], version


def test_a_host_without_cryptography_is_told_which_package_only_when_the_store_is_encrypted(run_playbook, tmp_path):
    """A managed host whose Python has no pyca/cryptography: plain stores work, an encrypted one fails
    naming the package, before anything is written."""
    bare = tmp_path / "bare-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = bare / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import cryptography"], capture_output=True, check=False).returncode != 0
    inventory = tmp_path / "bare.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"bare": {
        "ansible_connection": "local", "ansible_python_interpreter": str(python)}}}}))
    root = tmp_path / "app"
    make_tree(root, "v1")

    def task(name: str, store: str, key: str = "") -> dict:
        args = {"paths": [str(root)], "label": "v1", "store_path": str(tmp_path / store), "encryption_key": key}
        return {"name": name, "gitops.rollback.checkpoint": args, "ignore_errors": True}

    run = run_playbook([{"hosts": "bare", "gather_facts": False,  # both tasks in one run
                         "tasks": [task("plain", "plain"), task("sealed", "sealed", KEY)]}], inventory=inventory)

    def outcome(name: str) -> dict:
        event = run.results(name, "bare")[-1]
        return dict(event["result"], status=event["status"])

    plain = outcome("plain")
    assert plain["status"] == "ok" and plain["changed"], plain
    encrypted = outcome("sealed")
    assert encrypted["status"] == "ignored", encrypted
    assert "required Python library (cryptography)" in encrypted["msg"] and str(python) in encrypted["msg"]
    assert "Nothing was read or changed" in encrypted["msg"] and KEY not in json.dumps(encrypted)
    assert not (tmp_path / "sealed").exists()
