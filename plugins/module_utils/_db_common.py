# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plumbing shared by the database engines: streaming a dump into the store while hashing it,
adopting finished files as blobs, and feeding a stored dump to a client through a pipeline.

Every stage of every pipeline has its exit status checked; a stage that fails makes the whole
operation fail, whatever the other stages reported.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ._errors import CommandError, IntegrityError, RollbackError
from ._fsutil import raise_if_full
from ._process import _env, command_error
from ._store import CHUNK, Store, sha256_file

TAIL_BYTES = 4096
FOLLOW_POLL_S = 0.005  # how long to wait for a dump writing its file to write more
HASH_BACKLOG = 8  # chunks read but not hashed yet, at most

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
          observer: Optional[Callable[[bytes], None]] = None) -> None:
    """Copy ``source`` to ``target`` keeping the last bytes seen in ``tail`` (each chunk shown to ``observer``)."""
    try:
        for chunk in iter(lambda: source.read(CHUNK), b""):
            tail.extend(chunk)
            del tail[:-TAIL_BYTES]
            target.write(chunk)
            if observer:
                observer(chunk)
    except BaseException as exc:  # pylint: disable=broad-except
        failure.append(exc)
    finally:
        try:
            target.close()
        except OSError:
            pass


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
    ``observer`` (if any) sees every chunk of the uncompressed dump, in order. With ``into_file``
    (for a client that only appends to its standard output: pg_dump seeks back into a file) a
    plain store without compression lets the dump write the object's file itself.
    """

    def __init__(self, store: Store, argv: Sequence[str], what: str, env: Optional[Dict[str, str]] = None,
                 compressor: Optional[Sequence[str]] = None, secrets: Sequence[str] = (),
                 observer: Optional[Callable[[bytes], None]] = None, into_file: bool = False) -> None:
        self.store = store
        self.argv = list(argv)
        self.what = what
        self.env = env
        self.compressor = list(compressor) if compressor else None
        self.secrets = secrets
        self.observer = observer
        self.into_file = into_file
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
            dump = self._start(self.argv, subprocess.DEVNULL, procs, errors, threads)
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
                        self.observer(chunk)
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

        What the dump wrote is read right behind it from the page cache, hashed in one thread and
        shown to the observer in this one: no byte crosses a pipe and the dump never waits for
        this process. The file is opened for appending, so bytes already hashed cannot change.
        """
        store = self.store
        procs: List[Tuple[List[str], subprocess.Popen]] = []
        errors: List[List[bytes]] = []
        threads: List[threading.Thread] = []
        tmp = store.temp_object_path()
        digest = store.hasher()
        size = 0
        hashing: List[Future] = []
        with ThreadPoolExecutor(max_workers=1) as hasher:
            try:
                out = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    dump = self._start(self.argv, subprocess.DEVNULL, procs, errors, threads, stdout=out)
                finally:
                    os.close(out)
                with open(tmp, "rb", buffering=0) as source:
                    while True:
                        finished = dump.poll() is not None  # before the read: then that read gets the rest
                        chunk = source.read(CHUNK)
                        if not chunk:
                            if finished:
                                break
                            time.sleep(FOLLOW_POLL_S)
                            continue
                        hashing.append(hasher.submit(digest.update, chunk))  # one worker: in order
                        while len(hashing) > HASH_BACKLOG:
                            hashing.pop(0).result()
                        size += len(chunk)
                        self.tail.extend(chunk)
                        del self.tail[:-TAIL_BYTES]
                        if self.observer:
                            self.observer(chunk)
                    for job in hashing:
                        job.result()
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

    def _start(self, argv: List[str], stdin, procs, errors, threads, stdout=subprocess.PIPE) -> subprocess.Popen:
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                    env=_env(self.env))
        except FileNotFoundError as exc:
            raise CommandError("%s: the program %s is not installed or not on PATH." % (self.what, argv[0]),
                               cmd=argv[0], rc=None, stderr=str(exc)) from exc
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
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(env))
                except FileNotFoundError as exc:
                    raise CommandError("%s: the program %s is not installed or not on PATH." % (what, argv[0]),
                                       cmd=argv[0], rc=None, stderr=str(exc)) from exc
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
    for argv, code, err in zip(stages, codes, errors):
        if code != 0:
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
