# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plumbing shared by the database engines: streaming a dump into the store while hashing it,
adopting finished files as blobs, and feeding a stored dump to a client through a pipeline.

Every stage of every pipeline has its exit status checked; a stage that fails makes the whole
operation fail, whatever the other stages reported.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Callable, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

from ..common.errors import IntegrityError, RollbackError
from ..common.fsutil import raise_if_full, start_writeback
from ..common.process import command_env, command_error, not_installed
from ..store.store import CHUNK, Store, sha256_file

TAIL_BYTES = 4096
FOLLOW_POLL_S = 0.005  # how long to wait for a dump writing its file to write more
HASH_BACKLOG = 8  # chunks read but not hashed yet, at most (the buffers a followed file is read into)
WRITEBACK_BYTES = 32 * 1024 * 1024  # bytes of a followed file sent on to disk at a time
FOLLOW_NICE = 10  # how much nicer than the dump the threads following its file run
OUTPUT_BUFFER = "64K"  # stdout buffer of a dump client writing through C stdio (glibc's own is 4 KB for a file)

Observer = Callable[[bytes, int], None]  # shown (data, length): the next ``data[:length]`` of the dump

COMPRESSORS = {
    "gzip": (["gzip", "-c", "-6"], ["gzip", "-d", "-c"]),
    "zstd": (["zstd", "-q", "-c", "-3"], ["zstd", "-q", "-d", "-c"]),
}


class DatabaseError(RollbackError):
    """A database could not be reached, read or written as asked."""


def adopt_file(store: Store, path: str, sha: Optional[str] = None) -> Tuple[str, int]:
    """Move a finished file of the store's file system into the store as a blob (no copy).

    ``sha`` is the content hash when already known (computed while the file was written).
    """
    return store.adopt_file(path, sha)


def _drain(stream, sink: List[bytes]) -> None:
    sink.append(stream.read())


def _pump(source, target, tail: bytearray, failure: List[BaseException],
          observer: Optional[Observer] = None) -> None:
    """Copy ``source`` to ``target`` keeping the last bytes seen in ``tail`` (each chunk shown to ``observer``)."""
    try:
        for chunk in iter(lambda: source.read(CHUNK), b""):
            tail.extend(chunk)
            del tail[:-TAIL_BYTES]
            target.write(chunk)
            if observer:
                observer(chunk, len(chunk))
    except BaseException as exc:  # pylint: disable=broad-except
        failure.append(exc)
    finally:
        try:
            target.close()
        except OSError:
            pass


def _thread_nice() -> int:
    """Return the calling thread's nice value (Linux: per thread; elsewhere the process's)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except OSError:
        return os.getpriority(os.PRIO_PROCESS, 0)


def _yield_cpu(nice: int) -> None:
    """Set the calling thread's nice value (Linux: per thread), so that the dump it works beside gets the CPU first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        pass


@lru_cache(maxsize=None)
def output_buffer_launcher() -> Tuple[str, ...]:
    """Return the command prefix that gives a stdio program an OUTPUT_BUFFER stdout buffer, or ().

    A dump client writing its output 4 KB per write() spends most of its system time in those
    calls; ``stdbuf -o`` (GNU coreutils, FreeBSD) sets the buffer at start-up and execs the client
    (same process, same exit status, same output). Where stdbuf is missing or cannot preload its
    library (checked once), the client runs as it is.
    """
    stdbuf = shutil.which("stdbuf")
    if not stdbuf:
        return ()
    prefix = (stdbuf, "-o", OUTPUT_BUFFER)
    try:
        works = subprocess.run(list(prefix) + ["true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        works = False
    return prefix if works else ()


def _background(nice: int) -> ThreadPoolExecutor:
    """Return a one-thread executor whose thread runs at ``nice`` (see ``_yield_cpu``)."""
    return ThreadPoolExecutor(1, initializer=_yield_cpu, initargs=(nice,))


def _kill_unfinished(procs: Sequence[Tuple[List[str], subprocess.Popen]]) -> None:
    """Kill and reap the pipeline's processes that are still running ((argv, process) pairs)."""
    for _argv, proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class DumpStream:
    """Run a dump command (optionally through a compressor) straight into a store blob.

    The dump is hashed while it is written, so the store holds it without a second pass.
    ``tail`` keeps the last bytes of the uncompressed dump, for a completeness check;
    ``observer`` (if any) is shown every chunk of the uncompressed dump, in order, as
    ``(data, length)``: the chunk is ``data[:length]``, and ``data`` may be reused afterwards.
    With ``into_file`` (for a client that only appends to its standard output: pg_dump seeks
    back into a file) a plain store without compression lets the dump write the object's file
    itself. ``launcher`` is put before the dump's command line when it is started (not in
    messages).
    """

    def __init__(self, store: Store, argv: Sequence[str], what: str, env: Optional[Dict[str, str]] = None,
                 compressor: Optional[Sequence[str]] = None, secrets: Sequence[str] = (),
                 observer: Optional[Observer] = None, into_file: bool = False, launcher: Sequence[str] = ()) -> None:
        self.store = store
        self.argv = list(argv)
        self.what = what
        self.env = env
        self.compressor = list(compressor) if compressor else None
        self.secrets = secrets
        self.observer = observer
        self.into_file = into_file
        self.launcher = list(launcher)
        self.tail = bytearray()

    def run(self) -> Tuple[str, int]:
        """Run the dump; return (sha256, size) of the stored blob."""
        if self.into_file and self.compressor is None and self.store.cipher is None:
            return self._run_into_file()
        store = self.store
        procs: List[Tuple[List[str], subprocess.Popen]] = []
        errors: List[List[bytes]] = []
        threads: List[threading.Thread] = []
        failure: List[BaseException] = []
        out = store.object_writer()
        try:
            dump = self._start(self.argv, subprocess.DEVNULL, procs, errors, threads, launcher=self.launcher)
            source = dump.stdout
            if self.compressor:
                comp = self._start(self.compressor, subprocess.PIPE, procs, errors, threads)
                pump = threading.Thread(target=_pump, args=(dump.stdout, comp.stdin, self.tail, failure,
                                                            self.observer))
                pump.start()
                threads.append(pump)
                source = comp.stdout
            for chunk in iter(lambda: source.read(CHUNK), b""):
                out.write(chunk)
                if not self.compressor:
                    self.tail.extend(chunk)
                    del self.tail[:-TAIL_BYTES]
                    if self.observer:
                        self.observer(chunk, len(chunk))
            codes = [proc.wait() for _argv, proc in procs]
            for thread in threads:
                thread.join()
            for (argv, _proc), code, err in zip(procs, codes, errors):
                if code != 0:
                    raise command_error(argv, code, b"".join(err), self.what, self.secrets)
            if failure:
                raise failure[0]
            sha, size, _written = out.commit()
            return sha, size
        except OSError as exc:
            raise_if_full(exc, "the dump into %s" % store.root)
            raise
        finally:
            _kill_unfinished(procs)
            out.abort()

    def _run_into_file(self) -> Tuple[str, int]:
        """Let the dump write the new object's file itself and follow the file as it grows.

        What the dump wrote is read right behind it from the page cache, shown to the observer
        and hashed, in threads that yield the CPU to the dump (``_yield_cpu``): no byte crosses a
        pipe and the dump never waits for this process. The file is opened for appending, so
        bytes already hashed cannot change.
        """
        store = self.store
        procs: List[Tuple[List[str], subprocess.Popen]] = []
        errors: List[List[bytes]] = []
        threads: List[threading.Thread] = []
        tmp = store.temp_object_path()
        digest = store.hasher()
        nice = min(19, _thread_nice() + FOLLOW_NICE)  # the dump runs at this thread's
        with _background(nice) as reader, _background(nice) as hasher, _background(nice) as flusher:
            try:
                out = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    dump = self._start(self.argv, subprocess.DEVNULL, procs, errors, threads, stdout=out,
                                       launcher=self.launcher)
                finally:
                    os.close(out)
                with open(tmp, "rb", buffering=0) as source:
                    size = reader.submit(self._follow, dump, source, digest.update, hasher, flusher).result()
                for thread in threads:
                    thread.join()
                if dump.returncode != 0:
                    raise command_error(self.argv, dump.returncode, b"".join(errors[0]), self.what, self.secrets)
                sha = digest.hexdigest()
                store.commit_blob(tmp, sha)
                return sha, size
            except OSError as exc:
                raise_if_full(exc, "the dump into %s" % store.root)
                raise
            finally:
                _kill_unfinished(procs)
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def _follow(self, dump: subprocess.Popen, source, update: Callable[[memoryview], None],
                hasher: ThreadPoolExecutor, flusher: ThreadPoolExecutor) -> int:
        """Read the file ``dump`` writes until the dump exits; return its size.

        Each chunk is read into one of HASH_BACKLOG reused buffers (no allocation per chunk: fresh
        memory costs page faults), hashed by ``hasher``'s one worker (in order) and shown to the
        observer here; a buffer is read into again once its hash is done. Every WRITEBACK_BYTES,
        ``flusher`` starts writing what was read to disk, so that the store's final sync, which the
        raw client does not need, finds little left to write.
        """
        buffers = [bytearray(CHUNK) for _slot in range(HASH_BACKLOG)]
        hashing: Deque[Future] = deque()
        flushing: Optional[Future] = None
        size = count = 0
        while True:
            if len(hashing) == HASH_BACKLOG:
                hashing.popleft().result()  # frees the buffer read into next
            buffer = buffers[count % HASH_BACKLOG]
            finished = dump.poll() is not None  # before the read: then that read gets the rest
            length = source.readinto(buffer)
            if not length:
                if finished:
                    break
                time.sleep(FOLLOW_POLL_S)
                continue
            count += 1
            view = memoryview(buffer)[:length]
            hashing.append(hasher.submit(update, view))
            if size // WRITEBACK_BYTES != (size + length) // WRITEBACK_BYTES and (flushing is None or flushing.done()):
                flushing = flusher.submit(start_writeback, source.fileno(), 0, size)
            size += length
            self.tail.extend(view[-TAIL_BYTES:])
            del self.tail[:-TAIL_BYTES]
            if self.observer:
                self.observer(buffer, length)
        for job in hashing:
            job.result()
        if flushing is not None:
            flushing.result()  # done with the file before it is closed
        start_writeback(source.fileno(), 0, size)
        return size

    def _start(self, argv: List[str], stdin, procs, errors, threads, stdout=subprocess.PIPE,
               launcher: Sequence[str] = ()) -> subprocess.Popen:
        try:
            proc = subprocess.Popen([*launcher, *argv], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                    env=command_env(self.env))
        except FileNotFoundError as exc:
            raise not_installed(self.what, argv[0], exc) from exc
        sink: List[bytes] = []
        reader = threading.Thread(target=_drain, args=(proc.stderr, sink))
        reader.start()
        procs.append((argv, proc))
        errors.append(sink)
        threads.append(reader)
        return proc


def feed_pipeline(stages: Sequence[Sequence[str]], source_path: str, what: str,
                  env: Optional[Dict[str, str]] = None, secrets: Sequence[str] = ()) -> bytes:
    """Run ``stages`` connected by pipes, the first reading ``source_path``; fail if ANY stage fails.

    Returns the last stage's standard output.
    """
    procs: List[subprocess.Popen] = []
    errors: List[List[bytes]] = []
    threads: List[threading.Thread] = []
    output: List[bytes] = []
    with open(source_path, "rb") as source:
        try:
            for index, argv in enumerate(stages):
                last = index == len(stages) - 1
                try:
                    proc = subprocess.Popen(list(argv), stdin=procs[-1].stdout if procs else source,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=command_env(env))
                except FileNotFoundError as exc:
                    raise not_installed(what, argv[0], exc) from exc
                if procs:
                    procs[-1].stdout.close()
                procs.append(proc)
                sink: List[bytes] = []
                errors.append(sink)
                threads.append(threading.Thread(target=_drain, args=(proc.stderr, sink)))
                if last:
                    threads.append(threading.Thread(target=_drain, args=(proc.stdout, output)))
            for thread in threads:
                thread.start()
            codes = [proc.wait() for proc in procs]
            for thread in threads:
                thread.join()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    failed = [(argv, code, err) for argv, code, err in zip(stages, codes, errors) if code != 0]
    # a stage killed by SIGPIPE only lost its reader: the stage after it says why
    causes = [stage for stage in failed if stage[1] != -signal.SIGPIPE] or failed
    if causes:
        argv, code, err = causes[0]
        raise command_error(argv, code, b"".join(err), what, secrets)
    return b"".join(output)


def verify_blobs(store: Store, shas: Iterable[str], jobs: int = 1) -> List[dict]:
    """Re-hash blobs (in parallel threads: hashlib releases the GIL); return the problems."""
    unique = sorted(set(shas))

    def check(sha: str) -> Optional[dict]:
        actual = store.blob_hash(sha)
        if actual == sha:
            return None
        return {"object": sha, "actual": actual, "problem": "missing" if actual is None else "hash mismatch"}

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, 8))) as pool:
        return [problem for problem in pool.map(check, unique) if problem]


def hash_files(root: str, jobs: int = 1) -> Dict[str, str]:
    """Return {relative path: sha256} of every regular file under ``root``."""
    paths = []
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            paths.append(os.path.relpath(os.path.join(base, name), root))
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, 8))) as pool:
        shas = list(pool.map(lambda rel: sha256_file(os.path.join(root, rel)), paths))
    return dict(zip(paths, shas))


def safe_relpath(rel: str) -> str:
    """Refuse a stored relative path that would escape its directory."""
    norm = os.path.normpath(rel)
    if os.path.isabs(rel) or norm.startswith("..") or norm in ("", "."):
        raise IntegrityError("The backup lists the file %r, which escapes its directory; the manifest is "
                             "not trustworthy. Restore from another checkpoint." % rel)
    return norm


def compare_counts(expected: Dict[str, int], actual: Dict[str, int]) -> List[dict]:
    """Return the tables whose row counts differ (a table missing on one side counts as -1... None)."""
    diffs = []
    for table in sorted(set(expected) | set(actual)):
        want, have = expected.get(table), actual.get(table)
        if want != have:
            diffs.append({"table": table, "expected": want, "actual": have})
    return diffs
