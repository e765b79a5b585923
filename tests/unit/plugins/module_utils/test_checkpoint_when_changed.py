# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A checkpoint taken only when the managed paths changed since their newest checkpoint (when_changed)."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.files.capture import (
    CheckpointRequest, RootSpec, create_checkpoint)
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


def take(store, root, label, when_changed=True, **fields):
    return create_checkpoint(store, CheckpointRequest(roots=[RootSpec(str(root))], label=label,
                                                      when_changed=when_changed, **fields))


def test_nothing_is_taken_while_the_paths_are_as_their_newest_checkpoint(tmp_path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "app.ini").write_text("workers = 4\n")
    store = Store(str(tmp_path / "store"))
    first, changed, _stats = take(store, root, "v1", when_changed=False, commit="abc")
    assert changed
    same, changed, _stats = take(store, root, "scheduled/20261203T0300Z")
    assert not changed and same["id"] == first["id"] and len(store.ids()) == 1  # a commit of its own does not count
    (root / "app.ini").write_text("workers = 0\n")  # changed outside a deploy
    drifted, changed, _stats = take(store, root, "scheduled/20261203T0315Z")
    assert changed and drifted["label"] == "scheduled/20261203T0315Z" and len(store.ids()) == 2
    again, changed, _stats = take(store, root, "scheduled/20261203T0330Z")
    assert not changed and again["id"] == drifted["id"]
    other = tmp_path / "other"
    other.mkdir()
    _manifest, changed, _stats = take(store, other, "scheduled/20261203T0330Z")
    assert changed  # other paths: their own newest checkpoint (none yet)
