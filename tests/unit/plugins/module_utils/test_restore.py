# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore: the plan, refusing corrupted objects before any change, and completing after a kill."""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import shutil
import tracemalloc

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common import nofollow as _nofollow
from ansible_collections.gitops.rollback.plugins.module_utils.files.capture import (
    CheckpointRequest, RootSpec, create_checkpoint,
)
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import IntegrityError, UnsafePathError
from ansible_collections.gitops.rollback.plugins.module_utils.common.fsutil import TEMP_MARK
from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import CheckpointParams
from ansible_collections.gitops.rollback.plugins.module_utils.files.restore_ops import restore_host
from ansible_collections.gitops.rollback.plugins.module_utils.common.nofollow import inode_generation
from ansible_collections.gitops.rollback.plugins.module_utils.files.written import unchanged_since_written
from ansible_collections.gitops.rollback.plugins.module_utils.files import restore as _restore
from ansible_collections.gitops.rollback.plugins.module_utils.files.restore import (
    RestoreOptions, plan_root, restore_checkpoint, verify_tree,
)
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.plugins.module_utils.store.tree import encode_entry
from ansible_collections.gitops.rollback.tests.harness.objects import remove_object, replace_object
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.tree_state import tree_state


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


@pytest.fixture
def root(tmp_path):
    """A managed tree with files, a symlink, nested and empty directories."""
    tree = tmp_path / "app"
    (tree / "conf" / "empty").mkdir(parents=True)
    (tree / "bin").mkdir()
    (tree / "conf" / "app.conf").write_text("port = 80\n")
    (tree / "conf" / "db.conf").write_text("host = db1\n")
    (tree / "bin" / "run").write_bytes(os.urandom(3000))
    os.chmod(str(tree / "bin" / "run"), 0o755)
    for index in range(10):
        (tree / ("page%02d.html" % index)).write_text("page %d\n" % index)
    os.symlink("conf/app.conf", str(tree / "current.conf"))
    return tree


@pytest.fixture
def store(tmp_path):
    result = Store(str(tmp_path / "store"))
    result.init()
    return result


def _checkpoint(store, root, label="v1"):
    return create_checkpoint(store, CheckpointRequest(roots=[RootSpec(str(root))], label=label))[0]


def _snapshot(root):
    return tree_state(root)


def _ops(store, manifest):
    plan = plan_root(store, manifest["roots"][0])
    return {action.rel: (action.op, sorted(action.reasons)) for action in plan.actions}


def test_plan_lists_each_kind_of_change(store, root):
    manifest = _checkpoint(store, root)
    assert _ops(store, manifest) == {}
    (root / "conf" / "app.conf").write_text("port = 8080\n")
    os.chmod(str(root / "bin" / "run"), 0o700)
    (root / "added.txt").write_text("new")
    (root / "page03.html").unlink()
    (root / "conf" / "db.conf").unlink()
    (root / "conf" / "db.conf").mkdir()
    (root / "conf" / "empty").rmdir()
    os.unlink(str(root / "current.conf"))
    os.symlink("conf/db.conf", str(root / "current.conf"))
    ops = _ops(store, manifest)
    assert ops["conf/app.conf"][0] == "update" and "content" in ops["conf/app.conf"][1]
    assert ops["bin/run"] == ("meta", ["mode"])
    assert ops["added.txt"] == ("delete", ["extra"])
    assert ops["page03.html"] == ("create", [])
    assert ops["conf/db.conf"] == ("retype", ["type"])
    assert ops["conf/empty"] == ("create", [])
    assert ops["current.conf"][0] == "update" and "target" in ops["current.conf"][1]
    assert ops.pop("conf") == ("meta", ["mtime"]), "a directory whose entries changed gets its mtime back"
    assert set(ops) == {"conf/app.conf", "bin/run", "added.txt", "page03.html", "conf/db.conf",
                        "conf/empty", "current.conf"}


def test_restore_brings_the_tree_back_and_a_second_run_changes_nothing(store, root):
    expected = _snapshot(root)
    manifest = _checkpoint(store, root)
    (root / "conf" / "app.conf").write_text("port = 8080\n")
    shutil.rmtree(str(root / "bin"))
    (root / "extra").mkdir()
    (root / "extra" / "file").write_text("x")
    result = restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    assert result["changed"] and result["verified"]
    assert result["safety_checkpoint"]["kind"] == "safety"
    assert _snapshot(root) == expected
    again = restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    assert not again["changed"] and again["safety_checkpoint"] is None


def test_dry_run_changes_nothing(store, root):
    manifest = _checkpoint(store, root)
    (root / "conf" / "app.conf").write_text("changed\n")
    before, ids = _snapshot(root), store.ids()
    result = restore_checkpoint(store, manifest, RestoreOptions(dry_run=True, want_diff=True))
    assert result["changed"] and result["changes"][str(root)][0]["path"] == "conf/app.conf"
    assert result["diffs"][0]["before"] == "changed\n" and result["diffs"][0]["after"] == "port = 80\n"
    assert _snapshot(root) == before and store.ids() == ids


def test_a_corrupted_blob_is_refused_before_any_change(store, root):
    manifest = _checkpoint(store, root)
    wanted = hashlib.sha256(b"port = 80\n").hexdigest()
    (root / "conf" / "app.conf").write_text("port = 8080\n")
    (root / "page01.html").unlink()
    replace_object(store.root, wanted, b"port = 6666\n")
    store.packs.forget()
    before, ids = _snapshot(root), store.ids()
    with pytest.raises(IntegrityError) as caught:
        restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    message = str(caught.value)
    assert wanted in message and hashlib.sha256(b"port = 6666\n").hexdigest() in message
    assert os.path.join(str(root), "conf", "app.conf") in message
    assert "Nothing was changed" in message
    assert _snapshot(root) == before, "no file was touched"
    assert store.ids() == ids, "not even a safety checkpoint was taken"


def test_a_missing_blob_is_refused_before_any_change(store, root):
    manifest = _checkpoint(store, root)
    (root / "bin" / "run").unlink()
    run_blob = [line for line in store.iter_tree(manifest["roots"][0]["tree"]) if line["path"] == "bin/run"][0]
    remove_object(store.root, run_blob["sha256"])
    store.packs.forget()
    with pytest.raises(IntegrityError, match="missing"):
        restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    assert not (root / "bin" / "run").exists()


def _forge(store, manifest, entries):
    """Replace the manifest's tree with the given entries (a damaged or forged manifest)."""
    lines = [encode_entry(entry) for entry in entries]
    forged = dict(manifest, roots=[dict(manifest["roots"][0], tree=store.put_stream(lines)[0])])
    return forged


@pytest.mark.parametrize("bad_path", ["../escaped", "/tmp/absolute", "conf/../../escaped"])
def test_an_escaping_manifest_path_is_refused_before_any_change(store, root, bad_path, tmp_path):
    manifest = _checkpoint(store, root)
    entry = {"path": bad_path, "type": "file", "mode": 0o644, "uid": 0, "gid": 0, "owner": None, "group": None,
             "size": 1, "mtime_ns": 0, "sha256": store.put_bytes(b"x"), "target": None}
    forged = _forge(store, manifest, [entry])
    before = _snapshot(root)
    with pytest.raises(UnsafePathError):
        restore_checkpoint(store, forged, RestoreOptions(creator="test"))
    assert _snapshot(root) == before
    assert not (tmp_path / "escaped").exists()


def test_an_entry_below_a_symlink_is_refused(store, root, tmp_path):
    manifest = _checkpoint(store, root)
    outside = tmp_path / "outside"
    outside.mkdir()
    common = {"mode": 0o644, "uid": 0, "gid": 0, "owner": None, "group": None, "size": 0, "mtime_ns": 0}
    forged = _forge(store, manifest, [
        dict(common, path="out", type="symlink", sha256=None, target=str(outside)),
        dict(common, path="out/planted", type="file", sha256=store.put_bytes(b""), target=None),
    ])
    with pytest.raises(UnsafePathError, match="below the symlink"):
        restore_checkpoint(store, forged, RestoreOptions(creator="test"))
    assert list(outside.iterdir()) == []


def test_a_restore_killed_midway_leaves_old_or_new_files_and_the_next_run_completes(store, root, monkeypatch):
    old = {("page%02d.html" % index): "page %d\n" % index for index in range(10)}
    manifest = _checkpoint(store, root)
    expected = _snapshot(root)
    new = {name: "new content of %s\n" % name for name in old}
    for name, text in new.items():
        (root / name).write_text(text)
    renamed = []

    def die_at_the_fifth_rename(point, where):
        if point == "restore.rename":
            if len(renamed) == 4:
                raise Killed()
            renamed.append(where["rel"])

    monkeypatch.setattr(_nofollow, "race_hook", die_at_the_fifth_rename)
    with pytest.raises(Killed):
        restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    monkeypatch.setattr(_nofollow, "race_hook", None)

    leftovers = [name for name in os.listdir(str(root)) if TEMP_MARK in name]
    assert leftovers, "the kill came after staging, so staged temporary files remain"
    restored = 0
    for name in old:
        text = (root / name).read_text()
        assert text in (old[name], new[name]), "every file is either old or new, never mixed"
        restored += text == old[name]
    assert restored == 4

    result = restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    assert result["verified"]
    assert _snapshot(root) == expected
    assert [name for name in os.listdir(str(root)) if TEMP_MARK in name] == []
    assert verify_tree(store, manifest["roots"][0]) == []


def test_the_safety_checkpoint_taken_in_the_plan_walk_holds_the_tree_from_before_the_restore(store, root):
    manifest = _checkpoint(store, root)
    (root / "conf" / "app.conf").write_text("port = 8080\n")  # changed
    shutil.rmtree(str(root / "bin"))  # removed
    (root / "extra" / "deep").mkdir(parents=True)  # extras below an extra directory
    (root / "extra" / "deep" / "file").write_bytes(os.urandom(70000))
    (root / "page04.html").unlink()
    (root / "page04.html").mkdir()  # a file that became a directory, with content
    (root / "page04.html" / "inside").write_text("inside\n")
    os.unlink(str(root / "current.conf"))
    os.symlink("conf/db.conf", str(root / "current.conf"))  # a retargeted link
    (root / (".leftover" + TEMP_MARK + "1")).write_text("a temporary file of an interrupted run")
    before = {rel: value for rel, value in _snapshot(root).items() if TEMP_MARK not in rel}
    result = restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    safety = store.find(result["safety_checkpoint"]["id"])
    assert safety["kind"] == "safety" and safety["roots"][0]["entries"] == len(before)
    back = restore_checkpoint(store, safety, RestoreOptions(creator="test"))
    assert back["changed"] and _snapshot(root) == before, "rolling the rollback back restores every entry"
    fresh = _checkpoint(store, root, label="fresh")
    assert fresh["roots"][0]["tree"] == safety["roots"][0]["tree"], "same tree object as a checkpoint would write"


def test_a_full_restore_from_the_packed_plan_gives_back_every_entry(store, root):
    expected = _snapshot(root)
    manifest = _checkpoint(store, root)
    shutil.rmtree(str(root))
    root.mkdir()
    result = restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    assert result["verified"] and result["summary"][str(root)]["create"] == len(expected)
    assert _snapshot(root) == expected


def test_verify_checkpoint_refuses_a_plan_when_any_object_is_damaged(store, root):
    manifest = _checkpoint(store, root)
    (root / "conf" / "app.conf").write_text("port = 8080\n")  # the plan writes only this file
    untouched = hashlib.sha256(b"page 7\n").hexdigest()
    replace_object(store.root, untouched, b"bit rot")  # damaged, though the plan would not write it
    params = CheckpointParams(store_path=store.root, check_mode=True, checkpoint=manifest["id"], owner="test")
    assert restore_host(params)["changed"], "without verify_checkpoint only written objects count"
    params.verify_checkpoint = True
    with pytest.raises(IntegrityError) as caught:
        restore_host(params)
    assert untouched in str(caught.value) and "page07.html" in str(caught.value)
    assert "Nothing was changed" in str(caught.value)


def test_the_plan_of_a_full_restore_takes_little_memory_per_entry(store, tmp_path):
    """A full restore keeps its whole plan until it has verified the result: 40,000 files must
    stay under 60 MB, so the plan must not hold a dict or several objects per entry."""
    tree, count = tmp_path / "tree", 1000
    for number in range(count):
        path = tree / ("d%02d" % (number % 10)) / ("file-%05d.conf" % number)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%d\n" % number)
    manifest = _checkpoint(store, tree)
    shutil.rmtree(str(tree))
    os.mkdir(str(tree))
    record = manifest["roots"][0]
    plan_root(store, record)  # once unmeasured: caches and lazily compiled patterns
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        plan = plan_root(store, record)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(plan.actions) == count + 10
    assert kept / len(plan.actions) < 200, "%d bytes per planned action" % (kept / len(plan.actions))


def test_a_full_restore_hashes_each_file_once_as_it_writes_it(store, root, monkeypatch):
    """The verification after the restore trusts the hash taken while writing (same inode, same size): no
    written file is read back."""
    manifest = _checkpoint(store, root)
    expected = _snapshot(root)
    shutil.rmtree(str(root))
    read_back = []
    original = Store.hash_fd
    monkeypatch.setattr(Store, "hash_fd", lambda self, fd: read_back.append(fd) or original(self, fd))
    result = restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    assert result["verified"] and _snapshot(root) == expected
    assert read_back == []


@pytest.mark.parametrize("how", ["replaced", "written in place", "written in place, mtime set back"])
def test_a_file_changed_after_it_was_written_fails_the_verification(store, root, monkeypatch, how):
    manifest = _checkpoint(store, root)
    (root / "conf" / "app.conf").write_text("port = 8080\n")
    target = root / "conf" / "app.conf"
    checkpointed = next(entry for entry in store.iter_tree(manifest["roots"][0]["tree"])
                        if entry["path"] == "conf/app.conf")

    def change_it(point, _where):
        if point == "restore.meta" and target.read_text() == "port = 80\n":
            if how == "replaced":  # another inode of the same size and mtime, other content
                os.unlink(str(target))
                target.write_text("port = 81\n")
                os.utime(str(target), ns=(checkpointed["mtime_ns"], checkpointed["mtime_ns"]))
            else:
                with open(str(target), "r+b") as handle:
                    handle.write(b"PORT")
                if how.endswith("set back"):  # same inode, size and mtime: only the change time tells
                    os.utime(str(target), ns=(checkpointed["mtime_ns"], checkpointed["mtime_ns"]))

    monkeypatch.setattr(_nofollow, "race_hook", change_it)
    with pytest.raises(IntegrityError) as failed:
        restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    problem = failed.value.details["differences"][str(root)][0]
    assert problem["path"] == "conf/app.conf"
    assert ("mtime" if how == "written in place" else "content") in problem["problem"]


def test_a_staged_file_changed_before_its_rename_fails_the_verification(store, root, monkeypatch):
    manifest = _checkpoint(store, root)
    (root / "conf" / "app.conf").write_text("port = 8080\n")
    checkpointed = next(entry for entry in store.iter_tree(manifest["roots"][0]["tree"])
                        if entry["path"] == "conf/app.conf")

    def change_staged(point, where):
        if point == "restore.rename" and where.get("rel") == "conf/app.conf":
            staged = next(path for path in (root / "conf").iterdir() if TEMP_MARK in path.name)
            with open(str(staged), "r+b") as handle:  # same size, mtime set back: only the change time tells
                handle.write(b"PORT")
            os.utime(str(staged), ns=(checkpointed["mtime_ns"], checkpointed["mtime_ns"]))

    monkeypatch.setattr(_nofollow, "race_hook", change_staged)
    with pytest.raises(IntegrityError) as failed:
        restore_checkpoint(store, manifest, RestoreOptions(creator="test"))
    problem = failed.value.details["differences"][str(root)][0]
    assert problem["path"] == "conf/app.conf" and "content" in problem["problem"]


def test_a_written_file_is_known_by_inode_generation_size_and_change_time(tmp_path):
    """An inode number given to another file of the same size in the same clock tick still differs in its
    generation: the verification then reads the file back."""
    path = tmp_path / "f"
    path.write_bytes(b"port = 80\n")
    fd = os.open(str(path), os.O_RDONLY)
    try:
        st = os.fstat(fd)
        generation = inode_generation(fd)
        if generation is None:
            pytest.fail("the test directory's file system has no inode generation numbers: %s" % tmp_path)
        same = (st.st_ino, st.st_size, st.st_ctime_ns, generation)
        assert unchanged_since_written(fd, st, same)
        assert not unchanged_since_written(fd, st, same[:3] + (generation ^ 1,))
        assert not unchanged_since_written(fd, st, (st.st_ino, st.st_size, st.st_ctime_ns - 1, generation))
        assert not unchanged_since_written(fd, st, None)
    finally:
        os.close(fd)


def test_a_file_system_that_takes_a_few_bytes_a_write_still_gets_every_byte(store, root, monkeypatch):
    expected = _snapshot(root)
    manifest = _checkpoint(store, root)
    shutil.rmtree(str(root))
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    result = restore_checkpoint(store, manifest, RestoreOptions(safety_checkpoint=False))
    monkeypatch.undo()
    assert result["verified"]
    assert _snapshot(root) == expected


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_a_restore_whose_creator_thread_cannot_start_leaves_no_descriptor_open(store, root, monkeypatch):
    manifest = _checkpoint(store, root)
    shutil.rmtree(str(root))
    before = _open_fds()

    def refuse_start(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_restore.threading.Thread, "start", refuse_start)
    with pytest.raises(RuntimeError, match="start new thread"):
        restore_checkpoint(store, manifest, RestoreOptions(safety_checkpoint=False))
    assert _open_fds() == before


def test_a_write_failing_within_a_batch_of_created_files_closes_them_all_and_removes_every_staged_one(store, root, monkeypatch):
    manifest = _checkpoint(store, root)
    shutil.rmtree(str(root))
    monkeypatch.setattr(_restore, "CREATE_BATCH", 4)
    real_write_all = _restore.write_all
    writes = []

    def failing_on_the_sixth(fd, data):
        writes.append(fd)
        if len(writes) == 6:
            raise OSError(errno.EIO, "I/O error")
        real_write_all(fd, data)

    monkeypatch.setattr(_restore, "write_all", failing_on_the_sixth)
    before = _open_fds()
    with pytest.raises(OSError, match="I/O error"):
        restore_checkpoint(store, manifest, RestoreOptions(safety_checkpoint=False))
    assert _open_fds() == before
    assert not root.exists() or not [name for _dir, _dirs, files in os.walk(str(root)) for name in files]


def test_a_restore_into_an_empty_root_killed_while_moving_into_place_leaves_each_entry_absent_or_whole(store, root, monkeypatch):
    expected = _snapshot(root)
    manifest = _checkpoint(store, root)
    shutil.rmtree(str(root))
    root.mkdir()
    moved = []

    def die_at_the_third_move(point, where):
        if point == "restore.rename":
            if len(moved) == 2:
                raise Killed()
            moved.append(where["rel"])

    monkeypatch.setattr(_nofollow, "race_hook", die_at_the_third_move)
    with pytest.raises(Killed):
        restore_checkpoint(store, manifest, RestoreOptions(safety_checkpoint=False))
    monkeypatch.setattr(_nofollow, "race_hook", None)

    assert all("/" not in rel for rel in moved), "only the root's entries are moved, each with all below it"
    placed = {rel: value for rel, value in _snapshot(root).items() if TEMP_MARK not in rel}
    assert placed and len(placed) < len(expected)
    for rel, value in placed.items():  # a directory's metadata is set last, after every move
        assert value == expected[rel] or value[0] == "dir", "%s is in place only whole" % rel
    result = restore_checkpoint(store, manifest, RestoreOptions(safety_checkpoint=False))
    assert result["verified"] and _snapshot(root) == expected
    assert [name for name in os.listdir(str(root)) if TEMP_MARK in name] == []


def test_a_restore_into_an_empty_root_that_fails_while_writing_leaves_it_empty(store, root, monkeypatch):
    manifest = _checkpoint(store, root)
    shutil.rmtree(str(root))
    root.mkdir()
    real_write_all = _restore.write_all
    writes = []

    def failing_on_the_ninth(fd, data):
        writes.append(fd)
        if len(writes) == 9:
            raise OSError(errno.EIO, "I/O error")
        real_write_all(fd, data)

    monkeypatch.setattr(_restore, "write_all", failing_on_the_ninth)
    with pytest.raises(OSError, match="I/O error"):
        restore_checkpoint(store, manifest, RestoreOptions(safety_checkpoint=False))
    assert os.listdir(str(root)) == []


def test_a_file_changed_in_the_stage_directory_before_the_move_fails_the_verification(store, root, monkeypatch):
    manifest = _checkpoint(store, root)
    shutil.rmtree(str(root))
    root.mkdir()
    checkpointed = next(entry for entry in store.iter_tree(manifest["roots"][0]["tree"])
                        if entry["path"] == "conf/app.conf")

    def change_staged(point, where):
        if point == "restore.rename" and where.get("rel") == "conf":
            stage = next(path for path in root.iterdir() if TEMP_MARK in path.name)
            with open(str(stage / "conf" / "app.conf"), "r+b") as handle:  # same size, mtime set back
                handle.write(b"PORT")
            os.utime(str(stage / "conf" / "app.conf"), ns=(checkpointed["mtime_ns"], checkpointed["mtime_ns"]))

    monkeypatch.setattr(_nofollow, "race_hook", change_staged)
    with pytest.raises(IntegrityError) as failed:
        restore_checkpoint(store, manifest, RestoreOptions(safety_checkpoint=False))
    problem = failed.value.details["differences"][str(root)][0]
    assert problem["path"] == "conf/app.conf" and "content" in problem["problem"]


def test_an_entry_planted_where_a_restore_into_an_empty_root_moves_one_refuses_it_and_restores_nothing(
        store, root, tmp_path, monkeypatch):
    manifest = _checkpoint(store, root)
    shutil.rmtree(str(root))
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()

    def plant(point, where):
        if point == "restore.rename" and where.get("rel") == "conf":
            os.symlink(str(outside), str(root / "page03.html"))  # a later top entry of the plan

    monkeypatch.setattr(_nofollow, "race_hook", plant)
    with pytest.raises(UnsafePathError, match="page03.html"):
        restore_checkpoint(store, manifest, RestoreOptions(safety_checkpoint=False))
    assert os.listdir(str(root)) == ["page03.html"] and os.path.islink(str(root / "page03.html"))
    assert list(outside.iterdir()) == []
