"""SIGKILL at seeded random points of checkpoint and restore: every file old or new, no half
checkpoint, and the next run (through ansible-playbook) completes."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from kill_support import kill_points

pytestmark = [pytest.mark.slow, pytest.mark.deep]

CHECKPOINT = """
import sys
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.plugins.module_utils.files.capture import CheckpointRequest, RootSpec, create_checkpoint
store = Store(sys.argv[1], sys.argv[3] or None)
with store.lock("killer", "checkpoint"):
    create_checkpoint(store, CheckpointRequest(roots=[RootSpec(sys.argv[2], [], [])], label=sys.argv[4],
                      commit=None, reason="fault", creator="killer", facts={}, force=True))
print("done")
"""

RESTORE = """
import sys
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.plugins.module_utils.files.restore import RestoreOptions, restore_checkpoint
store = Store(sys.argv[1], sys.argv[3] or None)
with store.lock("killer", "restore"):
    restore_checkpoint(store, store.find(sys.argv[4]), RestoreOptions(only_paths=[sys.argv[2]], dry_run=False,
                       want_diff=False, safety_checkpoint=True, creator="killer"))
print("done")
"""

KEYS = {"plain": "", "encrypted": "fault-test-key-0123456789"}


def write_tree(root: Path, version: str, files: int = 600) -> dict:
    """A tree of ``files`` files (some large) whose content depends on ``version``; return {path: bytes}."""
    rng = random.Random(version)
    content = {}
    for index in range(files):
        rel = "d%02d/f%04d.txt" % (index % 40, index)
        data = rng.randbytes(200_000) if index % 100 == 0 else ("%s %d\n" % (version, index)).encode() * 20
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        content[rel] = data
    return content


def live(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def kill_after(proc, seconds: float) -> bool:
    """SIGKILL ``proc`` after ``seconds`` unless it finished; True when it was killed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def unkilled_seconds(proc) -> float:
    """Let an engine run finish; return how long it took (kill points are drawn inside it)."""
    started = time.monotonic()
    _out, err = proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")
    return time.monotonic() - started


def params(store: Path, key: str, **extra) -> dict:
    args = {"store_path": str(store), **extra}
    if key:
        args["encryption_key"] = key
    return args


@pytest.mark.parametrize("mode", ["plain", "encrypted"])
def test_checkpoint_killed_at_random_points_leaves_no_half_checkpoint(engine, run_task, tmp_path, mode):
    key = KEYS[mode]
    root, store = tmp_path / "app", tmp_path / "store"
    write_tree(root, "v1")
    _result, first = run_task("gitops.rollback.checkpoint", params(store, key, paths=[str(root)], label="v1"))
    assert first["status"] == "ok", first
    write_tree(root, "v2")
    duration = unkilled_seconds(engine(CHECKPOINT, str(tmp_path / "timing-store"), str(root), key, "v2"))
    killed = 0
    for delay in kill_points(42, 3, duration, tail=1):  # one per half of the run, one in its last fifth (publish)
        proc = engine(CHECKPOINT, str(store), str(root), key, "v2")
        killed += kill_after(proc, delay)
        _result, info = run_task("gitops.rollback.checkpoint_info", params(store, key))
        labels = [cp["label"] for cp in info["checkpoints"]]
        assert labels[0] == "v1" and set(labels) <= {"v1", "v2"}, labels
        _result, verified = run_task("gitops.rollback.checkpoint", params(store, key, state="verified"))
        assert verified["status"] == "ok", "a visible checkpoint is incomplete: %s" % verified
    assert killed, "no run was killed: the test proves nothing"
    args = params(store, key, paths=[str(root)], label="v2", force=True)
    _result, done = run_task("gitops.rollback.checkpoint", args)
    assert done["status"] == "ok" and done["checkpoint"]["label"] == "v2"


@pytest.mark.parametrize("mode", ["plain", "encrypted"])
def test_restore_killed_at_random_points_leaves_every_file_old_or_new(engine, run_task, tmp_path, mode):
    key = KEYS[mode]
    root, store = tmp_path / "app", tmp_path / "store"
    old = write_tree(root, "v1")
    _result, first = run_task("gitops.rollback.checkpoint", params(store, key, paths=[str(root)], label="v1"))
    assert first["status"] == "ok", first
    write_tree(root, "v2")
    duration = unkilled_seconds(engine(RESTORE, str(store), str(root), key, "v1"))  # back at v1: redeploy v2
    new = write_tree(root, "v2")
    killed = 0
    for delay in kill_points(7, 3, duration, tail=1):  # one per half of the run, one in its last fifth (renames)
        proc = engine(RESTORE, str(store), str(root), key, "v1")
        killed += kill_after(proc, delay)
        now = live(root)
        for rel, data in now.items():
            if ".grtmp-" in rel:
                continue  # staged files of the killed run: removed by the next run
            assert data in (old.get(rel), new.get(rel)), "%s is neither old nor new" % rel
    assert killed, "no run was killed: the test proves nothing"
    _result, done = run_task("gitops.rollback.restore", params(store, key, checkpoint="v1", paths=[str(root)]))
    assert done["status"] == "ok" and done["verified"], done
    assert live(root) == old
