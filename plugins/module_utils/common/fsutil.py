# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small file-system helpers: private directories, atomic writes, durable syncs."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import secrets
import stat
from typing import Iterable, Iterator, Union

from .errors import FULL_ERRNOS, StoreFullError

TEMP_MARK = ".grtmp-"


def write_all(fd: int, data) -> None:
    """Write every byte of ``data`` to ``fd``: one ``os.write`` as a rule, straight from ``data`` (a view of
    the rest only after a short write)."""
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view):]


def ensure_private_dir(path: str) -> None:
    """Create ``path`` (and parents) and make it mode 0700."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)


PRIVATE_FILE = 0o600  # every file of a store; directories are 0700


def create_private(path: str, flags: int = os.O_WRONLY) -> int:
    """Create ``path`` (it must not exist, nor be a link) with mode 0600; return its descriptor."""
    return os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)


def temp_name(path: str) -> str:
    """Return a unique temporary name beside ``path`` (same directory, same file system)."""
    head, tail = os.path.split(path)
    return os.path.join(head, ".%s%s%s" % (tail[:100], TEMP_MARK, secrets.token_hex(4)))


def is_temp_name(name: str) -> bool:
    """Tell whether a base name is one of our temporary files."""
    return name.startswith(".") and TEMP_MARK in name


# Opening a path only to flush it: never blocks (a FIFO put in a file's place would wait for a writer)
# and is not inherited by a child process.
FLUSH_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def fsync_path(path: str) -> None:
    """fsync a file or directory by path; anything else (a FIFO, a socket, a device) holds nothing to flush."""
    fd = os.open(path, FLUSH_OPEN_FLAGS)
    try:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind in (stat.S_IFREG, stat.S_IFDIR):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, data: bytes, mode: int = PRIVATE_FILE, exact_mode: bool = False) -> None:
    """Write ``data`` to ``path`` via temp file, fsync and rename; the old content stays on failure.

    The file gets ``mode`` less the umask, or exactly ``mode`` with ``exact_mode``.
    """
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            if exact_mode:
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise_if_full(exc, path)
        raise
    fsync_path(os.path.dirname(path) or ".")


def atomic_write_json(path: str, document: object) -> None:
    """Write a JSON document atomically (sorted keys, UTF-8)."""
    atomic_write_bytes(path, json.dumps(document, sort_keys=True, indent=1).encode("utf-8"))


def read_json(path: str) -> object:
    """Read a JSON document."""
    with open(path, "rb") as handle:
        return json.loads(handle.read().decode("utf-8"))


def raise_if_full(exc: OSError, where: str) -> None:
    """Turn ENOSPC/EDQUOT into StoreFullError with advice."""
    if exc.errno in FULL_ERRNOS:
        raise StoreFullError(
            "No space left while writing %s. Nothing was made visible and earlier "
            "checkpoints are intact; free space (or prune old checkpoints with "
            "gitops.rollback.checkpoint state=pruned) and run again." % where
        ) from exc


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def unlink_quietly(path: str) -> None:
    """Remove a file, ignoring a missing one."""
    _unlink_quietly(path)


_LIBC = None
SYNC_FILE_RANGE_WRITE = 2


def libc():
    """Return the C library (ctypes, loaded once), or False where it cannot be loaded."""
    global _LIBC  # pylint: disable=global-statement
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: no library search
        except OSError:
            name = ctypes.util.find_library("c")
            _LIBC = ctypes.CDLL(name, use_errno=True) if name else False
        if _LIBC and hasattr(_LIBC, "sync_file_range"):
            _LIBC.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        if _LIBC and hasattr(_LIBC, "renameat2"):
            _LIBC.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return _LIBC


RENAME_NOREPLACE = 1


def rename_new(src_dir_fd: int, name: str, dst_dir_fd: int) -> None:
    """Move entry ``name`` of one directory to the same name in another, never over an entry there: a
    FileExistsError then (``renameat2`` with RENAME_NOREPLACE; where the kernel or the file system lacks
    it, a look just before the rename)."""
    c_library = libc()
    if c_library and hasattr(c_library, "renameat2"):
        raw = os.fsencode(name)
        if c_library.renameat2(src_dir_fd, raw, dst_dir_fd, raw, RENAME_NOREPLACE) == 0:
            return
        error = ctypes.get_errno()
        if error not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(error, os.strerror(error), name)
    try:
        os.stat(name, dir_fd=dst_dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(name, name, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        return
    raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), name)


def sync_filesystem(where: Union[str, int]) -> None:
    """Flush the file system holding ``where`` (a path, or an open descriptor) to disk (syncfs, or
    sync where missing)."""
    c_library = libc()
    if c_library and hasattr(c_library, "syncfs"):
        owned = not isinstance(where, int)
        fd = os.open(where, FLUSH_OPEN_FLAGS) if owned else where
        try:
            if c_library.syncfs(fd) == 0:
                return
        finally:
            if owned:
                os.close(fd)
    os.sync()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a file range to disk without waiting (Linux sync_file_range; elsewhere nothing).

    The final fsync/syncfs then finds most pages already written instead of writing them all at once.
    """
    c_library = libc()
    if c_library and hasattr(c_library, "sync_file_range"):
        c_library.sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the lines (with their newline) of a stream of chunks."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        lines = rest.split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest
