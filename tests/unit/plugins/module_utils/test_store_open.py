# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Opening a store: a store_path that is not a store is refused by every operation, before anything changes."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import (
    CheckpointParams, delete_checkpoint, list_checkpoints, make_checkpoint, prune_checkpoints, verify_checkpoints,
)
from ansible_collections.gitops.rollback.plugins.module_utils.files.restore_ops import restore_host
from ansible_collections.gitops.rollback.plugins.module_utils.store.retention import Policy
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


def _tree_state(top):
    """Every path under ``top`` with its type, mode and content: what 'nothing changed' compares."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            content = open(full, "rb").read() if os.path.isfile(full) and not os.path.islink(full) else None
            state[os.path.relpath(full, top)] = (st.st_mode, content, os.readlink(full) if os.path.islink(full) else None)
    return state


def _regular_file(tmp_path):
    path = tmp_path / "store"
    path.write_bytes(b"not a store\n")
    return str(path), "is a regular file"


def _symlink(tmp_path):
    real = tmp_path / "real"
    Store(str(real)).init()
    os.symlink(str(real), str(tmp_path / "store"))
    return str(tmp_path / "store"), "is a symbolic link"


def _dangling_symlink(tmp_path):
    os.symlink(str(tmp_path / "nowhere"), str(tmp_path / "store"))
    return str(tmp_path / "store"), "is a symbolic link"


def _foreign_directory(tmp_path):
    path = tmp_path / "store"
    path.mkdir()
    (path / "passwd").write_text("root:x:0:0\n")
    (path / "objects").mkdir()
    return str(path), "is a directory that is not a checkpoint store"


def _unknown_format(tmp_path):
    path = tmp_path / "store"
    path.mkdir()
    (path / "format").write_text(json.dumps({"format_version": 99}))
    return str(path), "format_version 99"


def _format_not_json(tmp_path):
    path = tmp_path / "store"
    path.mkdir()
    (path / "format").write_bytes(b"\x00garbage")
    return str(path), "has a format file that is not"


def _format_is_a_directory(tmp_path):
    path = tmp_path / "store"
    (path / "format").mkdir(parents=True)
    return str(path), "has a format file that is not"


BAD_STORES = [_regular_file, _symlink, _dangling_symlink, _foreign_directory, _unknown_format, _format_not_json,
              _format_is_a_directory]


def _operations(store_path, managed):
    def params(**extra):
        return CheckpointParams(store_path=store_path, owner="test@host", **extra)

    return {
        "checkpoint": lambda: make_checkpoint(params(paths=[managed], label="v1")),
        "checkpoint check mode": lambda: make_checkpoint(params(paths=[managed], label="v1", check_mode=True)),
        "checkpoint_info": lambda: list_checkpoints(params()),
        "checkpoint_info one": lambda: list_checkpoints(params(checkpoint="v1")),
        "delete": lambda: delete_checkpoint(params(checkpoint="v1")),
        "prune": lambda: prune_checkpoints(params(policy=Policy(keep=1))),
        "verify": lambda: verify_checkpoints(params()),
        "restore": lambda: restore_host(params(checkpoint="v1")),
        "restore check mode": lambda: restore_host(params(checkpoint="v1", check_mode=True)),
        "store init": lambda: Store(store_path).init(),
        "store ids": lambda: Store(store_path).ids(),
    }


@pytest.mark.parametrize("make", BAD_STORES, ids=lambda make: make.__name__.strip("_"))
@pytest.mark.parametrize("operation", list(_operations("", "")))
def test_every_operation_refuses_what_is_not_a_store(tmp_path, make, operation):
    managed = tmp_path / "managed"
    managed.mkdir()
    (managed / "a.txt").write_text("a")
    store_path, problem = make(tmp_path)
    before = _tree_state(str(tmp_path))

    with pytest.raises(RollbackError) as caught:
        _operations(store_path, str(managed))[operation]()

    message = str(caught.value)
    assert store_path in message and problem in message
    assert "Nothing was read or changed" in message
    assert _tree_state(str(tmp_path)) == before


def test_regular_file_message_names_the_way_out(tmp_path):
    store_path, _problem = _regular_file(tmp_path)
    with pytest.raises(RollbackError) as caught:
        make_checkpoint(CheckpointParams(store_path=store_path, owner="o", paths=[str(tmp_path)]))
    assert str(caught.value).startswith("not a checkpoint store: %s is a regular file." % store_path)
    assert "store_path" in str(caught.value)


@pytest.mark.parametrize("content", [None, ["objects", "checkpoints"], ["lost+found"], [".format.grtmp-0a1b2c3d"]])
def test_missing_empty_or_half_made_store_is_opened(tmp_path, content):
    """What init leaves when killed before writing format, a new file system's lost+found: still a store."""
    path = tmp_path / "store"
    if content is not None:
        path.mkdir()
        for name in content:
            (path / name).mkdir() if "." not in name or name == "lost+found" else (path / name).write_text("{}")
    managed = tmp_path / "managed"
    managed.mkdir()
    (managed / "a.txt").write_text("a")
    assert list_checkpoints(CheckpointParams(store_path=str(path), owner="o")) == {"changed": False, "checkpoints": []}
    result = make_checkpoint(CheckpointParams(store_path=str(path), owner="o", paths=[str(managed)], label="v1"))
    assert result["changed"] and Store(str(path)).find("v1")["id"] == result["checkpoint"]["id"]


def test_a_store_under_a_symlinked_parent_is_opened(tmp_path):
    """Only the store directory itself must not be a link; a parent such as /var -> /data/var is the admin's."""
    (tmp_path / "data").mkdir()
    os.symlink(str(tmp_path / "data"), str(tmp_path / "var"))
    store = Store(str(tmp_path / "var" / "store"))
    store.init()
    assert Store(str(tmp_path / "var" / "store")).ids() == []
