# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reaching entries of a managed tree without following a link nobody planned.

A managed root is opened once, component by component from ``/`` with ``O_NOFOLLOW``; every
entry below it is then reached from its parent directory's descriptor (``dir_fd=``), never by a
path the kernel would resolve again. A component that became a symlink fails to open (ELOOP or
ENOTDIR) instead of being followed. Files are read, and their metadata changed, only through a
descriptor whose ``fstat`` shows the inode that was listed or planned. docs/store-format.md
("No-follow rules") states the rules.

Files the engine keeps beside what it manages (a release root's index and ``current`` link, its
shared paths, a SQLite database and its staging copy, Terraform's init marker) are reached the same
way by path: ``open_parent`` opens the directory above a path component by component, and
``read_file``, ``write_file``, ``link_file`` and ``remove_path`` work relative to it. Directories
the engine keeps for itself alone (a store, a repository) are not walked like this: ``private_dir_problem``
says whether another user could change anything in them, and they are refused when one could.

``race_hook`` is a test seam: tests set it to a function called at the named points below, to
change the tree between listing and reading or between plan and apply. It is None in production.
"""

from __future__ import annotations

import errno
import fcntl
import inspect
import os
import stat
import struct
import sys
from typing import Callable, List, Optional, Sequence, Tuple

from .errors import UnsafePathError
from .fsutil import TEMP_MARK, write_all

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a file must not hang the open; O_NOCTTY: never a controlling tty.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_REPLACED = (errno.ELOOP, errno.ENOTDIR)

# Named points: "walk.listed" (a walk listed an entry, before it is opened or read),
# "capture.read" (before a file's content is opened), "restore.planned" (every plan is made and
# every object verified, before the first change), "restore.meta" (before the metadata of an
# existing entry is set), "restore.rename" (before staged content is renamed into place).
race_hook: Optional[Callable[[str, dict], None]] = None


def race_point(point: str, **where: object) -> None:
    """Call the test hook at a named point (nothing happens in production)."""
    if race_hook is not None:
        race_hook(point, where)


def replaced_error(where: str, exc: OSError) -> UnsafePathError:
    """Return the refusal for a path component that is no longer the directory it was."""
    return UnsafePathError(
        "Refusing to follow %s: a component of it is a symlink or no longer a directory (%s), so it may lead "
        "outside the managed root. Nothing was written through it. Remove the link (or find who replaces "
        "entries while the module runs) and run again." % (where, os.strerror(exc.errno or 0)),
        path=where,
    )


def open_dir_at(dir_fd: int, name: str, where: str, create: bool = False, mode: int = 0o755) -> int:
    """Open the directory ``name`` below ``dir_fd`` without following a link (creating it when asked)."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as exc:
        if exc.errno in _REPLACED:
            raise replaced_error(where, exc) from None
        raise
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
    except FileExistsError:
        pass
    return open_dir_at(dir_fd, name, where)


def open_root(path: str, create: bool = False) -> int:
    """Open an absolute directory path component by component from ``/``, following no symlink."""
    fd = os.open("/", DIR_FLAGS)
    try:
        for part in [part for part in path.split("/") if part]:
            child = open_dir_at(fd, part, path, create)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


class DirCursor:
    """Descriptors of the directories on one path below a root, reused while entries come in
    tree order (consecutive entries mostly share their parents)."""

    def __init__(self, root_fd: int, root: str) -> None:
        self.root_fd = root_fd
        self.root = root
        self.names: List[str] = []
        self.fds: List[int] = []
        self.head: Optional[str] = ""  # the relative path of the directory the cursor is at (None: moving)

    def open(self, parts: Sequence[str], create: bool = False) -> int:
        """Return a descriptor of the directory ``root/parts`` (valid until the cursor moves)."""
        self.head = None
        common = 0
        limit = min(len(parts), len(self.names))
        while common < limit and self.names[common] == parts[common]:
            common += 1
        while len(self.names) > common:
            self.names.pop()
            os.close(self.fds.pop())
        for part in parts[common:]:
            parent = self.fds[-1] if self.fds else self.root_fd
            where = os.path.join(self.root, *self.names, part)
            self.fds.append(open_dir_at(parent, part, where, create, 0o700))
            self.names.append(part)
        self.head = "/".join(self.names)
        return self.fds[-1] if self.fds else self.root_fd

    def parent_of(self, rel: str) -> Tuple[int, str]:
        """Return (descriptor of the parent directory, base name) of a relative path."""
        head, _slash, name = rel.rpartition("/")
        if head == self.head:  # the common case in tree order: a sibling of the last entry
            return (self.fds[-1] if self.fds else self.root_fd), name
        return self.open(head.split("/") if head else ()), name

    def reset(self) -> None:
        """Close every descriptor but the root's."""
        self.open(())

    def close(self) -> None:
        """Close every descriptor, the root's too."""
        self.reset()
        os.close(self.root_fd)


def lstat_at(dir_fd: int, name: str) -> os.stat_result:
    """Return the lstat of ``name`` below ``dir_fd``."""
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)


def same_inode(first: os.stat_result, second: os.stat_result) -> bool:
    """Tell whether two stats describe the same inode of the same type."""
    return (first.st_ino == second.st_ino and first.st_dev == second.st_dev
            and stat.S_IFMT(first.st_mode) == stat.S_IFMT(second.st_mode))


FS_IOC_GETVERSION = (2 << 30) | (struct.calcsize("l") << 16) | (ord("v") << 8) | 1
"""``_IOR('v', 1, long)``: the inode's generation number (ext4, XFS, btrfs and others)."""


def inode_generation(fd: int) -> Optional[int]:
    """Return the generation number of the inode open at ``fd``, or None where the file system has none.

    An inode number freed and given to a new file comes with another generation, so inode number and
    generation together name one file for as long as it exists.
    """
    try:
        raw = fcntl.ioctl(fd, FS_IOC_GETVERSION, bytes(struct.calcsize("l")))
    except OSError:
        return None
    return int.from_bytes(raw, sys.byteorder)


def open_listed(dir_fd: int, name: str, dev: int, ino: int) -> Optional[int]:
    """Open a regular file for reading if it is still the inode that was listed; else None.

    Opening never follows a link and never blocks (a FIFO or device swapped in is closed
    unread); the caller looks again at what is there now.
    """
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None  # a link (ELOOP), gone, a socket (ENXIO), ...: not the file that was listed
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_ino != ino or st.st_dev != dev:
        os.close(fd)
        return None
    return fd


def read_small(dir_fd: int, name: str, limit: int) -> Optional[bytes]:
    """Return a regular file's content if it is at most ``limit`` bytes; None otherwise."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        data = os.read(fd, limit + 1)
        return data if len(data) <= limit else None
    finally:
        os.close(fd)


def remove_at(dir_fd: int, name: str, where: str) -> None:
    """Remove an entry (a directory with everything below it) without following a link."""
    for _attempt in range(8):
        try:
            st = lstat_at(dir_fd, name)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            try:
                os.unlink(name, dir_fd=dir_fd)
                return
            except FileNotFoundError:
                return
            except IsADirectoryError:
                continue  # became a directory: look again
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno in _REPLACED:
                continue  # became a link or a file: look again
            raise
        try:
            if not same_inode(os.fstat(child), st):
                continue
            with os.scandir(child) as scan:
                names = [entry.name for entry in scan]
            for inner in names:
                remove_at(child, inner, where + "/" + inner)
        finally:
            os.close(child)
        try:
            os.rmdir(name, dir_fd=dir_fd)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
    raise UnsafePathError("%s kept changing while it was being removed; nothing outside the managed root was "
                          "touched. Find what rewrites it and run again." % where, path=where)


# ------------------------------------------------------------------------------ by path, below a root
def open_parent(path: str, create: bool = False) -> Tuple[int, str]:
    """Open the directory holding ``path`` (absolute) following no link; return (its descriptor, base name)."""
    head, name = os.path.split(os.path.abspath(path))
    if not name:
        raise UnsafePathError("%s names no entry of a directory." % path, path=path)
    return open_root(head, create), name


def read_file(path: str, limit: int) -> bytes:
    """Return the content of the regular file ``path``, reached through no link, of at most ``limit`` bytes.

    Raises FileNotFoundError when it is missing, UnsafePathError when it (or a directory above it) is a
    link or it is not a regular file of at most ``limit`` bytes.
    """
    dir_fd, name = open_parent(path)
    try:
        st = lstat_at(dir_fd, name)
        data = read_small(dir_fd, name, limit) if stat.S_ISREG(st.st_mode) else None
    finally:
        os.close(dir_fd)
    if data is None:
        raise UnsafePathError("Refusing to read %s: it is not a regular file (a link, or something else), or it "
                              "is larger than %d bytes. Nothing was read through it." % (path, limit), path=path)
    return data


def write_file_at(dir_fd: int, name: str, data: bytes, mode: int, owner: Optional[Tuple[int, int]] = None) -> None:
    """Replace ``name`` below ``dir_fd`` with ``data`` atomically: a new file created beside it
    (``O_EXCL|O_NOFOLLOW``) gets exactly ``mode`` (and ``owner`` as (uid, gid)), is synced, and renamed
    over it; a link there is replaced, never written through."""
    tmp = ".%s%s%s" % (name[:100], TEMP_MARK, os.urandom(4).hex())
    try:
        fd = os.open(tmp, CREATE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            write_all(fd, data)
            if owner is not None:
                os.fchown(fd, owner[0], owner[1])
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def write_file(path: str, data: bytes, mode: int, create_dirs: bool = False) -> None:
    """Replace the file ``path`` with ``data`` atomically (see ``write_file_at``), following no link."""
    dir_fd, name = open_parent(path, create_dirs)
    try:
        write_file_at(dir_fd, name, data, mode)
    finally:
        os.close(dir_fd)


def link_file(path: str, target: str) -> None:
    """Point the symlink ``path`` at ``target`` atomically: a new link made beside it and renamed over it."""
    dir_fd, name = open_parent(path)
    tmp = ".%s%s%s" % (name[:100], TEMP_MARK, os.urandom(4).hex())
    try:
        os.symlink(target, tmp, dir_fd=dir_fd)
        try:
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError:
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_link(path: str) -> Optional[str]:
    """Return the target of the symlink ``path`` (None when nothing is there), reached through no link.

    Raises UnsafePathError when something other than a symlink is there.
    """
    try:
        dir_fd, name = open_parent(path)
    except FileNotFoundError:
        return None
    try:
        try:
            st = lstat_at(dir_fd, name)
        except FileNotFoundError:
            return None
        if not stat.S_ISLNK(st.st_mode):
            raise UnsafePathError("%s is not a symlink." % path, path=path, mode=st.st_mode)
        return os.readlink(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def remove_path(path: str) -> None:
    """Remove ``path`` (a directory with everything below it), following no link on the way."""
    try:
        dir_fd, name = open_parent(path)
    except FileNotFoundError:
        return
    try:
        remove_at(dir_fd, name, path)
    finally:
        os.close(dir_fd)


def plain_file_problem(path: str) -> Optional[str]:
    """Return why ``path`` is not a regular file reached through no link (None when it is one, or is missing
    below directories that are no links)."""
    try:
        dir_fd, name = open_parent(path)
    except FileNotFoundError:
        return None
    except UnsafePathError:
        return "a directory above it is a symlink or not a directory"
    try:
        st = lstat_at(dir_fd, name)
    except FileNotFoundError:
        return None
    finally:
        os.close(dir_fd)
    if stat.S_ISLNK(st.st_mode):
        return "it is a symlink"
    return None if stat.S_ISREG(st.st_mode) else "it is not a regular file"


# ------------------------------------------------------------------------- directories kept private
def private_dir_problem(path: str) -> Optional[str]:
    """Return why another user could change what lies in the directory ``path``, or None.

    Every directory from ``/`` down to it (links resolved: each one met must be such a directory too)
    must belong to root or to this process's user and be writable by nobody else, unless it has the
    sticky bit (then nobody else can rename or remove what is in it); ``path`` itself, when it exists,
    must belong to this user and be writable by nobody else. A missing ``path`` is judged by the
    directories above it (this user makes it 0700).
    """
    given = os.path.abspath(path)
    for prefix in _prefixes(given):  # a link another user owns could be made to point elsewhere
        try:
            st = os.lstat(prefix)
        except (FileNotFoundError, NotADirectoryError):
            break
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, os.geteuid()):
            return "the symlink %s on its path belongs to uid %d" % (prefix, st.st_uid)
    parts = _prefixes(os.path.realpath(given))
    for depth, current in enumerate(parts):
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None
        last = depth == len(parts) - 1
        problem = _dir_status_problem(st, last)
        if problem:
            return "%s %s" % ("it" if last else "the directory above it, %s," % current, problem)
    return None


def _prefixes(path: str) -> List[str]:
    parts = [part for part in path.split("/") if part]
    return ["/" + "/".join(parts[:depth]) for depth in range(len(parts) + 1)]


def _dir_status_problem(st: os.stat_result, last: bool) -> Optional[str]:
    euid = os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid not in (0, euid) or (last and st.st_uid != euid):
        return "belongs to uid %d, not to this user (uid %d)%s" % (st.st_uid, euid, "" if last else " or root")
    sticky = bool(st.st_mode & stat.S_ISVTX) and not last
    if st.st_mode & 0o002 and not sticky:
        return "is writable by every user (mode %04o)" % stat.S_IMODE(st.st_mode)
    if st.st_mode & 0o020 and not sticky and (last or st.st_gid not in (0, os.getegid())):
        return "is writable by its group (gid %d, mode %04o)" % (st.st_gid, stat.S_IMODE(st.st_mode))
    return None


def private_dir_rule_source() -> str:
    """Return the source of ``private_dir_problem`` and its helpers (the receiver runs them on a repository
    host, where the collection is not installed)."""
    functions = (_prefixes, _dir_status_problem, private_dir_problem)
    return "\n\n".join(inspect.getsource(function) for function in functions)
