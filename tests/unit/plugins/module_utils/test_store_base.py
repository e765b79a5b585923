# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's root: layout, format document, refusals, the cipher from the key, the writer lock."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import (
    EncryptionKeyError, LockHeldError, NotAStore, UnsupportedFormat,
)
from ansible_collections.gitops.rollback.plugins.module_utils.store.root import (
    LAYOUT, PACKED_FORMAT_VERSION, StoreRoot, new_checkpoint_id, root_problem,
)

KEY = "unit-test-key-0123456789"


def test_init_makes_a_private_layout_and_a_packed_format(tmp_path):
    base = StoreRoot(str(tmp_path / "store"))
    assert not base.exists()
    base.init()
    assert base.exists() and base.read_format() == {"format_version": PACKED_FORMAT_VERSION}
    for sub in ("",) + LAYOUT:
        assert stat.S_IMODE(os.stat(base.path(sub)).st_mode) == 0o700
    assert base.cipher is None and not base.encrypted


def test_a_directory_of_other_files_is_refused_before_anything_is_made(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    assert "notes.txt" in root_problem(str(tmp_path / "home"))
    with pytest.raises(NotAStore, match="notes.txt"):
        StoreRoot(str(tmp_path / "home")).init()
    assert sorted(os.listdir(tmp_path / "home")) == ["notes.txt"]


def test_an_unknown_format_version_is_refused(tmp_path):
    base = StoreRoot(str(tmp_path / "store"))
    base.init()
    (tmp_path / "store" / "format").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(UnsupportedFormat, match="99"):
        StoreRoot(str(tmp_path / "store")).read_format()


def test_an_encrypted_root_needs_its_key(tmp_path):
    StoreRoot(str(tmp_path / "store"), KEY).init()
    assert StoreRoot(str(tmp_path / "store"), KEY).encrypted
    with pytest.raises(EncryptionKeyError, match="no encryption_key"):
        StoreRoot(str(tmp_path / "store")).check_format()


def test_the_writer_lock_is_exclusive(tmp_path):
    base = StoreRoot(str(tmp_path / "store"))
    with base.lock("first", "checkpoint"):
        with pytest.raises(LockHeldError):
            StoreRoot(str(tmp_path / "store")).lock("second", "checkpoint", timeout=0)


def test_checkpoint_ids_sort_after_the_newest_even_when_the_clock_has_not_moved():
    later = "29991231T235959.999Z-abcdef"
    assert new_checkpoint_id(later) > later
