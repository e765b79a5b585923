# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit log's hash chain: chained appends under a lock, a head file, and verification.

Each record carries ``seq`` (1, 2, ...), ``prev_hash`` (the ``hash`` of the record before it, or
:data:`GENESIS` for the first) and ``hash``: SHA-256 (hex) of the record's canonical JSON without
``hash`` (keys sorted, no whitespace, ASCII escapes). The head file ``<log>.head`` holds the
``seq`` and ``hash`` of the last record, replaced atomically after every append, so a truncated
tail is seen. Lines written before the chain existed (no ``hash``) stay readable; the chain starts
at the first record that has one.

Standard library only and no relative imports: the report command and the ``gitops-rollback``
CLI load this file on its own.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import stat
from typing import Any, Dict, Iterator, List, Optional, Tuple

GENESIS = "0" * 64
HEAD_SUFFIX = ".head"
CHAIN_FIELDS = ("seq", "prev_hash", "hash")
_TAIL_CHUNK = 1 << 16


class ChainError(Exception):
    """The log or its head file cannot be used; the message names the file and the way out."""


class UnsafeLogError(ChainError, OSError):
    """The log's path is a symbolic link or not a regular file: it is never written through."""


def canonical(record: Dict[str, Any]) -> bytes:
    """The canonical JSON of a record without its ``hash``: the bytes its hash is taken over."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=True).encode("ascii")


def record_hash(record: Dict[str, Any]) -> str:
    """SHA-256 (hex) of the record's canonical JSON."""
    return hashlib.sha256(canonical(record)).hexdigest()


def head_path(log_path: str) -> str:
    """Where the head of ``log_path`` is kept."""
    return log_path + HEAD_SUFFIX


def normalize(record: Dict[str, Any]) -> Dict[str, Any]:
    """The record as a reader will parse it back (non-JSON values become strings)."""
    return json.loads(json.dumps(record, default=str, allow_nan=True))


def seal(record: Dict[str, Any], seq: int, prev_hash: str) -> Dict[str, Any]:
    """Return the record with its place in the chain and its own hash."""
    sealed = {key: value for key, value in normalize(record).items() if key not in CHAIN_FIELDS}
    sealed["seq"] = seq
    sealed["prev_hash"] = prev_hash
    sealed["hash"] = record_hash(sealed)
    return sealed


# ------------------------------------------------------------------------------------------ writing

def append(path: str, record: Dict[str, Any]) -> Dict[str, Any]:
    """Append ``record`` chained to the last one; return the sealed record.

    Under an exclusive flock on the log: find the previous record (the head file or the log's last
    chained record, whichever is further on), append one fsynced line, then replace the head file.
    Two writers never chain to the same record.
    """
    path = os.path.expanduser(path)
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    fd = _open_log(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        seq, prev = _previous(fd, head_path(path))
        sealed = seal(record, seq + 1, prev)
        line = json.dumps(sealed, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"
        end = os.lseek(fd, 0, os.SEEK_END)
        if end and _last_byte(fd, end) != b"\n":
            line = "\n" + line  # a torn last line stays its own (damaged) line
        os.write(fd, line.encode("ascii"))
        os.fsync(fd)
        write_head(head_path(path), sealed["seq"], sealed["hash"])
        return sealed
    finally:
        os.close(fd)


def _open_log(path: str) -> int:
    """Open (or create, 0600) the log for appending; a symbolic link or a non-file there is refused, never followed."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeLogError("The audit log %s is a symbolic link; it is never followed. Remove the link, or give "
                                 "the real path as the audit log." % path) from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeLogError("The audit log %s is not a regular file. Move it away, or give another path." % path)
    return fd


def _last_byte(fd: int, end: int) -> bytes:
    return os.pread(fd, 1, end - 1)


def _previous(fd: int, head: str) -> Tuple[int, str]:
    """(seq, hash) to chain to: the head file's unless the log's last chained record is further.

    A damaged head file counts as none (an audit record is never lost to it; the next head is good).
    """
    last = last_chained(fd)
    try:
        recorded = read_head(head)
    except ChainError:
        recorded = None
    if recorded is not None and (last is None or recorded[0] >= last[0]):
        return recorded
    return last if last is not None else (0, GENESIS)


def last_chained(fd: int) -> Optional[Tuple[int, str]]:
    """(seq, hash) of the last record in the log that carries a chain, reading backwards."""
    for line in _lines_backwards(fd):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("seq"), int) and isinstance(record.get("hash"), str):
            return record["seq"], record["hash"]
        if isinstance(record, dict):
            return None  # a record from before the chain: the chain starts after it
    return None


def _lines_backwards(fd: int) -> Iterator[bytes]:
    end = os.lseek(fd, 0, os.SEEK_END)
    pending = b""
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        pending = os.pread(fd, end - start, start) + pending
        end = start
        parts = pending.split(b"\n")
        pending = parts[0]
        for part in reversed(parts[1:]):
            if part.strip():
                yield part
    if pending.strip():
        yield pending


def read_head(path: str) -> Optional[Tuple[int, str]]:
    """(seq, hash) from a head file; None when there is none; ChainError when it is damaged."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ChainError("The audit head file %s cannot be read: %s." % (path, exc)) from exc
    try:
        data = json.loads(text)
        seq, digest = data["seq"], data["hash"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ChainError("The audit head file %s is damaged (%s). Run 'gitops-rollback audit verify' on the log "
                         "to see where the chain stands." % (path, exc)) from exc
    if not isinstance(seq, int) or not isinstance(digest, str):
        raise ChainError("The audit head file %s is damaged (seq or hash of the wrong type)." % path)
    return seq, digest


def write_head(path: str, seq: int, digest: str) -> None:
    """Replace the head file atomically (temporary file, fsync, rename, fsync of the directory)."""
    directory = os.path.dirname(path) or "."
    temp = os.path.join(directory, ".%s.%s.tmp" % (os.path.basename(path), secrets.token_hex(4)))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (json.dumps({"seq": seq, "hash": digest}, sort_keys=True) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(temp, path)
    except OSError:
        os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ------------------------------------------------------------------------------------------ reading

class Verification:
    """What verifying a log found: its records, and every problem with the line it is on."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.records: List[Dict[str, Any]] = []
        self.problems: List[Dict[str, Any]] = []
        self.notes: List[str] = []
        self.legacy = 0
        self.chain_starts: Optional[int] = None  # line of the first chained record
        self.last: Optional[Tuple[int, str, int]] = None  # seq, hash, line of the last chained record

    @property
    def ok(self) -> bool:
        """True when no record is damaged, altered or missing."""
        return not self.problems

    @property
    def first_problem(self) -> Optional[Dict[str, Any]]:
        """The first broken, missing or damaged record, in log order."""
        return self.problems[0] if self.problems else None

    def problem(self, line: Optional[int], kind: str, message: str, seq: Optional[int] = None) -> None:
        self.problems.append({"line": line, "seq": seq, "kind": kind, "message": message})

    def summary(self) -> str:
        """One paragraph a person reads: verified, or the first problem and how many there are."""
        where = "%s: %d record(s)" % (self.path, len(self.records))
        start = self.start_text()
        if self.ok:
            return "%s, hash chain intact%s." % (where, start)
        more = " (and %d more problem(s))" % (len(self.problems) - 1) if len(self.problems) > 1 else ""
        return "%s%s. BROKEN: %s%s" % (where, start, self.problems[0]["message"], more)

    def start_text(self) -> str:
        if self.chain_starts is None:
            return ", none of them chained" if self.records else ""
        if self.legacy:
            return ("; lines 1-%d were written before the hash chain (not verifiable), the chain starts at line %d"
                    % (self.chain_starts - 1, self.chain_starts))
        return ""

    def as_dict(self, limit: int = 100) -> Dict[str, Any]:
        """The findings as data (the first ``limit`` problems; ``problem_count`` counts them all)."""
        return {"path": self.path, "ok": self.ok, "records": len(self.records), "legacy_records": self.legacy,
                "chain_starts_at_line": self.chain_starts, "last_seq": self.last[0] if self.last else None,
                "first_problem": self.first_problem, "problems": self.problems[:limit],
                "problem_count": len(self.problems), "notes": self.notes, "summary": self.summary()}


def _shown(raw: bytes, limit: int = 80) -> str:
    text = raw.decode("utf-8", "replace")
    return json.dumps(text[:limit] + ("..." if len(text) > limit else ""))


def verify(path: str, head: Optional[str] = None) -> Verification:
    """Read every line of the log, check the chain and the head file; never skip a line silently."""
    path = os.path.expanduser(path)
    result = Verification(path)
    expected_seq, expected_prev, prev_line = 1, GENESIS, None
    try:
        handle = open(path, "rb")
    except FileNotFoundError as exc:
        raise ChainError("The audit log %s does not exist. Give the log_path the playbooks use "
                         "(gitops_rollback_audit_log)." % path) from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            stripped = raw.rstrip(b"\r\n")
            if not stripped.strip():
                result.problem(number, "damaged", "line %d is empty" % number)
                continue
            try:
                record = json.loads(stripped.decode("utf-8"))
            except ValueError:
                record = None
            if not isinstance(record, dict):
                result.problem(number, "damaged", "line %d is damaged (not a JSON record): %s"
                               % (number, _shown(stripped)))
                continue
            result.records.append(record)
            if "hash" not in record and result.chain_starts is None:
                result.legacy += 1
                continue
            if result.chain_starts is None:
                result.chain_starts = number
            expected = _check(result, number, record, expected_seq, expected_prev, prev_line)
            expected_seq, expected_prev, prev_line = expected
    _check_head(result, head if head is not None else head_path(path))
    return result


def _check(result: Verification, number: int, record: Dict[str, Any], expected_seq: int, expected_prev: str,
           prev_line: Optional[int]) -> Tuple[int, str, Optional[int]]:
    """Check one chained record; return what the next one must carry."""
    seq, prev, stated = record.get("seq"), record.get("prev_hash"), record.get("hash")
    if not isinstance(seq, int) or not isinstance(prev, str) or not isinstance(stated, str):
        result.problem(number, "altered", "line %d has no valid seq/prev_hash/hash: it was written without the "
                       "chain or altered" % number)
        return expected_seq + 1, stated if isinstance(stated, str) else expected_prev, number
    actual = record_hash(record)
    if actual != stated:
        result.problem(number, "altered", "record #%d (line %d) was altered after it was written: its content "
                       "hashes to %s, not to its recorded hash %s" % (seq, number, actual[:16], stated[:16]), seq)
    elif seq > expected_seq:
        first = "#%d" % expected_seq if seq - 1 == expected_seq else "#%d-#%d" % (expected_seq, seq - 1)
        result.problem(number, "missing", "record %s missing before line %d (record #%d)%s"
                       % (first, number, seq, _after(prev_line)), expected_seq)
    elif seq < expected_seq:
        result.problem(number, "altered", "record #%d (line %d) is out of order: record #%d was expected here"
                       % (seq, number, expected_seq), seq)
    elif prev != expected_prev:
        what = "record #%d (line %d)" % (seq - 1, prev_line) if prev_line else "the genesis"
        result.problem(number, "altered", "record #%d (line %d) does not chain to %s: %s was altered or replaced"
                       % (seq, number, what, what if prev_line else "the start of the chain"), seq - 1 if prev_line else seq)
    result.last = (seq, stated, number)
    return seq + 1, stated, number


def _after(prev_line: Optional[int]) -> str:
    return ", after line %d" % prev_line if prev_line else ", at the start of the chain"


def _check_head(result: Verification, head: str) -> None:
    try:
        recorded = read_head(head)
    except ChainError as exc:
        result.problem(None, "head", str(exc))
        return
    if result.last is None:
        if recorded is not None:
            result.problem(None, "missing", "the head file %s records #%d but the log has no chained record: "
                           "records #1-#%d are missing" % (head, recorded[0], recorded[0]), 1)
        return
    seq, digest, line = result.last
    if recorded is None:
        result.problem(None, "head", "the head file %s is missing: a truncated end of the log would go unnoticed "
                       "(the next append writes it again)" % head)
    elif recorded[0] > seq:
        first = "#%d" % recorded[0] if recorded[0] == seq + 1 else "#%d-#%d" % (seq + 1, recorded[0])
        result.problem(None, "missing", "record %s missing at the end of the log, after line %d (record #%d): the "
                       "head file records #%d, so the log was truncated" % (first, line, seq, recorded[0]), seq + 1)
    elif recorded[0] == seq and recorded[1] != digest:
        result.problem(line, "altered", "record #%d (line %d), the last one, differs from the head file's hash %s: "
                       "it was altered or replaced" % (seq, line, recorded[1][:16]), seq)
    elif recorded[0] < seq:
        result.notes.append("the head file records #%d but the log goes on to #%d: a writer stopped between its "
                            "append and the head update (the next append updates it)" % (recorded[0], seq))
