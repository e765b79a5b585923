# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's objects: writes (packs for small content, files of their own for large), lookup, verified reads."""

from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import IntegrityError
from ansible_collections.gitops.rollback.plugins.module_utils.store.writes import SMALL_FILE
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.store_layers import layers

KEY = "unit-test-key-0123456789"


def test_small_content_is_packed_and_large_content_is_a_file_of_its_own(tmp_path):
    store = layers(tmp_path / "store")
    small = tmp_path / "small"
    small.write_bytes(b"s" * 10)
    large = tmp_path / "large"
    large.write_bytes(os.urandom(SMALL_FILE + 1))
    small_sha, _size, new = store.writes.put_file_counted(str(small))
    assert new and small_sha == hashlib.sha256(b"s" * 10).hexdigest()
    large_sha, size, _new = store.writes.put_file_counted(str(large))
    store.writes.sync()
    assert store.objects.packed(small_sha) is not None and not os.path.exists(store.objects.blob_path(small_sha))
    assert store.objects.packed(large_sha) is None and os.path.getsize(store.objects.blob_path(large_sha)) == size
    assert store.objects.read_blob(small_sha) == b"s" * 10 and store.objects.read_blob(large_sha) == large.read_bytes()


def test_content_already_stored_is_not_written_again(tmp_path):
    store = layers(tmp_path / "store")
    content = tmp_path / "f"
    content.write_bytes(b"x" * 100)
    first = store.writes.put_file_counted(str(content))
    again = store.writes.put_file_counted(str(content))
    assert first[2] and not again[2] and first[0] == again[0]


def test_a_corrupted_object_is_refused_and_its_hash_reported(tmp_path):
    store = layers(tmp_path / "store")
    sha = store.writes.put_stream([b"a" * (SMALL_FILE + 10)])[0]
    store.writes.sync()
    path = store.objects.blob_path(sha)
    os.chmod(path, 0o600)
    with open(path, "r+b") as handle:
        handle.write(b"b")
    with pytest.raises(IntegrityError, match="corrupted"):
        store.objects.read_blob(sha)
    assert store.objects.blob_hash(sha) not in (None, sha)
    assert store.objects.blob_hash("0" * 64) is None


def test_encrypted_objects_are_named_by_key_and_sealed(tmp_path):
    store = layers(tmp_path / "store", KEY)
    sha = store.writes.put_bytes(b"secret" * 1000)
    store.writes.sync()
    assert sha != hashlib.sha256(b"secret" * 1000).hexdigest()
    location = store.objects.object_location(sha)
    with open(location[0], "rb") as handle:
        handle.seek(location[1])
        assert b"secret" not in handle.read(location[2])
    assert store.objects.read_blob(sha) == b"secret" * 1000


def test_an_object_name_that_is_no_hash_is_refused(tmp_path):
    store = layers(tmp_path / "store")
    with pytest.raises(IntegrityError, match="not a SHA-256"):
        store.objects.blob_path("../../etc/passwd")
