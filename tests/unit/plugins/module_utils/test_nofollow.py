# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""No link is followed that was not planned: deterministic races between listing and reading
(capture) and between plan and apply (restore), through the ``common.nofollow.race_hook`` seam, and
special files (FIFOs, sockets, devices) in a managed tree.

After every race, everything outside the managed root (files, directories, the root's parent)
is byte- and mode-identical, and the tree is what the checkpoint holds or the run refused
with a clear message.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import stat

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.store import contentpool as _contentpool
from ansible_collections.gitops.rollback.plugins.module_utils.common import nofollow as _nofollow
from ansible_collections.gitops.rollback.plugins.module_utils.files.capture import (
    CheckpointRequest, RootSpec, create_checkpoint,
)
from ansible_collections.gitops.rollback.plugins.module_utils.store.contentpool import BATCH_FILES
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import UnsafePathError
from ansible_collections.gitops.rollback.plugins.module_utils.common.fsutil import TEMP_MARK
from ansible_collections.gitops.rollback.plugins.module_utils.files.restore import (
    RestoreOptions, restore_checkpoint, verify_tree,
)
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

SECRET = b"root:$6$only-root-may-read-this\n"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to other users, mknod)")


@pytest.fixture
def store(tmp_path):
    result = Store(str(tmp_path / "store"))
    result.init()
    return result


@pytest.fixture
def outside(tmp_path):
    """A directory outside the managed root: a root-only file, another file, a subdirectory."""
    top = tmp_path / "outside"
    (top / "sub").mkdir(parents=True)
    (top / "secret").write_bytes(SECRET)
    os.chmod(str(top / "secret"), 0o600)
    (top / "extra").write_text("an outside file named like a managed one\n")
    (top / "sub" / "inner").write_text("inner\n")
    os.chmod(str(top), 0o700)
    return top


@pytest.fixture
def root(tmp_path):
    tree = tmp_path / "app"
    (tree / "conf").mkdir(parents=True)
    (tree / "conf" / "app.conf").write_text("port = 80\n")
    (tree / "conf" / "db.conf").write_text("host = db1\n")
    (tree / "index.html").write_text("<h1>v1</h1>\n")
    os.symlink("conf/app.conf", str(tree / "current.conf"))
    return tree


def outside_state(top, parent=None):
    """Everything that must not change outside the managed root: type, mode, owner, mtime and
    bytes of every entry in ``top`` and of ``top`` itself, and of the directory ``parent`` (the
    managed root's parent) itself."""
    seen = {}
    for one in [top] + ([parent] if parent else []):
        st = os.lstat(str(one))
        seen[str(one)] = ("top", st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    if top:
        for dirpath, dirnames, filenames in os.walk(str(top)):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                data = open(full, "rb").read() if stat.S_ISREG(st.st_mode) else os.readlink(full) \
                    if stat.S_ISLNK(st.st_mode) else None
                seen[full] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, data)
    return seen


def _tree_state(root):
    return {path: value for path, value in outside_state(root).items() if path != str(root) and TEMP_MARK not in path}


def _checkpoint(store, root, label="v1"):
    return create_checkpoint(store, CheckpointRequest(roots=[RootSpec(str(root))], label=label))[0]


def _entries(store, manifest):
    return {entry["path"]: entry for entry in store.iter_tree(manifest["roots"][0]["tree"])}


def _swap(path, replacement):
    """Replace ``path`` (a file or directory) by ``replacement()`` at once, as an attacker would."""
    path = str(path)
    if os.path.isdir(path) and not os.path.islink(path):
        os.rename(path, path + ".moved")
    else:
        os.unlink(path)
    replacement(path)


def _link_to(target):
    return lambda path: os.symlink(str(target), path)


def _race(monkeypatch, point, rel=None, action=None):
    """Run ``action()`` once, the first time the code reaches ``point`` (for ``rel``, if given)."""
    fired = []

    def hook(name, where):
        if name == point and (rel is None or where.get("rel") == rel) and not fired:
            fired.append(where)
            action()

    monkeypatch.setattr(_nofollow, "race_hook", hook)
    return fired


@pytest.fixture(autouse=True)
def no_hang():
    """A FIFO opened for reading would block forever: fail instead."""
    def timeout(_signum, _frame):
        raise AssertionError("the run hung (blocked on a FIFO?)")
    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------- capture: list, then read
def test_a_file_swapped_for_a_link_to_a_root_only_file_is_recorded_as_that_link(store, root, outside, monkeypatch):
    before = outside_state(outside)
    fired = _race(monkeypatch, "walk.listed", "conf/app.conf",
                  lambda: _swap(root / "conf" / "app.conf", _link_to(outside / "secret")))
    manifest = _checkpoint(store, root)
    assert fired
    entry = _entries(store, manifest)["conf/app.conf"]
    assert entry["type"] == "symlink" and entry["target"] == str(outside / "secret")
    assert not store.has_blob(hashlib.sha256(SECRET).hexdigest()), "the root-only file was never read"
    assert outside_state(outside) == before
    monkeypatch.setattr(_nofollow, "race_hook", None)
    (root / "conf" / "app.conf").unlink()
    (root / "conf" / "app.conf").write_text("port = 81\n")
    restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    assert os.readlink(str(root / "conf" / "app.conf")) == str(outside / "secret"), "restored as the link it was"
    assert outside_state(outside) == before


def test_a_directory_swapped_for_a_link_is_recorded_as_that_link_and_nothing_behind_it(
        store, root, outside, monkeypatch):
    fired = _race(monkeypatch, "walk.listed", "conf", lambda: _swap(root / "conf", _link_to(outside)))
    manifest = _checkpoint(store, root)
    assert fired
    entries = _entries(store, manifest)
    assert entries["conf"]["type"] == "symlink" and entries["conf"]["target"] == str(outside)
    assert not [path for path in entries if path.startswith("conf/")], "nothing behind the link was captured"
    assert not store.has_blob(hashlib.sha256(SECRET).hexdigest())


def test_a_file_replaced_by_a_hard_link_to_a_root_only_file_is_recorded_with_that_file_s_owner_and_mode(
        store, root, outside, monkeypatch):
    os.chmod(str(root / "conf" / "db.conf"), 0o644)

    def plant():
        os.unlink(str(root / "conf" / "db.conf"))
        os.link(str(outside / "secret"), str(root / "conf" / "db.conf"))

    _race(monkeypatch, "walk.listed", "conf/db.conf", plant)
    manifest = _checkpoint(store, root)
    entry = _entries(store, manifest)["conf/db.conf"]
    secret = os.stat(str(outside / "secret"))
    assert entry["sha256"] == hashlib.sha256(SECRET).hexdigest()
    assert (entry["mode"], entry["uid"], entry["gid"]) == (0o600, secret.st_uid, secret.st_gid), \
        "content and metadata come from the same descriptor: never stored readable for others"


def test_a_file_swapped_for_a_fifo_before_it_is_read_does_not_hang_and_is_recorded_as_a_fifo(
        store, root, monkeypatch):
    _race(monkeypatch, "capture.read", "index.html", lambda: _swap(root / "index.html", os.mkfifo))
    manifest = _checkpoint(store, root)
    assert _entries(store, manifest)["index.html"]["type"] == "fifo"


def test_a_worker_process_does_not_follow_a_link_swapped_in_before_it_reads(store, root, outside, monkeypatch):
    monkeypatch.setattr(_contentpool, "usable_cpus", lambda: 2)
    for index in range(BATCH_FILES * 3):
        (root / "many" / ("f%04d" % index)).parent.mkdir(exist_ok=True)
        (root / "many" / ("f%04d" % index)).write_bytes(os.urandom(2000))
    victim = "many/f%04d" % (BATCH_FILES * 2)
    # the hook runs in the worker process that reads the file (forked with the hook set)
    _race(monkeypatch, "capture.read", victim, lambda: _swap(root / victim, _link_to(outside / "secret")))
    manifest = _checkpoint(store, root)
    entry = _entries(store, manifest)[victim]
    assert entry["type"] == "symlink" and entry["target"] == str(outside / "secret")
    assert not store.has_blob(hashlib.sha256(SECRET).hexdigest())


# ----------------------------------------------------------------------- restore: plan, then apply
def _plan_then_swap(monkeypatch, point, rel, path, replacement):
    return _race(monkeypatch, point, rel, lambda: _swap(path, replacement))


def _restore_refused_or_equal(store, manifest, root, expected):
    """Run the restore; return the refusal's message, or None when the tree is the checkpoint's."""
    try:
        result = restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    except UnsafePathError as exc:
        return str(exc)
    assert result["verified"] and _tree_state(root) == expected
    return None


def test_a_file_whose_mode_is_restored_swapped_for_a_link_to_a_root_only_file(
        store, root, outside, tmp_path, monkeypatch):
    manifest = _checkpoint(store, root)
    os.chmod(str(root / "conf" / "app.conf"), 0o600)  # the plan: a mode change (meta) only
    before = outside_state(outside, tmp_path)
    fired = _plan_then_swap(monkeypatch, "restore.planned", None, root / "conf" / "app.conf",
                            _link_to(outside / "secret"))
    message = _restore_refused_or_equal(store, manifest, root, None)
    assert fired and message and str(root / "conf" / "app.conf") in message and "changed between the plan" in message
    assert outside_state(outside, tmp_path) == before, "the root-only file kept its mode, owner, time and bytes"


def test_a_directory_whose_mode_is_restored_swapped_for_a_link_to_a_directory_outside(
        store, root, outside, tmp_path, monkeypatch):
    manifest = _checkpoint(store, root)
    os.chmod(str(root / "conf"), 0o777)
    before = outside_state(outside, tmp_path)
    _plan_then_swap(monkeypatch, "restore.planned", None, root / "conf", _link_to(outside))
    message = _restore_refused_or_equal(store, manifest, root, None)
    assert message and "Refusing to follow" in message and str(root / "conf") in message
    assert outside_state(outside, tmp_path) == before


def test_a_parent_directory_swapped_for_a_link_after_the_plan_is_not_written_through(
        store, root, outside, tmp_path, monkeypatch):
    manifest = _checkpoint(store, root)
    (root / "conf" / "app.conf").write_text("port = 8080\n")  # update
    (root / "conf" / "db.conf").unlink()  # create
    (root / "conf" / "extra").write_text("an extra file: the plan removes conf/extra\n")  # delete
    os.chmod(str(root / "index.html"), 0o600)
    before = outside_state(outside, tmp_path)
    _plan_then_swap(monkeypatch, "restore.planned", None, root / "conf", _link_to(outside))
    message = _restore_refused_or_equal(store, manifest, root, None)
    assert message and "Refusing to follow" in message
    assert outside_state(outside, tmp_path) == before, "outside/extra is still there, nothing was staged or chmod-ed there"


def test_a_parent_directory_swapped_just_before_the_rename(store, root, outside, tmp_path, monkeypatch):
    manifest = _checkpoint(store, root)
    (root / "conf" / "app.conf").write_text("port = 8080\n")
    before = outside_state(outside, tmp_path)
    fired = _plan_then_swap(monkeypatch, "restore.rename", "conf/app.conf", root / "conf", _link_to(outside))
    message = _restore_refused_or_equal(store, manifest, root, None)
    assert fired and message and "Refusing to follow" in message
    assert outside_state(outside, tmp_path) == before


def test_the_managed_root_swapped_for_a_link_after_the_plan(store, root, outside, monkeypatch):
    manifest = _checkpoint(store, root)
    (root / "index.html").write_text("changed\n")
    before = outside_state(outside)
    _plan_then_swap(monkeypatch, "restore.planned", None, root, _link_to(outside))
    message = _restore_refused_or_equal(store, manifest, root, None)
    assert message and "Refusing to follow" in message and str(root) in message
    assert outside_state(outside) == before


def test_a_file_whose_content_is_restored_swapped_for_a_link_is_replaced_not_followed(
        store, root, outside, tmp_path, monkeypatch):
    expected = _tree_state(root)
    manifest = _checkpoint(store, root)
    (root / "conf" / "app.conf").write_text("port = 8080\n")
    before = outside_state(outside, tmp_path)
    _plan_then_swap(monkeypatch, "restore.planned", None, root / "conf" / "app.conf", _link_to(outside / "secret"))
    assert _restore_refused_or_equal(store, manifest, root, expected) is None, "the link was replaced by the file"
    assert outside_state(outside, tmp_path) == before


def test_a_symlink_whose_owner_is_restored_is_made_anew_not_changed_through(
        store, root, outside, tmp_path, monkeypatch):
    expected = _tree_state(root)
    manifest = _checkpoint(store, root)
    os.lchown(str(root / "current.conf"), 4321, 4321)
    before = outside_state(outside, tmp_path)
    _plan_then_swap(monkeypatch, "restore.planned", None, root / "current.conf", _link_to(outside / "secret"))
    assert _restore_refused_or_equal(store, manifest, root, expected) is None
    assert outside_state(outside, tmp_path) == before


@AS_ROOT
def test_a_file_given_back_to_root_with_setuid_is_rewritten_not_changed_in_place(store, root, monkeypatch):
    tool = root / "tool"
    tool.write_bytes(b"#!/bin/sh\necho trusted\n")
    os.chmod(str(tool), 0o4755)
    expected = _tree_state(root)
    manifest = _checkpoint(store, root)
    os.chown(str(tool), 4321, 4321)  # the application user's file now (setuid is dropped)
    os.chmod(str(tool), 0o755)

    def write_into_the_same_inode():
        with open(str(tool), "r+b") as handle:  # what the application user could do: same inode
            handle.write(b"#!/bin/sh\necho evil!!\n")

    _race(monkeypatch, "restore.planned", None, write_into_the_same_inode)
    assert _restore_refused_or_equal(store, manifest, root, expected) is None
    assert tool.read_bytes() == b"#!/bin/sh\necho trusted\n", "setuid root only on the checkpoint's bytes"


# ------------------------------------------------------------------------- special files
def test_a_fifo_in_a_managed_tree_is_recorded_and_restored_without_being_opened_for_reading(store, root):
    os.mkfifo(str(root / "conf" / "pipe"))
    os.chmod(str(root / "conf" / "pipe"), 0o620)
    manifest = _checkpoint(store, root)  # no hang: the alarm would fail the test
    entry = _entries(store, manifest)["conf/pipe"]
    assert entry["type"] == "fifo" and entry["mode"] == 0o620 and entry["sha256"] is None
    expected = _tree_state(root)
    (root / "conf" / "pipe").unlink()
    os.mkfifo(str(root / "other"), 0o600)
    result = restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    assert result["verified"] and _tree_state(root) == expected
    assert stat.S_ISFIFO(os.lstat(str(root / "conf" / "pipe")).st_mode)
    os.chmod(str(root / "conf" / "pipe"), 0o666)
    assert restore_checkpoint(store, manifest, RestoreOptions(creator="test"))["changes"][str(root)] == [
        {"op": "meta", "path": "conf/pipe", "reasons": ["mode"], "type": "fifo"}]
    assert stat.S_IMODE(os.lstat(str(root / "conf" / "pipe")).st_mode) == 0o620
    assert verify_tree(store, manifest["roots"][0]) == []


def test_a_socket_is_listed_as_skipped_and_left_alone_by_a_restore(store, root):
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(root / "app.sock"))
        manifest = _checkpoint(store, root)
        assert manifest["roots"][0]["skipped"] == ["app.sock"]
        assert "app.sock" not in _entries(store, manifest)
        (root / "index.html").write_text("changed\n")
        result = restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
        assert result["verified"] and [change["path"] for change in result["changes"][str(root)]] == ["index.html"]
        assert stat.S_ISSOCK(os.lstat(str(root / "app.sock")).st_mode), "a running service keeps its socket"
    finally:
        server.close()


@AS_ROOT
def test_a_device_in_a_managed_tree_is_refused_with_the_way_out(store, root):
    os.mknod(str(root / "conf" / "null"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    with pytest.raises(UnsafePathError) as caught:
        _checkpoint(store, root)
    message = str(caught.value)
    assert str(root / "conf" / "null") in message and "character device" in message and "exclude" in message
    assert store.ids() == []
    manifest = create_checkpoint(store, CheckpointRequest(
        roots=[RootSpec(str(root), exclude=["conf/null"])], label="v1"))[0]
    assert "conf/null" not in _entries(store, manifest)
