# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DumpStream following a file its dump writes: reused buffers, early writeback, the dump's launcher."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import threading

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.db import streams as _db_common
from ansible_collections.gitops.rollback.plugins.module_utils.db.streams import DumpStream, output_buffer_launcher
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import CommandError
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

# writes 5 MB in pieces of every size, sleeping now and then so that the reader catches up and waits
SLOW_WRITER = r"""
import os, random, sys, time
rng = random.Random(3)
data = bytes(rng.getrandbits(8) for _byte in range(1 << 16)) * 80
pos = 0
while pos < len(data):
    step = rng.choice([1, 7, 4096, 65536, 1 << 20, 3 << 20])
    os.write(1, data[pos:pos + step])
    pos += step
    if rng.random() < 0.05:
        time.sleep(0.01)
"""


@pytest.fixture
def store(tmp_path):
    st = Store(str(tmp_path / "store"))
    st.init()
    return st


def expected_data() -> bytes:
    """What SLOW_WRITER writes."""
    rng = random.Random(3)
    return bytes(rng.getrandbits(8) for _byte in range(1 << 16)) * 80


def test_a_followed_dump_is_hashed_and_observed_exactly_while_buffers_are_reused(store, monkeypatch) -> None:
    monkeypatch.setattr(_db_common, "WRITEBACK_BYTES", 1 << 20)
    calls = []
    monkeypatch.setattr(_db_common, "start_writeback", lambda fd, offset, length: calls.append((offset, length)))
    seen = bytearray()
    buffers = set()

    def observer(data, length):
        buffers.add(id(data))
        seen.extend(data[:length])

    stream = DumpStream(store, [sys.executable, "-c", SLOW_WRITER], "slow dump", observer=observer, into_file=True)
    sha, size = stream.run()
    data = expected_data()
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert bytes(seen) == data and store.read_blob(sha) == data
    assert bytes(stream.tail) == data[-_db_common.TAIL_BYTES:]
    assert len(buffers) <= _db_common.HASH_BACKLOG  # no buffer per chunk
    assert calls and all(offset == 0 for offset, _length in calls)
    assert calls[-1] == (0, len(data))  # the whole file is on its way to disk before the store's sync
    assert [length for _offset, length in calls] == sorted(length for _offset, length in calls)


def test_the_followers_yield_the_cpu_to_the_dump_and_the_dump_does_not(store, tmp_path, monkeypatch) -> None:
    niceness = []
    real = _db_common._yield_cpu  # pylint: disable=protected-access

    def record(nice: int) -> None:
        real(nice)
        niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    monkeypatch.setattr(_db_common, "_yield_cpu", record)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    report = [sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"]
    sha, _size = DumpStream(store, report, "dump", into_file=True).run()
    assert int(store.read_blob(sha)) == mine  # the dump runs at this process's priority
    assert len(niceness) >= 2 and set(niceness) == {min(19, mine + _db_common.FOLLOW_NICE)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_the_launcher_runs_the_dump_but_stays_out_of_messages(store, tmp_path) -> None:
    marker = tmp_path / "launched"
    launcher = [sys.executable, "-c", "import os, sys; open(%r, 'w').close(); os.execvp(sys.argv[1], sys.argv[1:])"
                % str(marker)]
    producer = [sys.executable, "-c", "print('data')"]
    sha, _size = DumpStream(store, producer, "dump", into_file=True, launcher=launcher).run()
    assert marker.exists() and store.read_blob(sha) == b"data\n"
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
    with pytest.raises(CommandError) as caught:
        DumpStream(store, failing, "dump", into_file=True, launcher=launcher).run()
    assert "boom" in str(caught.value) and "execvp" not in str(caught.value)


def test_the_output_buffer_launcher_is_stdbuf_only_where_it_works(monkeypatch, tmp_path) -> None:
    output_buffer_launcher.cache_clear()
    monkeypatch.setattr(_db_common.shutil, "which", lambda name: None)
    assert output_buffer_launcher() == ()
    output_buffer_launcher.cache_clear()
    broken = tmp_path / "stdbuf"
    broken.write_text("#!/bin/sh\necho 'stdbuf: failed to find libstdbuf.so' >&2\nexit 125\n")
    broken.chmod(0o755)
    monkeypatch.setattr(_db_common.shutil, "which", lambda name: str(broken))
    assert output_buffer_launcher() == ()
    output_buffer_launcher.cache_clear()
    monkeypatch.undo()
    real = _db_common.shutil.which("stdbuf")
    assert output_buffer_launcher() == ((real, "-o", _db_common.OUTPUT_BUFFER) if real else ())
    output_buffer_launcher.cache_clear()
