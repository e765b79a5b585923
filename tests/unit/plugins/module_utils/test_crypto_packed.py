# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encrypted stores, the cost per object: packed objects sealed in a reused buffer open like any envelope,
and a checkpoint of a store of the current scheme does not load the first scheme's code."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.store import crypto as _crypto
from ansible_collections.gitops.rollback.plugins.module_utils.store.crypto import HEADER_BYTES, TAG_BYTES, Cipher
from ansible_collections.gitops.rollback.plugins.module_utils.store.crypto_legacy import LegacyCipher
from ansible_collections.gitops.rollback.plugins.module_utils.store.root import object_context
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

KEY = "unit-test-key-0123456789"
PACKAGE = "ansible_collections.gitops.rollback.plugins.module_utils"


pytestmark = pytest.mark.usefixtures("fast_kdf")  # conftest.py: the KDFs kept cheap


def test_an_envelope_sealed_in_the_reused_buffer_opens_like_a_sealed_one_until_the_next_seal():
    cipher = Cipher.create(KEY)
    context = object_context("ab" * 32)
    first = cipher.seal_transient(b"first content" * 100, context)
    kept = bytes(first)
    assert len(kept) == HEADER_BYTES + 1300 + TAG_BYTES
    assert cipher.unseal(kept, context, "t") == b"first content" * 100
    second = cipher.seal_transient(b"first content" * 100, context)
    assert bytes(second) != kept  # a new nonce (and key) for the same content
    assert cipher.unseal(bytes(second), context, "t") == b"first content" * 100
    assert bytes(first) == bytes(second)  # one buffer: what was returned is written before the next seal
    with pytest.raises(_crypto.IntegrityError):
        cipher.unseal(kept, object_context("cd" * 32), "t")  # bound to the object's name


def test_envelopes_sealed_by_several_threads_at_once_each_open():
    cipher = Cipher.create(KEY)
    failures = []

    def seal_many(marker: bytes) -> None:
        for size in range(0, 300000, 7919):
            plain = marker * size
            try:
                sealed = bytes(cipher.seal_transient(plain, b"object:x"))
                opened = cipher.unseal(sealed, b"object:x", "t")
            except Exception as exc:  # pylint: disable=broad-except
                opened = exc
            if opened != plain:
                failures.append((marker, size, opened if isinstance(opened, Exception) else "other content"))

    threads = [threading.Thread(target=seal_many, args=(bytes([65 + n]),)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_without_encrypt_into_packed_objects_are_sealed_the_usual_way(monkeypatch):
    """An older pyca/cryptography (no ``encrypt_into``): the same envelopes, made by ``encrypt``."""
    cipher = Cipher.create(KEY)
    made = cipher._envelopes.aead  # pylint: disable=protected-access

    class OldAead:  # what an AESGCM without encrypt_into offers
        def __init__(self, aead) -> None:
            self.encrypt = aead.encrypt

    monkeypatch.setattr(cipher._envelopes, "aead", lambda nonce: OldAead(made(nonce)))  # pylint: disable=protected-access
    sealed = cipher.seal_transient(b"content", b"object:y")
    monkeypatch.undo()
    assert isinstance(sealed, bytes) and cipher.unseal(sealed, b"object:y", "t") == b"content"


@pytest.mark.parametrize("legacy", [False, True], ids=["current scheme", "first scheme"])
def test_small_files_of_an_encrypted_store_come_back_from_its_packs(tmp_path, legacy):
    """Many packed objects of many sizes, each written from the one reused buffer, read back intact."""
    if legacy:
        (tmp_path / "store").mkdir()
        (tmp_path / "store" / "format").write_text(
            '{"format_version": 3, "encryption": %s}' % __import__("json").dumps(LegacyCipher.create(KEY).describe()))
    store = Store(str(tmp_path / "store"), KEY)
    store.init()
    contents = {}
    for number in range(60):
        path = tmp_path / ("f%d" % number)
        path.write_bytes(os.urandom(number * 4099 % 200000))
        name, size, new = store.put_file_counted(str(path))
        assert new and size == path.stat().st_size
        contents[name] = path.read_bytes()
    store.sync()
    again = Store(str(tmp_path / "store"), KEY)
    assert isinstance(again.cipher, LegacyCipher) == legacy
    for name, content in contents.items():
        assert again.read_blob(name) == content


CHECKPOINT = """
import sys
from ansible_collections.gitops.rollback.plugins.modules import checkpoint  # what the module file imports
from ansible_collections.gitops.rollback.plugins.module_utils.store import crypto
from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import (
    CheckpointParams, make_checkpoint,
)
crypto.SCRYPT = {"n": 1024, "r": 8, "p": 1}
params = dict(store_path=sys.argv[1], owner="test@host", paths=[sys.argv[2]], force=True,
              encryption_key="unit-test-key-0123456789")
make_checkpoint(CheckpointParams(label="cold", **params))
print("\\n".join(sorted(sys.modules)))
"""


def test_a_checkpoint_of_an_encrypted_store_of_the_current_scheme_does_not_load_the_first_scheme(tmp_path):
    managed = tmp_path / "managed"
    managed.mkdir()
    (managed / "app.conf").write_text("setting = 1\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    done = subprocess.run([sys.executable, "-c", CHECKPOINT, str(tmp_path / "store"), str(managed)],
                          env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(done.stdout.split())
    assert PACKAGE + ".store.crypto" in loaded
    assert PACKAGE + ".store.crypto_legacy" not in loaded
