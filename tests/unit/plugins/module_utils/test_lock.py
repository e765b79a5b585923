# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store lock: a live holder is refused by name, a stale one is recovered."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import LockHeldError
from ansible_collections.gitops.rollback.plugins.module_utils.common.lock import FileLock


@pytest.fixture
def lock_path(tmp_path):
    return str(tmp_path / "store.lock")


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_holder(path, **fields):
    holder = {"owner": "ci@runner", "operation": "restore", "host": socket.gethostname(), "pid": os.getpid(),
              "pid_start": None, "started": "2026-01-01T00:00:00Z", "expires_epoch": time.time() + 3600,
              "expires": "later", "token": "other"}
    holder.update(fields)
    with open(path, "w") as handle:
        json.dump(holder, handle)
    return holder


def test_a_live_lock_is_refused_naming_its_owner(lock_path):
    with FileLock(lock_path, "alice@web1", "restore").acquire():
        with pytest.raises(LockHeldError) as caught:
            FileLock(lock_path, "bob@ci", "checkpoint").acquire(timeout=0)
    message = str(caught.value)
    assert "alice@web1" in message and "restore" in message and str(os.getpid()) in message
    assert caught.value.details["holder"]["owner"] == "alice@web1"
    assert not os.path.exists(lock_path), "the holder releases its lock"


def test_the_lock_records_who_holds_it(lock_path):
    with FileLock(lock_path, "alice@web1", "checkpoint", ttl=60).acquire():
        holder = json.loads(open(lock_path).read())
        assert os.stat(lock_path).st_mode & 0o777 == 0o600
    assert holder["owner"] == "alice@web1" and holder["operation"] == "checkpoint"
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert 0 < holder["expires_epoch"] - time.time() <= 60


def test_a_lock_of_a_dead_process_is_recovered(lock_path):
    stale = _write_holder(lock_path, pid=_dead_pid())
    lock = FileLock(lock_path, "bob@ci", "checkpoint").acquire()
    assert lock.recovered == stale
    assert json.loads(open(lock_path).read())["owner"] == "bob@ci"
    lock.release()


def test_a_reused_pid_is_recognised_by_its_start_time(lock_path):
    _write_holder(lock_path, pid=os.getpid(), pid_start="1")
    lock = FileLock(lock_path, "bob@ci", "checkpoint").acquire()
    assert lock.recovered["pid_start"] == "1"
    lock.release()


def test_an_expired_lock_is_recovered_even_from_another_host(lock_path):
    _write_holder(lock_path, host="elsewhere", pid=1, expires_epoch=time.time() - 1)
    lock = FileLock(lock_path, "bob@ci", "checkpoint").acquire()
    assert lock.recovered["host"] == "elsewhere"
    lock.release()


def test_a_live_lock_of_another_host_is_not_broken(lock_path):
    _write_holder(lock_path, host="elsewhere", pid=_dead_pid())
    with pytest.raises(LockHeldError, match="elsewhere"):
        FileLock(lock_path, "bob@ci", "checkpoint").acquire(timeout=0)
    assert json.loads(open(lock_path).read())["host"] == "elsewhere"


def test_an_unreadable_lock_file_is_treated_as_stale(lock_path):
    with open(lock_path, "w") as handle:
        handle.write("{not json")
    FileLock(lock_path, "bob@ci", "checkpoint").acquire().release()
    assert not os.path.exists(lock_path)


def test_waiting_for_a_lock_times_out(lock_path):
    with FileLock(lock_path, "alice@web1", "restore").acquire():
        started = time.monotonic()
        with pytest.raises(LockHeldError):
            FileLock(lock_path, "bob@ci", "checkpoint").acquire(timeout=0.5)
        assert time.monotonic() - started >= 0.4


def test_release_leaves_a_lock_taken_over_by_someone_else(lock_path):
    lock = FileLock(lock_path, "alice@web1", "restore").acquire()
    _write_holder(lock_path, owner="bob@ci", token="bob")
    lock.release()
    assert json.loads(open(lock_path).read())["owner"] == "bob@ci"
