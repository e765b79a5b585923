# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hashing and storing file contents in forked worker processes, one pack each.

A cold checkpoint spends its time opening, reading, hashing and writing files; threads share one
interpreter lock, so on a machine with several cores the work goes to processes forked from
the capturing one (they inherit the opened store, no start-up cost). The parent walks the tree
and sends batches of jobs (the file as listed, known hash, size) over a pipe; a worker answers each
batch with (object name, size, new) per job, in order. A worker reads a file only through the
store_content function it was given: for a capture, that opens the file below its parent
directory's descriptor without following a link and checks it is the inode that was listed (see
``common.nofollow``); workers inherit the parent's descriptor of the managed root when they fork. Each worker appends small objects to a pack of its
own and finishes it when told; the parent then reads the new packs' indexes.

Workers start only once a batch fills while the walk goes on (a checkpoint with little to store,
such as an incremental one, does its few jobs in-process). A worker that loses its parent (EOF
on its pipe) drops its unfinished pack and exits.
"""

from __future__ import annotations

import gc
import marshal
import os
import pickle
import select
import signal
import struct
from typing import Callable, Dict, List, Optional, Protocol, Tuple

from ..common.errors import RollbackError
from ..common.fsutil import libc, write_all

PR_SET_PDEATHSIG = 1

Job = Tuple[int, object, Optional[str], int]  # job number, the file (marshallable), known hash, size
Content = Tuple[Optional[str], int, bool]  # object name (None: not the file that was listed), size, new object

BATCH_FILES = 128
BATCH_BYTES = 4 * 1024 * 1024
MAX_QUEUED = 3  # batches sent to one worker and not yet answered (their answers fit in a pipe)
MAX_WORKERS = 4
POLL_EVERY = 64  # ready() looks for arrived answers once in this many calls
_FRAME = struct.Struct(">I")


def usable_cpus() -> int:
    """Return how many CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _write_frame(fd: int, payload: bytes) -> None:
    write_all(fd, _FRAME.pack(len(payload)) + payload)


def _read_exactly(fd: int, count: int) -> Optional[bytes]:
    parts, missing = [], count
    while missing:
        part = os.read(fd, missing)
        if not part:
            return None
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def _read_frame(fd: int) -> Optional[bytes]:
    """Return the next frame, or None at end of file."""
    head = _read_exactly(fd, _FRAME.size)
    if head is None:
        return None
    return _read_exactly(fd, _FRAME.unpack(head)[0])


def _portable_error(exc: BaseException) -> bytes:
    """Return an exception as bytes the parent can raise again."""
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:  # pylint: disable=broad-except
        return pickle.dumps(RollbackError("%s: %s" % (type(exc).__name__, exc)))


def _answer(frame: Optional[bytes], pid: int) -> list:
    """Return a worker's answer, raising the worker's own error (or a lost worker's)."""
    if frame is None:
        raise RollbackError("A checkpoint worker process (pid %d) ended without answering; see the system "
                            "log (out of memory?) and run the checkpoint again." % pid)
    if frame[:1] == b"E":
        raise pickle.loads(frame[1:])
    return marshal.loads(frame[1:])


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when its parent dies (Linux), so a killed checkpoint
    leaves no process behind that still writes; elsewhere a worker stops at its next read."""
    c_library = libc()
    if c_library and hasattr(c_library, "prctl"):
        c_library.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


class _Worker:
    """The parent's side of one worker process."""

    def __init__(self, pid: int, commands: int, answers: int) -> None:
        self.pid = pid
        self.commands = commands
        self.answers = answers
        self.queued: List[Tuple[List[int], int]] = []  # (job numbers, bytes) of each batch sent, oldest first
        self.queued_bytes = 0


class WorkerStore(Protocol):
    """What the pool needs of the store on either side of a fork."""

    def enter_worker(self) -> None:
        """In a new worker: leave the parent's open pack alone and start packs of its own."""

    def finish_worker(self) -> List[str]:
        """In a worker: finish its pack; return the index files it wrote."""

    def abort_worker(self) -> None:
        """In a worker: drop its unfinished pack."""

    def adopt_packs(self, names: List[str]) -> None:
        """In the parent: make the packs the workers wrote findable, and all they wrote durable at the next sync."""


class ContentPool:
    """Runs ``store_content(what, known_hash, size)`` for file jobs, in workers or in-process."""

    def __init__(self, store_content: Callable[[object, Optional[str], int], Content], store: "WorkerStore",
                 workers: Optional[int] = None) -> None:
        self.store_content = store_content
        self.store = store
        self.wanted = min(MAX_WORKERS, usable_cpus()) if workers is None else workers
        self.workers: List[_Worker] = []
        self.results: Dict[int, Content] = {}
        self.batch: List[Job] = []
        self.batch_bytes = 0
        self.jobs = 0
        self.polls = 0

    # ------------------------------------------------------------------ parent
    def submit(self, what: object, known: Optional[str], size: int) -> int:
        """Queue a job for the file ``what`` (marshallable); return its number."""
        job = self.jobs
        self.jobs += 1
        self.batch.append((job, what, known, size))
        self.batch_bytes += size
        if len(self.batch) >= BATCH_FILES or self.batch_bytes >= BATCH_BYTES:
            self._flush(on_demand=False)
        return job

    def ready(self, job: int) -> bool:
        """Tell whether a job's result is in (reading answers that already arrived, now and then)."""
        if job in self.results:
            return True
        self.polls += 1
        if self.workers and not self.polls % POLL_EVERY:
            self._collect(block=False)
        return job in self.results

    def result(self, job: int) -> Content:
        """Return a job's result, waiting for it (and sending its batch) when needed."""
        while job not in self.results:
            if self.batch and self.batch[0][0] <= job:  # still in the batch being gathered
                self._flush(on_demand=True)
            elif not self._collect(block=True):
                raise RuntimeError("job %d was never submitted or its result was taken" % job)
        return self.results.pop(job)

    def _flush(self, on_demand: bool) -> None:
        """Send the batch to the least loaded worker (starting workers on a full batch); with no
        workers, run it here."""
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        if not batch:
            return
        if not self.workers and not on_demand and self.wanted > 1:
            self._start_workers()
        if not self.workers:
            for job, path, known, size in batch:
                self.results[job] = self.store_content(path, known, size)
            return
        worker = min(self.workers, key=lambda w: w.queued_bytes)
        while len(worker.queued) >= MAX_QUEUED:
            self._collect(block=True)
            worker = min(self.workers, key=lambda w: w.queued_bytes)
        try:
            _write_frame(worker.commands, marshal.dumps(("jobs", batch)))
        except BrokenPipeError:
            raise RollbackError("A checkpoint worker process (pid %d) ended unexpectedly; see the system log "
                                "(out of memory?) and run the checkpoint again." % worker.pid) from None
        batch_bytes = sum(size for _job, _path, _known, size in batch)
        worker.queued.append(([job for job, _path, _known, _size in batch], batch_bytes))
        worker.queued_bytes += batch_bytes

    def _collect(self, block: bool) -> bool:
        """Read the answers that arrived (or wait for one when ``block``); False when none is due."""
        busy = {worker.answers: worker for worker in self.workers if worker.queued}
        if not busy:
            return False
        poller = select.poll()  # (select() cannot watch descriptors above 1023)
        for fd in busy:
            poller.register(fd, select.POLLIN)
        for fd, _event in poller.poll(None if block else 0):
            answers = _answer(_read_frame(fd), busy[fd].pid)
            worker = busy[fd]
            jobs, batch_bytes = worker.queued.pop(0)
            for job, answer in zip(jobs, answers):
                self.results[job] = (answer[0], answer[1], answer[2])
            worker.queued_bytes -= batch_bytes
        return True

    def close(self) -> None:
        """Run what is left, let the workers finish their packs and make those findable."""
        self._flush(on_demand=True)
        while any(worker.queued for worker in self.workers):
            self._collect(block=True)
        names: List[str] = []
        forked = bool(self.workers)
        try:
            for worker in self.workers:
                _write_frame(worker.commands, marshal.dumps(("finish", None)))
            for worker in self.workers:
                names.extend(_answer(_read_frame(worker.answers), worker.pid))
        finally:
            self._reap()
        if names or forked:
            self.store.adopt_packs(names)

    def abort(self) -> None:
        """Stop the workers; they drop their unfinished packs."""
        self._reap()

    def _reap(self) -> None:
        workers, self.workers = self.workers, []
        for worker in workers:
            os.close(worker.commands)  # EOF: a worker still running aborts and exits
        for worker in workers:
            os.close(worker.answers)
            try:
                os.waitpid(worker.pid, 0)
            except ChildProcessError:
                pass

    def _start_workers(self) -> None:
        for _number in range(self.wanted):
            try:
                self.workers.append(self._fork())
            except OSError:
                break  # no more processes: the ones started (or this one) do the work

    def _fork(self) -> _Worker:
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                gc.freeze()  # never collect (and so never flush or close) the parent's objects here
                _die_with(parent)
                os.close(to_worker_w)
                os.close(from_worker_r)
                for other in self.workers:
                    os.close(other.commands)
                    os.close(other.answers)
                code = self._serve(to_worker_r, from_worker_w)
            finally:
                os._exit(code)  # never run the parent's exit handlers or flush its buffers
        os.close(to_worker_r)
        os.close(from_worker_w)
        return _Worker(pid, to_worker_w, from_worker_r)

    # ------------------------------------------------------------------ worker
    def _serve(self, commands: int, answers: int) -> int:
        """The worker's loop: answer batches until told to finish (0) or the parent goes (1)."""
        self.workers = []
        try:
            self.store.enter_worker()
            while True:
                frame = _read_frame(commands)
                if frame is None:
                    self.store.abort_worker()
                    return 1
                kind, payload = marshal.loads(frame)
                if kind == "finish":
                    _write_frame(answers, b"K" + marshal.dumps(self.store.finish_worker()))
                    return 0
                _write_frame(answers, b"K" + marshal.dumps(
                    [self.store_content(path, known, size) for _job, path, known, size in payload]))
        except BaseException as exc:  # pylint: disable=broad-except
            try:
                self.store.abort_worker()
            finally:
                _write_frame(answers, b"E" + _portable_error(exc))
            return 1
