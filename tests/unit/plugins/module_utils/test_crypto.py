# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stdlib encryption of stores: HKDF, envelopes, tampering, wrong keys, dedup and rekey."""

from __future__ import annotations

import io
import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils import _crypto
from ansible_collections.gitops.rollback.plugins.module_utils._crypto import (
    BLOCK, Cipher, EncryptionKeyError, Sealer, derive_keys, hkdf_expand, hkdf_extract, open_bytes, open_stream, seal,
)
from ansible_collections.gitops.rollback.plugins.module_utils._errors import IntegrityError
from ansible_collections.gitops.rollback.plugins.module_utils._store import Store

KEY = "unit-test-key-0123456789"
FAST_KDF = {"name": "pbkdf2-sha256", "iterations": 10, "salt": "00" * 16}


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch):
    """Keep PBKDF2 cheap in unit tests."""
    monkeypatch.setattr(_crypto, "PBKDF2_ITERATIONS", 10)


def test_hkdf_matches_rfc5869_test_case_1():
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    prk = hkdf_extract(salt, ikm)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    assert hkdf_expand(prk, info, 42).hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def test_keys_are_distinct_and_depend_on_the_secret():
    keys = derive_keys(KEY, FAST_KDF)
    assert len({keys.key_id, keys.enc, keys.mac}) == 3
    assert derive_keys(KEY + "x", FAST_KDF).key_id != keys.key_id
    with pytest.raises(EncryptionKeyError, match="at least 16"):
        derive_keys("short", FAST_KDF)


@pytest.mark.parametrize("size", [0, 1, 31, BLOCK - 1, BLOCK, BLOCK + 17, 3 * BLOCK + 5])
def test_seal_and_open_round_trip_whatever_the_chunking(size):
    keys = derive_keys(KEY, FAST_KDF)
    plain = os.urandom(size)
    whole = seal(keys, plain, b"ctx")
    assert len(whole) == size + _crypto.HEADER_BYTES + _crypto.TAG_BYTES
    assert plain == open_bytes(keys, whole, b"ctx", "t")
    sealer = Sealer(keys, nonce=whole[24:40])
    pieces = [plain[i:i + 7777] for i in range(0, size, 7777)]
    streamed = sealer.header + b"".join(sealer.update(p) for p in pieces) + sealer.tag(b"ctx")
    assert streamed == whole
    assert b"".join(open_stream(keys, io.BytesIO(whole), len(whole), b"ctx", "t")) == plain


def test_any_flipped_bit_truncation_or_other_context_fails_authentication():
    keys = derive_keys(KEY, FAST_KDF)
    whole = seal(keys, b"secret content" * 10, b"object:a")
    for index in (40, len(whole) // 2, len(whole) - 1):
        damaged = bytearray(whole)
        damaged[index] ^= 0x80
        with pytest.raises(IntegrityError, match="MAC mismatch"):
            open_bytes(keys, bytes(damaged), b"object:a", "t")
    with pytest.raises(IntegrityError):
        open_bytes(keys, whole[:-1], b"object:a", "t")
    with pytest.raises(IntegrityError, match="MAC mismatch"):
        open_bytes(keys, whole, b"object:b", "t")
    with pytest.raises(EncryptionKeyError, match="key id"):
        open_bytes(derive_keys(KEY + "other", FAST_KDF), whole, b"object:a", "t")


def _store(tmp_path, key=KEY):
    store = Store(str(tmp_path / "store"), key)
    store.init()
    return store


def test_encrypted_store_names_by_keyed_hash_and_dedups(tmp_path):
    store = _store(tmp_path)
    sha = store.put_bytes(b"same content")
    assert store.put_bytes(b"same content") == sha
    assert sha != __import__("hashlib").sha256(b"same content").hexdigest()
    assert b"same content" not in open(store.blob_path(sha), "rb").read()
    assert store.read_blob(sha) == b"same content"
    assert store.blob_hash(sha) == sha
    other = Store(str(tmp_path / "store2"), KEY)
    other.init()
    assert other.put_bytes(b"same content") != sha, "naming keys are per store"


def test_tampered_object_and_swapped_objects_are_refused(tmp_path):
    store = _store(tmp_path)
    first, second = store.put_bytes(b"one" * 1000), store.put_bytes(b"two" * 1000)
    os.replace(store.blob_path(second), store.blob_path(first))
    with pytest.raises(IntegrityError, match="MAC mismatch"):
        store.read_blob(first)
    assert store.blob_hash(first) == "not authentic (MAC mismatch)"


def test_wrong_missing_and_unwanted_keys_are_refused(tmp_path):
    _store(tmp_path)
    with pytest.raises(EncryptionKeyError, match="not the key of store"):
        Store(str(tmp_path / "store"), KEY + "-wrong").init()
    with pytest.raises(EncryptionKeyError, match="no encryption_key"):
        Store(str(tmp_path / "store")).init()
    plain = Store(str(tmp_path / "plain"))
    plain.init()
    with pytest.raises(EncryptionKeyError, match="not encrypted"):
        Store(str(tmp_path / "plain"), KEY).init()


def test_manifests_are_sealed_and_bound_to_their_id(tmp_path):
    store = _store(tmp_path)
    one = store.new_manifest(label="secret-label")
    store.save(one)
    two = store.new_manifest(label="two")
    store.save(two)
    assert b"secret-label" not in open(store.manifest_path(one["id"]), "rb").read()
    assert store.find("secret-label")["id"] == one["id"]
    os.replace(store.manifest_path(two["id"]), store.manifest_path(one["id"]))
    with pytest.raises(IntegrityError, match="MAC mismatch"):
        store.load(one["id"])


def test_rekey_interrupted_then_resumed_keeps_every_object(tmp_path):
    store = _store(tmp_path)
    shas = [store.put_bytes(os.urandom(100 + n)) for n in range(20)]
    contents = {sha: store.read_blob(sha) for sha in shas}
    manifest = store.new_manifest(label="v1", components=[{"type": "t", "name": "n", "blobs": shas}])
    store.save(manifest)
    calls = []

    def crash(path):
        calls.append(path)
        if len(calls) == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Store(store.root, KEY).rekey("new-key-for-rotation!", progress=crash)
    with pytest.raises(EncryptionKeyError, match="interrupted rekey"):
        Store(store.root, KEY).init()
    with pytest.raises(EncryptionKeyError, match="interrupted rekey to key id"):
        Store(store.root, KEY).rekey("yet-another-key-entirely")
    outcome = Store(store.root, KEY).rekey("new-key-for-rotation!")
    assert outcome["changed"] and outcome["resumed"] and outcome["objects"] == 20 - 7
    assert not Store(store.root, KEY).rekey("new-key-for-rotation!")["changed"]
    rotated = Store(store.root, "new-key-for-rotation!")
    assert {sha: rotated.read_blob(sha) for sha in shas} == contents
    assert rotated.verify(rotated.find("v1")) == []


def test_cipher_wraps_the_naming_key(tmp_path):
    cipher = Cipher.create(KEY, FAST_KDF)
    block = cipher.describe()
    assert Cipher.load(KEY, block, "s").name_key == cipher.name_key
    assert cipher.name_key.hex() not in str(block)


def _capture(store, root):
    from ansible_collections.gitops.rollback.plugins.module_utils._checkpoint import (
        CheckpointRequest, RootSpec, create_checkpoint,
    )
    with store.lock("test", "checkpoint"):
        return create_checkpoint(store, CheckpointRequest(roots=[RootSpec(str(root))], force=True))


def test_the_stat_cache_of_an_encrypted_store_reveals_no_path_and_still_saves_hashing(tmp_path):
    root = tmp_path / "secret-project"
    (root / "payroll").mkdir(parents=True)
    for number in range(50):
        (root / "payroll" / ("employee-%02d.csv" % number)).write_bytes(os.urandom(300))
    store = Store(str(tmp_path / "store"), "correct horse battery staple")
    _first, _changed, cold = _capture(store, root)
    cache_files = os.listdir(store.path("cache"))
    assert len(cache_files) == 1 and cold["hashed"] == 50
    sealed = open(os.path.join(store.path("cache"), cache_files[0]), "rb").read()
    for secret in (b"employee", b"payroll", b"secret-project", b"300"):
        assert secret not in sealed
    _second, _changed, warm = _capture(Store(str(tmp_path / "store"), "correct horse battery staple"), root)
    assert warm["hashed"] == 0, "the sealed cache still vouches for unchanged files"
    forged = bytearray(sealed)
    forged[len(forged) // 2] ^= 1
    open(os.path.join(store.path("cache"), cache_files[0]), "wb").write(bytes(forged))
    _third, _changed, after = _capture(Store(str(tmp_path / "store"), "correct horse battery staple"), root)
    assert after["hashed"] == 50, "a tampered cache is ignored: every file is hashed again"


def test_packed_objects_are_rekeyed_and_stay_readable(tmp_path):
    store = Store(str(tmp_path / "store"), "old key for packs 0123")
    store.init()
    shas = []
    for number in range(20):
        source = tmp_path / ("f%d" % number)
        source.write_bytes(os.urandom(500 + number))
        shas.append(store.put_file(str(source))[0])
    manifest = store.new_manifest(label="p")
    manifest["components"] = [{"type": "test", "name": "data", "blobs": shas}]
    store.save(manifest)
    contents = {sha: store.read_blob(sha) for sha in shas}
    with store.lock("test", "rekey", check_format=False):
        outcome = store.rekey("new key for packs 4567")
    assert outcome["objects"] == 20
    rotated = Store(str(tmp_path / "store"), "new key for packs 4567")
    assert {sha: rotated.read_blob(sha) for sha in shas} == contents
    with pytest.raises(Exception, match="key"):
        Store(str(tmp_path / "store"), "old key for packs 0123").read_blob(shas[0])
