# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Walking a managed tree in a fixed order and describing each entry.

Trees are walked depth-first, pre-order, names sorted, so a walk and a stored tree object
(JSON lines in the same order) can be merged in one pass with memory bounded by the depth.
"""

from __future__ import annotations

import errno
import fnmatch
import grp
import json
import os
import re
import pwd
import stat
from functools import lru_cache
from stat import S_ISDIR
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ..common.errors import IntegrityError, RollbackError, UnsafePathError
from ..common.fsutil import is_temp_name
from ..common import nofollow
from ..common.nofollow import DIR_FLAGS, lstat_at, open_root, race_point

FILE, DIR, LINK, FIFO = "file", "dir", "symlink", "fifo"
TYPES = (FILE, DIR, LINK, FIFO)
Key = Tuple[str, ...]


def path_key(rel: str) -> Key:
    """Return the sort key of a relative path: its components."""
    return tuple(rel.split("/"))


class Selection:
    """Include/exclude globs relative to a root; a glob without '/' also matches base names.

    A ``scope`` (relative paths below the root, none: the whole root) narrows it to those paths and
    what lies below them; the directories that lead to them are walked, and nothing else.
    """

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = (), scope: Sequence[str] = ()) -> None:
        self.include = list(include or [])
        self.exclude = list(exclude or [])
        self.scope = [path_key(check_relative(rel)) for rel in scope or ()]
        self.everything = not (self.include or self.exclude or self.scope)  # every entry is wanted

    def in_scope(self, key: Key) -> bool:
        """Tell whether an entry is a path of the scope or lies below one (always, without a scope)."""
        return not self.scope or any(key[: len(part)] == part for part in self.scope)

    def leads_to(self, key: Key) -> bool:
        """Tell whether an entry is a directory above a path of the scope (never, without a scope)."""
        return any(len(key) < len(part) and part[: len(key)] == key for part in self.scope)

    @staticmethod
    def _matches(rel: str, patterns: Sequence[str]) -> bool:
        if not patterns:
            return False
        base = rel.rsplit("/", 1)[-1]
        return any(
            fnmatch.fnmatchcase(rel, pat) or ("/" not in pat and fnmatch.fnmatchcase(base, pat))
            for pat in patterns
        )

    def excluded(self, rel: str) -> bool:
        """Tell whether an entry (and, for a directory, its subtree) is left out."""
        return self._matches(rel, self.exclude)

    def wanted(self, rel: str, is_dir: bool) -> bool:
        """Tell whether an entry belongs to the selection (directories always do unless excluded).

        With a scope, an entry on the way to a path of the scope is walked whatever its type, so a
        restore sees what stands where the checkpoint has a directory.
        """
        if self.excluded(rel):
            return False
        if not self.in_scope(path_key(rel)):
            return self.leads_to(path_key(rel))
        return is_dir or not self.include or self._matches(rel, self.include)


Walked = Tuple[str, os.stat_result, int, str]  # relative path, lstat, parent directory descriptor, name


def walk(root: str, selection: Selection, keep_temp: bool = False) -> Iterator[Tuple[str, os.stat_result]]:
    """Yield (relative path, lstat) for the selected entries under ``root`` in tree order."""
    root_fd = open_root(root)
    try:
        for rel, st, _dir_fd, _name in walk_at(root_fd, selection, keep_temp):
            yield rel, st
    finally:
        os.close(root_fd)


def walk_at(root_fd: int, selection: Selection, keep_temp: bool = False) -> Iterator[Walked]:
    """Yield (relative path, lstat, parent descriptor, name) for the selected entries below the
    directory ``root_fd``, in tree order, without following any link.

    Each directory is opened (``O_NOFOLLOW``) before it is yielded and its ``fstat`` is what is
    yielded, so what is described is what is descended into; a directory replaced by something
    else after it was listed is yielded as what it is now. The parent descriptor stays open until
    the next entry is asked for. Our own temporary files are skipped unless ``keep_temp``
    (restore treats them as extras).
    """
    yield from _walk_dir(root_fd, "", selection, keep_temp)


def _walk_dir(dir_fd: int, prefix: str, selection: Selection, keep_temp: bool) -> Iterator[Walked]:
    # A checkpoint's hottest loop: per entry an lstat (``lstat_at``, inlined), the selection only when it selects.
    everything = selection.everything
    for name in sorted(os.listdir(dir_fd)):
        if not keep_temp and is_temp_name(name):
            continue
        rel = prefix + name
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        is_dir = S_ISDIR(st.st_mode)
        if not everything and not selection.wanted(rel, is_dir):
            continue
        if nofollow.race_hook is not None:
            race_point("walk.listed", rel=rel)
        child = _open_listed_dir(dir_fd, name, rel, st) if is_dir else None
        if child is None:
            if is_dir:  # replaced since listed: describe what is there now
                try:
                    st = lstat_at(dir_fd, name)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode) or not selection.wanted(rel, False):
                    continue  # replaced again, by a directory: left to the next run
            yield rel, st, dir_fd, name
            continue
        try:
            yield rel, os.fstat(child), dir_fd, name
            yield from _walk_dir(child, rel + "/", selection, keep_temp)
        finally:
            os.close(child)


def _open_listed_dir(dir_fd: int, name: str, rel: str, st: os.stat_result) -> Optional[int]:
    """Open a listed directory; None when it is no longer a directory."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return None
        raise RollbackError("Cannot open directory %s of a managed tree: %s." % (rel, exc.strerror)) from exc


def kind_of(st: os.stat_result) -> Optional[str]:
    """Return the entry type of a stat result, or None for sockets and devices (never captured)."""
    if stat.S_ISREG(st.st_mode):
        return FILE
    if stat.S_ISDIR(st.st_mode):
        return DIR
    if stat.S_ISLNK(st.st_mode):
        return LINK
    if stat.S_ISFIFO(st.st_mode):
        return FIFO
    return None


def device_refusal(root: str, rel: str, st: os.stat_result) -> Optional[UnsafePathError]:
    """Return the refusal for a device node in a managed tree (None for anything else)."""
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        return None
    return UnsafePathError(
        "%s/%s is a %s device: checkpoints hold files, directories, symlinks and FIFOs and never open a "
        "device. Leave it out of the managed path (exclude: [%r]) or move it elsewhere, and run again."
        % (root, rel, "character" if stat.S_ISCHR(st.st_mode) else "block", rel), path="%s/%s" % (root, rel))


@lru_cache(maxsize=256)
def user_name(uid: int) -> Optional[str]:
    """Return the user name of a uid, or None."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=256)
def group_name(gid: int) -> Optional[str]:
    """Return the group name of a gid, or None."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


@lru_cache(maxsize=256)
def uid_for(name: Optional[str], recorded: int) -> int:
    """Return this host's uid for a user name, else the recorded uid."""
    try:
        return pwd.getpwnam(name).pw_uid if name else recorded
    except KeyError:
        return recorded


@lru_cache(maxsize=256)
def gid_for(name: Optional[str], recorded: int) -> int:
    """Return this host's gid for a group name, else the recorded gid."""
    try:
        return grp.getgrnam(name).gr_gid if name else recorded
    except KeyError:
        return recorded


def describe_entry(rel: str, st: os.stat_result, kind: str) -> dict:
    """Return the manifest record of an entry, without its content hash."""
    return {
        "path": rel,
        "type": kind,
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "owner": user_name(st.st_uid),
        "group": group_name(st.st_gid),
        "size": st.st_size if kind == FILE else 0,
        "mtime_ns": st.st_mtime_ns,
        "sha256": None,
        "target": None,
    }


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


_QUOTE = json.encoder.encode_basestring_ascii  # the C encoder json uses for a str
_LINE = ('{"gid":%d,"group":%s,"mode":%d,"mtime_ns":%d,"owner":%s,"path":%s,"sha256":%s,"size":%d,'
         '"target":%s,"type":%s,"uid":%d}\n')  # what _ENCODER writes for an entry of describe_entry's keys
_KEYS = frozenset(("gid", "group", "mode", "mtime_ns", "owner", "path", "sha256", "size", "target", "type", "uid"))


def _text_or_null(value: Optional[str]) -> str:
    return "null" if value is None else _QUOTE(value)


def encode_entry(entry: dict) -> bytes:
    """Return the JSON line of an entry (sorted keys, compact), formatted directly in the common case."""
    if entry.keys() != _KEYS:
        return (_ENCODER.encode(entry) + "\n").encode("utf-8")
    return (_LINE % (
        entry["gid"], _text_or_null(entry["group"]), entry["mode"], entry["mtime_ns"], _text_or_null(entry["owner"]),
        _QUOTE(entry["path"]), _text_or_null(entry["sha256"]), entry["size"], _text_or_null(entry["target"]),
        _QUOTE(entry["type"]), entry["uid"])).encode("ascii")


_FILE_LINE = ('{"gid":%d,"group":%s,"mode":%d,"mtime_ns":%d,"owner":%s,"path":%s,"sha256":"%s","size":%d,'
              '"target":null,"type":"file","uid":%d}\n')  # _LINE of a regular file with a content hash
_OWNERS: Dict[Tuple[int, int], Tuple[str, str]] = {}  # (uid, gid) -> the JSON text of its group and owner names


def _owner_texts(uid: int, gid: int) -> Tuple[str, str]:
    texts = (_text_or_null(group_name(gid)), _text_or_null(user_name(uid)))
    if len(_OWNERS) < 4096:
        _OWNERS[(uid, gid)] = texts
    return texts


def file_line(rel: str, st: os.stat_result, sha: str) -> bytes:
    """Return the tree line of a regular file with the content ``sha`` (an object name): ``encode_entry``
    of its record, formatted straight from its stat (once per unchanged file of a checkpoint)."""
    group, owner = _OWNERS.get((st.st_uid, st.st_gid)) or _owner_texts(st.st_uid, st.st_gid)
    return (_FILE_LINE % (st.st_gid, group, st.st_mode & 0o7777, st.st_mtime_ns, owner, _QUOTE(rel), sha,
                          st.st_size, st.st_uid)).encode("ascii")


_UNSAFE_PART = re.compile(r"(?:^|/)\.{0,2}(?:/|$)")  # an empty, "." or ".." component (or a leading /)


def check_relative(rel: object) -> str:
    """Refuse a manifest path that is not a plain relative path below its root."""
    if not isinstance(rel, str) or not rel:
        raise UnsafePathError("Manifest entry path %r is empty or not text." % (rel,))
    if "\x00" in rel or _UNSAFE_PART.search(rel):
        raise UnsafePathError(
            "Manifest entry %r escapes its managed root (absolute path, '..', '.' or empty part). "
            "The manifest is damaged or forged: restore from another checkpoint." % rel
        )
    return rel


class TreeValidator:
    """Checks, entry by entry, that a stored tree is ordered and cannot escape its root."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.last: Optional[Key] = None
        self.links: List[Key] = []

    def check(self, entry: dict) -> Key:
        """Validate one entry; return its key."""
        rel = check_relative(entry.get("path"))
        key = path_key(rel)
        if entry.get("type") not in TYPES:
            raise IntegrityError("Manifest entry %r has unknown type %r." % (rel, entry.get("type")))
        if self.last is not None and key <= self.last:
            raise IntegrityError("Manifest entries of %s are out of order at %r." % (self.root, rel))
        # Entries are in tree order (checked above), so everything below a symlink would come
        # right after it: comparing with the latest symlink is enough.
        link = self.links[-1] if self.links else None
        if link is not None and key[: len(link)] == link:
            raise UnsafePathError(
                "Manifest entry %r lies below the symlink %r in %s: writing it would follow the "
                "link out of the managed root. The manifest is damaged or forged."
                % (rel, "/".join(link), self.root)
            )
        if entry["type"] == LINK:
            self.links[:] = [key]
        elif entry["type"] == FILE and not isinstance(entry.get("sha256"), str):
            raise IntegrityError("Manifest file entry %r has no sha256." % rel)
        self.last = key
        return key
