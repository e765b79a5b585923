# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encryption of stores: published vectors of the primitives, the envelope construction, tampering,
wrong keys, dedup, rekey (within a scheme and from the first scheme), and a host without cryptography."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ansible_collections.gitops.rollback.plugins.module_utils.store import crypto as _crypto
from ansible_collections.gitops.rollback.plugins.module_utils.store import crypto_legacy as _crypto_legacy
from ansible_collections.gitops.rollback.plugins.module_utils.store.crypto import (
    CHUNK, HEADER_BYTES, SCHEME, SEGMENT, TAG_BYTES, Cipher, hkdf_expand, scrypt,
)
from ansible_collections.gitops.rollback.plugins.module_utils.store.crypto_legacy import LegacyCipher
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import (
    EncryptionKeyError, IntegrityError, MissingLibraryError, NotAStore,
)
from ansible_collections.gitops.rollback.plugins.module_utils.store.root import StoreRoot
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

KEY = "unit-test-key-0123456789"
NEW_KEY = "new-key-for-rotation!"


pytestmark = pytest.mark.usefixtures("fast_kdf")  # conftest.py: the KDFs kept cheap


# ------------------------------------------------------------------ published test vectors
GCM_KEY = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
GCM_PLAIN = ("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
             "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")


@pytest.mark.parametrize("key, iv, plain, aad, cipher, tag", [
    # The GCM specification (McGrew and Viega), test case 14: AES-256, zero key and IV.
    ("00" * 32, "00" * 12, "00" * 16, "", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"),
    # Test case 16: AES-256 with associated data, 60 bytes of plaintext.
    (GCM_KEY, "cafebabefacedbaddecaf888", GCM_PLAIN, "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662", "76fc6ece0f4e1768cddf8853bb2d551b"),
])
def test_the_aead_matches_the_gcm_specification_vectors(key, iv, plain, aad, cipher, tag):
    aead = _crypto.cryptography_library().AESGCM(bytes.fromhex(key))
    sealed = aead.encrypt(bytes.fromhex(iv), bytes.fromhex(plain), bytes.fromhex(aad) or None)
    assert sealed.hex() == cipher + tag
    assert aead.decrypt(bytes.fromhex(iv), sealed, bytes.fromhex(aad) or None).hex() == plain


@pytest.mark.parametrize("password, salt, n, r, p, expected", [
    (b"", "", 16, 1, 1, "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
                        "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"),
    (b"password", "NaCl", 1024, 8, 16, "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
                                       "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"),
])
def test_scrypt_with_recorded_parameters_matches_rfc7914(password, salt, n, r, p, expected):
    kdf = {"name": "scrypt", "salt": salt.encode().hex(), "n": n, "r": r, "p": p, "length": 64}
    assert scrypt(password, kdf).hex() == expected


def test_hkdf_expand_matches_rfc5869_test_case_1():
    prk = bytes.fromhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    assert hkdf_expand(prk, info, 42).hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


@pytest.mark.parametrize("kdf, problem", [
    ({"n": 1000, "r": 8, "p": 1}, "out of range"),  # N not a power of two
    ({"n": 2 ** 24, "r": 8, "p": 1}, "out of range"),  # 2 GiB of memory asked by a forged format
    ({"n": 1024, "r": 8}, "damaged"),
])
def test_scrypt_parameters_from_a_damaged_format_are_refused(kdf, problem):
    with pytest.raises(IntegrityError, match=problem):
        scrypt(b"secret", dict(kdf, name="scrypt", salt="00" * 16, length=32))


# ------------------------------------------------------------------ the envelope construction
def test_an_envelope_is_the_documented_construction_recomputed_by_hand():
    cipher = Cipher.create(KEY)
    nonce = bytes(range(16))
    plain = os.urandom(CHUNK + 100)
    sealer = cipher.sealer(nonce)
    envelope = sealer.header + sealer.update(plain) + sealer.finish(b"object:abc")

    stretched = scrypt(KEY.encode(), cipher.kdf)
    label = b"gitops.rollback aead v2 "
    key_id = hmac.digest(stretched, label + b"key-id\x01", "sha256")[:16]
    content = hmac.digest(stretched, label + b"content\x01", "sha256")
    header = b"GRAEAD\x02\x00" + key_id + nonce
    aead = AESGCM(hmac.digest(content, label + b"envelope " + nonce + b"\x01", "sha256"))
    expected = (header + aead.encrypt(bytes(11) + b"\x00", plain[:CHUNK], header)
                + aead.encrypt((1).to_bytes(11, "big") + b"\x01", plain[CHUNK:], header + b"object:abc"))
    assert cipher.key_id == key_id.hex()
    assert envelope == expected


@pytest.mark.parametrize("size", [0, 1, 31, CHUNK - 1, CHUNK, CHUNK + 17, 3 * CHUNK + 5])
def test_seal_and_open_round_trip_whatever_the_pieces(size):
    cipher = Cipher.create(KEY)
    plain = os.urandom(size)
    whole = cipher.seal(plain, b"ctx")
    full, last = divmod(size, CHUNK)
    assert len(whole) == HEADER_BYTES + full * SEGMENT + last + TAG_BYTES
    assert cipher.unseal(whole, b"ctx", "t") == plain
    sealer = cipher.sealer(whole[24:40])
    pieces = [bytearray(plain[i:i + 777777]) for i in range(0, size, 777777)]  # reused buffers are copied
    streamed = sealer.header + b"".join(sealer.update(p) for p in pieces) + sealer.finish(b"ctx")
    assert streamed == whole
    chunks = list(cipher.open_stream(io.BytesIO(whole), len(whole), b"ctx", "t"))
    assert b"".join(chunks) == plain
    assert max(map(len, chunks)) <= CHUNK, "memory is bounded by one chunk"


def test_two_envelopes_of_the_same_plaintext_share_no_key_nor_bytes():
    cipher = Cipher.create(KEY)
    one, two = cipher.seal(b"same" * 100, b"c"), cipher.seal(b"same" * 100, b"c")
    assert one[24:40] != two[24:40] and one[HEADER_BYTES:] != two[HEADER_BYTES:]


def _tampered(envelope: bytes, index: int) -> bytes:
    damaged = bytearray(envelope)
    damaged[index] ^= 0x80
    return bytes(damaged)


def test_any_flipped_bit_truncation_reordering_or_other_context_fails_authentication():
    cipher = Cipher.create(KEY)
    plain = os.urandom(3 * CHUNK + 10)
    whole = cipher.seal(plain, b"object:a")
    other = cipher.seal(plain, b"object:a")
    bad = [_tampered(whole, index) for index in (30, HEADER_BYTES, HEADER_BYTES + SEGMENT + 5, len(whole) - 1)]
    bad += [
        whole[:-1],  # truncated final chunk
        whole[:HEADER_BYTES + 3 * SEGMENT],  # the final chunk dropped: the last full chunk is not final
        whole[:HEADER_BYTES + SEGMENT] + whole[HEADER_BYTES + 2 * SEGMENT:HEADER_BYTES + 3 * SEGMENT]
        + whole[HEADER_BYTES + SEGMENT:HEADER_BYTES + 2 * SEGMENT] + whole[HEADER_BYTES + 3 * SEGMENT:],  # reordered
        whole[:HEADER_BYTES + SEGMENT] + other[HEADER_BYTES + SEGMENT:],  # chunks of another envelope
    ]
    for envelope in bad:
        with pytest.raises(IntegrityError, match="fails authentication|bad header"):
            cipher.unseal(envelope, b"object:a", "t")
        with pytest.raises(IntegrityError, match="fails authentication|bad header"):
            b"".join(cipher.open_stream(io.BytesIO(envelope), len(envelope), b"object:a", "t"))
    with pytest.raises(IntegrityError, match="fails authentication"):
        cipher.unseal(whole, b"object:b", "t")
    stream = cipher.open_stream(io.BytesIO(whole), len(whole), b"object:b", "t")
    with pytest.raises(IntegrityError, match="fails authentication"):
        next(stream)  # a swapped or renamed object yields not one byte
    with pytest.raises(EncryptionKeyError, match="key id"):
        Cipher.create(KEY + "other").unseal(whole, b"object:a", "t")


def test_the_key_id_costs_a_scrypt_and_changes_with_the_salt():
    one, two = Cipher.create(KEY), Cipher.create(KEY)
    assert one.key_id != two.key_id, "a new salt per store"
    fast_hashes = {hashlib.sha256(KEY.encode()).hexdigest()[:32], hashlib.sha256(KEY.encode()).hexdigest()[-32:]}
    assert one.key_id not in fast_hashes
    stretched = scrypt(KEY.encode(), one.kdf)
    assert one.key_id == hkdf_expand(stretched, b"gitops.rollback aead v2 key-id", 16).hex()


def test_the_format_records_scheme_and_parameters_and_wraps_the_naming_key():
    cipher = Cipher.create(KEY)
    block = cipher.describe()
    assert block["scheme"] == SCHEME == "aes-256-gcm-stream/v2" and block["aead"] == "AES-256-GCM"
    assert block["kdf"]["name"] == "scrypt" and {"n", "r", "p", "salt", "length"} <= set(block["kdf"])
    assert block["chunk_size"] == CHUNK
    assert Cipher.load(KEY, block, "s").name_key == cipher.name_key
    assert cipher.name_key.hex() not in json.dumps(block)
    with pytest.raises(EncryptionKeyError, match="not the key of store"):
        Cipher.load(KEY + "-wrong", block, "s")


def test_the_production_kdf_is_scrypt_of_16_mib_and_twice_the_work_of_n_2_14(monkeypatch):
    monkeypatch.undo()
    assert _crypto.SCRYPT == {"n": 2 ** 14, "r": 8, "p": 2}
    kdf = _crypto.new_kdf()
    assert 128 * kdf["r"] * kdf["n"] == 16 * 1024 * 1024 and kdf["n"] * kdf["p"] == 2 ** 15


# ------------------------------------------------------------------ stores
def _store(tmp_path, key=KEY, name="store"):
    store = Store(str(tmp_path / name), key)
    store.init()
    return store


def _legacy_store(tmp_path, key=KEY, name="store") -> Store:
    """A store as the previous release created it: format 3 with the first scheme's encryption block."""
    root = tmp_path / name
    root.mkdir(mode=0o700)
    (root / "format").write_text(json.dumps({"format_version": 3, "encryption": LegacyCipher.create(key).describe()}))
    store = Store(str(root), key)
    store.init()
    return store


def test_a_module_run_derives_the_key_once_and_a_wrong_key_is_still_refused(tmp_path, monkeypatch):
    """Creating a store and then using it (the format is checked again) pays scrypt once."""
    calls = []
    real = _crypto.cryptography_library().Scrypt

    def counting_scrypt(**parameters):
        calls.append(parameters["n"])
        return real(**parameters)

    monkeypatch.setattr(_crypto.cryptography_library(), "Scrypt", counting_scrypt)
    if hasattr(_crypto, "_scrypt_once"):
        _crypto._scrypt_once.cache_clear()
    store = _store(tmp_path)
    store.put_bytes(b"hello")
    Store(store.root, KEY).check_format()
    assert len(calls) == 1
    with pytest.raises(EncryptionKeyError):
        Store(store.root, NEW_KEY).check_format()
    assert len(calls) == 2


def _scrypt_calls(monkeypatch, background_seconds: float = 0.0) -> list:
    """Record, for each scrypt from now on, whether it ran in the main thread (one in the background lasts at
    least ``background_seconds``)."""
    calls = []
    real = _crypto.cryptography_library().Scrypt

    def recording_scrypt(**parameters):
        calls.append("main" if threading.current_thread() is threading.main_thread() else "background")
        if calls[-1] == "background":
            time.sleep(background_seconds)
        return real(**parameters)

    monkeypatch.setattr(_crypto.cryptography_library(), "Scrypt", recording_scrypt)
    _crypto._scrypt_once.cache_clear()
    return calls


def test_the_key_of_an_existing_store_is_derived_in_the_background_once(tmp_path, monkeypatch):
    """A module run starts the slow derivation as soon as it knows the key; opening the store takes its result."""
    store = _store(tmp_path)
    sha = store.put_bytes(b"hello")
    calls = _scrypt_calls(monkeypatch)
    StoreRoot(store.root, KEY).derive_key_soon()
    assert Store(store.root, KEY).read_blob(sha) == b"hello"
    assert calls == ["background"]


def test_a_new_store_takes_the_parameters_whose_derivation_started_and_opens_with_its_key_later(tmp_path, monkeypatch):
    calls = _scrypt_calls(monkeypatch)
    root = str(tmp_path / "store")
    StoreRoot(root, KEY).derive_key_soon()
    store = Store(root, KEY)
    store.init()
    sha = store.put_bytes(b"hello")
    assert calls == ["background"]
    _crypto._scrypt_once.cache_clear()  # a later module run: the key from the recorded parameters
    assert Store(root, KEY).read_blob(sha) == b"hello"
    assert calls == ["background", "main"]
    other = _store(tmp_path, name="other")  # prepared parameters serve one store: every store has its own salt
    salts = {json.loads(open(path).read())["encryption"]["kdf"]["salt"] for path in (store.path("format"), other.path("format"))}
    assert len(salts) == 2


def test_a_key_derived_early_is_checked_as_always_and_a_path_that_is_no_store_is_refused_when_opened(tmp_path):
    store = _store(tmp_path)
    StoreRoot(store.root, NEW_KEY).derive_key_soon()
    with pytest.raises(EncryptionKeyError, match="not the key of store"):
        Store(store.root, NEW_KEY).check_format()
    plain = Store(str(tmp_path / "plain"))
    plain.init()
    StoreRoot(plain.root, KEY).derive_key_soon()
    with pytest.raises(EncryptionKeyError, match="not encrypted"):
        Store(plain.root, KEY).check_format()
    (tmp_path / "file").write_text("not a store")
    StoreRoot(str(tmp_path / "file"), KEY).derive_key_soon()  # nothing read, nothing raised
    with pytest.raises(NotAStore, match="regular file"):
        Store(str(tmp_path / "file"), KEY).init()
    StoreRoot(str(tmp_path / "short"), "short").derive_key_soon()
    with pytest.raises(EncryptionKeyError, match="at least 16"):
        Store(str(tmp_path / "short"), "short").init()


def test_a_fork_waits_for_a_derivation_under_way_and_the_child_has_its_result(tmp_path, monkeypatch):
    """Content workers are forked processes: none starts while scrypt runs in a thread it would not have."""
    store = _store(tmp_path)
    sha = store.put_bytes(b"hello")
    calls = _scrypt_calls(monkeypatch, background_seconds=0.3)  # still under way when the fork comes
    StoreRoot(store.root, KEY).derive_key_soon()
    pid = os.fork()
    if pid == 0:  # the child: opens the store with the derived key, deriving nothing itself
        code = 1
        try:
            code = 0 if Store(store.root, KEY).read_blob(sha) == b"hello" and calls == ["background"] else 3
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert Store(store.root, KEY).read_blob(sha) == b"hello" and calls == ["background"]


def test_names_and_envelope_keys_made_from_the_cached_keys_are_the_documented_hmacs():
    """The per-cipher HMAC objects are copied for each object: the same names and keys as HMACs made afresh."""
    cipher = Cipher.create(KEY)
    for data in (b"", b"a", os.urandom(5000)):
        expected = hmac.new(cipher.name_key, data, hashlib.sha256).hexdigest()
        hasher = cipher.hasher()
        hasher.update(data)
        assert cipher.name(data) == hasher.hexdigest() == expected
    first, second = cipher.seal(b"same", b"ctx"), cipher.seal(b"same", b"ctx")
    assert cipher.unseal(first, b"ctx", "t") == cipher.unseal(second, b"ctx", "t") == b"same"
    cipher.name_key = os.urandom(32)  # a naming key unsealed from a format replaces the cached one
    assert cipher.name(b"x") == hmac.new(cipher.name_key, b"x", hashlib.sha256).hexdigest()


def test_new_stores_use_the_aead_scheme(tmp_path):
    store = _store(tmp_path)
    fmt = json.loads(open(store.path("format")).read())
    assert fmt["encryption"]["scheme"] == SCHEME
    sha = store.put_bytes(b"hello")
    assert open(store.blob_path(sha), "rb").read().startswith(b"GRAEAD") or store.packs.has(sha)


def test_encrypted_store_names_by_keyed_hash_and_dedups(tmp_path):
    store = _store(tmp_path)
    sha = store.put_bytes(b"same content")
    assert store.put_bytes(b"same content") == sha
    assert sha != hashlib.sha256(b"same content").hexdigest()
    assert b"same content" not in open(store.blob_path(sha), "rb").read()
    assert store.read_blob(sha) == b"same content"
    assert store.blob_hash(sha) == sha
    assert _store(tmp_path, name="store2").put_bytes(b"same content") != sha, "naming keys are per store"


def test_a_large_object_streams_and_a_swapped_one_is_refused(tmp_path):
    store = _store(tmp_path)
    big = os.urandom(3 * CHUNK + 123)
    source = tmp_path / "big"
    source.write_bytes(big)
    first, _size = store.put_file(str(source))
    second = store.put_bytes(os.urandom(CHUNK + 5))
    assert b"".join(store.iter_blob_chunks(first)) == big
    os.replace(store.blob_path(second), store.blob_path(first))
    with pytest.raises(IntegrityError, match="fails authentication"):
        next(store.iter_blob_chunks(first))
    assert store.blob_hash(first) == "not authentic (MAC mismatch)"


def test_wrong_missing_and_unwanted_keys_are_refused(tmp_path):
    _store(tmp_path)
    with pytest.raises(EncryptionKeyError, match="not the key of store"):
        Store(str(tmp_path / "store"), KEY + "-wrong").init()
    with pytest.raises(EncryptionKeyError, match="no encryption_key"):
        Store(str(tmp_path / "store")).init()
    Store(str(tmp_path / "plain")).init()
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
    with pytest.raises(IntegrityError, match="fails authentication"):
        store.load(one["id"])


def _fill(store, count=20):
    shas = [store.put_bytes(os.urandom(100 + n)) for n in range(count)]
    store.save(store.new_manifest(label="v1", components=[{"type": "t", "name": "n", "blobs": shas}]))
    store.sync()
    return {sha: store.read_blob(sha) for sha in shas}


def _crash_after(count):
    calls = []

    def progress(path):
        calls.append(path)
        if len(calls) == count:
            raise KeyboardInterrupt

    return progress


def test_rekey_interrupted_then_resumed_keeps_every_object(tmp_path):
    store = _store(tmp_path)
    contents = _fill(store)
    with pytest.raises(KeyboardInterrupt):
        Store(store.root, KEY).rekey(NEW_KEY, progress=_crash_after(1))
    with pytest.raises(EncryptionKeyError, match="interrupted rekey"):
        Store(store.root, KEY).init()
    with pytest.raises(EncryptionKeyError, match="interrupted rekey to key id"):
        Store(store.root, KEY).rekey("yet-another-key-entirely")
    outcome = Store(store.root, KEY).rekey(NEW_KEY)
    assert outcome["changed"] and outcome["resumed"] and outcome["scheme"] == SCHEME
    assert not Store(store.root, KEY).rekey(NEW_KEY)["changed"]
    rotated = Store(store.root, NEW_KEY)
    assert {sha: rotated.read_blob(sha) for sha in contents} == contents
    assert rotated.verify(rotated.find("v1")) == []


def test_a_store_of_the_first_scheme_stays_readable_and_writable(tmp_path):
    store = _legacy_store(tmp_path)
    contents = _fill(store)
    again = Store(store.root, KEY)
    assert isinstance(again.cipher, LegacyCipher)
    assert {sha: again.read_blob(sha) for sha in contents} == contents
    sha = again.put_bytes(b"written after the upgrade")
    assert Store(store.root, KEY).read_blob(sha) == b"written after the upgrade"


def test_rekey_moves_a_store_of_the_first_scheme_to_the_aead_with_the_same_key_resumably(tmp_path):
    store = _legacy_store(tmp_path)
    contents = _fill(store, 12)
    loose = store.put_bytes(os.urandom(CHUNK * 2 + 7))  # a loose object of several chunks
    contents[loose] = store.read_blob(loose)
    store.save(store.new_manifest(label="v2", components=[{"type": "t", "name": "big", "blobs": [loose]}]))
    with pytest.raises(KeyboardInterrupt):
        Store(store.root, KEY).rekey(KEY, progress=_crash_after(2))
    fmt = json.loads(open(store.path("format")).read())
    assert fmt["rekey"]["scheme"] == SCHEME and fmt["encryption"]["scheme"] == _crypto_legacy.SCHEME
    outcome = Store(store.root, KEY).rekey(KEY)
    assert outcome["changed"] and outcome["resumed"] and outcome["scheme"] == SCHEME
    fmt = json.loads(open(store.path("format")).read())
    assert fmt["encryption"]["scheme"] == SCHEME and "rekey" not in fmt
    moved = Store(store.root, KEY)
    assert isinstance(moved.cipher, Cipher)
    assert {sha: moved.read_blob(sha) for sha in contents} == contents
    assert all(moved.verify(manifest) == [] for manifest in moved.manifests())
    assert not Store(store.root, KEY).rekey(KEY)["changed"], "a second run has nothing to do"


def test_a_rekey_begun_by_the_previous_release_is_finished_within_the_first_scheme(tmp_path):
    store = _legacy_store(tmp_path)
    contents = _fill(store, 5)
    target = store.cipher.with_key(NEW_KEY, _crypto_legacy.new_kdf())
    fmt = json.loads(open(store.path("format")).read())
    fmt["rekey"] = {"key_id": target.key_id, "kdf": target.kdf}  # what that release recorded
    open(store.path("format"), "w").write(json.dumps(fmt))
    outcome = Store(store.root, KEY).rekey(NEW_KEY)
    assert outcome["scheme"] == _crypto_legacy.SCHEME and outcome["resumed"]
    rotated = Store(store.root, NEW_KEY)
    assert {sha: rotated.read_blob(sha) for sha in contents} == contents


def test_a_host_without_cryptography_fails_naming_the_package_only_when_encryption_is_used(tmp_path, monkeypatch):
    legacy = _legacy_store(tmp_path, name="legacy")
    contents = _fill(legacy, 3)
    monkeypatch.setattr(_crypto, "cryptography_library", lambda: None)
    with pytest.raises(MissingLibraryError, match=r"required Python library \(cryptography\).*Nothing was"):
        Store(str(tmp_path / "new"), KEY).init()
    assert not (tmp_path / "new").exists(), "nothing is created"
    plain = Store(str(tmp_path / "plain"))
    plain.init()
    assert plain.read_blob(plain.put_bytes(b"plain works")) == b"plain works"
    reader = Store(legacy.root, KEY)
    assert {sha: reader.read_blob(sha) for sha in contents} == contents, "the first scheme needs only the stdlib"
    with pytest.raises(MissingLibraryError, match="cryptography"):
        Store(legacy.root, KEY).rekey(KEY, dry_run=True)
    with pytest.raises(MissingLibraryError, match="cryptography"):
        Store(legacy.root, KEY).rekey(KEY)


def _capture(store, root):
    from ansible_collections.gitops.rollback.plugins.module_utils.files.capture import (
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
    with pytest.raises(EncryptionKeyError, match="not the key"):
        Store(str(tmp_path / "store"), "old key for packs 0123").read_blob(shas[0])


# ------------------------------------------------------------------ the first scheme
def test_the_first_scheme_still_opens_what_it_sealed_and_refuses_tampering():
    keys = _crypto_legacy.derive_keys(KEY, {"name": "pbkdf2-sha256", "iterations": 10, "salt": "00" * 16})
    whole = _crypto_legacy.seal(keys, b"secret content" * 10, b"object:a")
    assert _crypto_legacy.open_bytes(keys, whole, b"object:a", "t") == b"secret content" * 10
    with pytest.raises(IntegrityError, match="MAC mismatch"):
        _crypto_legacy.open_bytes(keys, _tampered(whole, 50), b"object:a", "t")
    with pytest.raises(IntegrityError, match="MAC mismatch"):
        _crypto_legacy.open_bytes(keys, whole, b"object:b", "t")


# ------------------------------------------------------------------ one variable for every playbook
REPO = __import__("pathlib").Path(__file__).resolve().parents[4]


def test_the_store_action_group_lists_every_module_that_opens_a_store():
    import yaml  # pylint: disable=import-outside-toplevel
    group = set(yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["action_groups"]["store"])
    with_store = {path.stem for path in (REPO / "plugins" / "modules").glob("*.py")
                  if any(spec in path.read_text() for spec in ("store_argument_spec()", "store=True"))}
    assert group == with_store


@pytest.mark.parametrize("book", ["checkpoint", "rollback", "guard", "drill", "demo", "rebuild"])
def test_every_play_of_the_playbooks_that_open_stores_passes_the_one_key_variable(book):
    import yaml  # pylint: disable=import-outside-toplevel
    plays = yaml.safe_load((REPO / "playbooks" / ("%s.yml" % book)).read_text())
    for play in plays:
        defaults = play.get("module_defaults", {}).get("group/gitops.rollback.store", {})
        assert defaults.get("encryption_key") == "{{ gitops_rollback_encryption_key | default('') }}", play["name"]


def test_no_task_overrides_the_key_of_the_action_group_with_omit():
    """A task argument ``encryption_key: ... omit`` wins over module_defaults and drops the key."""
    offenders = [
        "%s:%d" % (path.relative_to(REPO), number)
        for top in ("roles", "playbooks") for path in (REPO / top).rglob("*.yml")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "encryption_key:" in line and "omit" in line
    ]
    assert offenders == []


@pytest.mark.parametrize("make", [_store, _legacy_store], ids=["aead", "first-scheme"])
def test_object_names_are_the_same_whichever_way_they_are_computed(tmp_path, make):
    """Small objects are named in one call, large ones by streaming: both give the store's names."""
    store = make(tmp_path)
    data = os.urandom(3000)
    streamed = store.hasher()
    for piece in (data[:1000], data[1000:]):
        streamed.update(piece)
    (tmp_path / "file").write_bytes(data)
    expected = hmac.new(store.cipher.name_key, data, hashlib.sha256).hexdigest()
    assert store.hash_bytes(data) == streamed.hexdigest() == store.hash_file(str(tmp_path / "file")) == expected


def test_module_runs_on_a_plain_store_never_load_cryptography(tmp_path):
    """Only encrypted stores need the library: a checkpoint or restore of a plain store does not
    pay for importing it at every module start."""
    code = ("import sys\n"
            "from ansible_collections.gitops.rollback.plugins.module_utils.files import checkpoint_ops, restore\n"
            "from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store\n"
            "store = Store(sys.argv[1])\n"
            "store.init()\n"
            "assert store.read_blob(store.put_bytes(b'plain')) == b'plain'\n"
            "loaded = sorted(name for name in sys.modules if name.split('.')[0] == 'cryptography')\n"
            "assert not loaded, loaded\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")], env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
