# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The content-addressed checkpoint store (see docs/store-format.md).

Layout under the store root (mode 0700)::

    format                     {"format_version": 1}, or 2 with an "encryption" block
    objects/<aa>/<sha256>      immutable blobs, named by the SHA-256 of their content (encrypted
                               stores: HMAC-SHA256 under the store's naming key, see _crypto.py)
    packs/<name>.pack|.idx     small objects appended to pack files, found by their index (_packs.py)
    checkpoints/<id>.json      manifests; a checkpoint exists once its manifest does
    cache/                     rebuildable stat caches
    locks/store.lock           the exclusive lock of writers
    tmp/                       temporary files, renamed into place
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import io
import itertools
import json
import os
import re
import shutil
import secrets
import socket
import stat
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Iterator, List, Optional, Set, Tuple, Union

from ._crypto import Cipher, check_secret, require_cryptography
from ._errors import BadLabel, CheckpointNotFound, EncryptionKeyError, IntegrityError, NotAStore, RollbackError, UnsupportedFormat
from ._fsutil import (
    TEMP_MARK, atomic_write_bytes, atomic_write_json, create_private, ensure_private_dir, fsync_path, is_temp_name, raise_if_full,
    read_json,
    split_lines, start_writeback, sync_filesystem, unlink_quietly,
)
from ._labels import GRAMMAR, escape, is_label, label_problem, show_label
from ._lock import DEFAULT_TTL, FileLock
from ._manifest import FORMAT_VERSION, Manifest
from ._statcache import CacheReader, CacheWriter, cache_file
from ._retention import DAY, Policy, Snapshot, forgotten, plan
from ._packs import SMALL_OBJECT, Location, PackIndex, PackSet, PackWriter, read_range

ENCRYPTED_FORMAT_VERSION = 2  # an encrypted store without packs
PACKED_FORMAT_VERSION = 3  # version 1 or 2 plus packs: what this code creates and upgrades to
STORE_FORMATS = (FORMAT_VERSION, ENCRYPTED_FORMAT_VERSION, PACKED_FORMAT_VERSION)
DEFAULT_STORE = "/var/lib/gitops-rollback"
CHUNK = 1024 * 1024
_DECODE = json.JSONDecoder().decode  # one decoder for every line: trees are read in hot loops
SMALL_FILE = SMALL_OBJECT
LOOSE_SYNC_LIMIT = 8  # new loose objects made durable one by one at most; beyond, the whole file system is synced
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$")
LAYOUT = ("objects", "packs", "checkpoints", "cache", "locks", "tmp")
_FOREIGN_ALLOWED = ("lost+found",)  # a store that is a file system of its own
_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def utc_now() -> str:
    """Return the current UTC time as an ISO 8601 string with a Z suffix."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """Parse an ISO time written by :func:`utc_now` into epoch seconds."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def new_checkpoint_id(after: Optional[str] = None) -> str:
    """Return a new checkpoint id: UTC time to the millisecond, then 6 random hex digits.

    Ids sort by age; an id is made later than ``after`` (the newest existing one) even when
    the clock has not moved on.
    """
    moment = datetime.now(timezone.utc)
    if after:
        newest = datetime.strptime(after[:19], "%Y%m%dT%H%M%S.%f").replace(tzinfo=timezone.utc)
        moment = max(moment, newest + timedelta(milliseconds=1))
    return "%s.%03dZ-%s" % (moment.strftime("%Y%m%dT%H%M%S"), moment.microsecond // 1000, secrets.token_hex(3))


def sha256_file(path: str) -> str:
    """Return the SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_up_to(fd: int, limit: int, expected: Optional[int] = None) -> bytes:
    """Read ``fd`` to its end, or stop once more than ``limit`` bytes were read.

    With the ``expected`` size (from a stat), a file that still has it is read in one call: a
    read that returns less than it asked for has met the end of the file.
    """
    parts = []
    total = 0
    if expected is not None and expected < limit:
        first = os.read(fd, expected + 1)
        if len(first) <= expected:
            return first
        parts.append(first)
        total = len(first)
    while total <= limit:
        chunk = os.read(fd, limit + 1 - total)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _write_all(fd: int, data) -> None:
    """Write every byte of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def check_new_label(label: Optional[str], option: str = "label") -> Optional[str]:
    """Return ``label`` when it is None or in the label grammar; raise :class:`BadLabel` naming the problem.

    Only labels about to be written are checked: existing checkpoints keep whatever label they have.
    """
    problem = None if label is None else label_problem(label)
    if problem:
        raise BadLabel("%s=%s is refused: %s. A label is %s. Nothing was changed. Choose a label in that grammar "
                       "(a release tag such as v2.4.0)." % (option, escape(label), problem, GRAMMAR))
    return label


def safety_label(manifest: dict) -> str:
    """Return the label of the safety checkpoint taken before restoring ``manifest``: ``safety/<its label>``.

    An old checkpoint whose label is outside the grammar (or too long for the prefix) gives ``safety/<its id>``.
    """
    label = "safety/%s" % manifest.get("label")
    return label if manifest.get("label") and is_label(label) else "safety/%s" % manifest["id"]


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a directory")


def root_problem(root: str) -> Optional[str]:
    """Return why ``root`` cannot be a store's directory, or None (a store, nothing yet, or a half-made store).

    Only the last component is looked at without following links: parents are the administrator's.
    """
    try:
        status = os.lstat(root)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return "has a parent that is not a directory"
    if stat.S_ISLNK(status.st_mode):
        return "is a symbolic link (to %s)" % escape(os.readlink(root), 200)
    if not stat.S_ISDIR(status.st_mode):
        return "is %s" % _kind(status.st_mode)
    names = os.listdir(root)
    if "format" in names:
        format_status = os.lstat(os.path.join(root, "format"))
        if not stat.S_ISREG(format_status.st_mode):
            return "has a format file that is not a regular file (it is %s)" % _kind(format_status.st_mode)
        return None
    foreign = sorted(name for name in names
                     if name not in LAYOUT and name not in _FOREIGN_ALLOWED and not is_temp_name(name))
    if foreign:
        more = " and %d more" % (len(foreign) - 5) if len(foreign) > 5 else ""
        return "is a directory that is not a checkpoint store (it has no format file and holds %s%s)" % (
            ", ".join(escape(name) for name in foreign[:5]), more)
    return None


def summarize(manifest: dict) -> dict:
    """Return the listing fields of a manifest (no entries)."""
    keys = ("id", "label", "commit", "reason", "creator", "created", "host", "kind")
    summary = {key: manifest.get(key) for key in keys}
    summary["roots"] = [root["path"] for root in manifest.get("roots", [])]
    summary["entries"] = sum(root.get("entries", 0) for root in manifest.get("roots", []))
    summary["bytes"] = sum(root.get("bytes", 0) for root in manifest.get("roots", []))
    summary["components"] = [
        {"type": comp.get("type"), "name": comp.get("name")} for comp in manifest.get("components", [])
    ]
    return summary


def _object_context(sha: str) -> bytes:
    return b"object:" + sha.encode("ascii")


def _manifest_context(checkpoint_id: str) -> bytes:
    return b"manifest:" + checkpoint_id.encode("ascii")


class ObjectWriter:
    """Writes one new object from chunks (encrypting when the store is), named when committed."""

    def __init__(self, store: "Store") -> None:
        self.store = store
        self.digest = store.hasher()
        cipher = store.cipher
        self.sealer = cipher.sealer() if cipher else None
        self.size = 0
        self.tmp = store.temp_object_path()
        self.fd: Optional[int] = create_private(self.tmp)
        if self.sealer:
            self._out(self.sealer.header)

    def _out(self, data) -> None:
        try:
            _write_all(self.fd, data)
        except OSError as exc:
            self.abort()
            raise_if_full(exc, "a blob into %s" % self.store.root)
            raise

    def write(self, chunk) -> None:
        """Add the next chunk of content."""
        self.digest.update(chunk)
        self.size += len(chunk)
        self._out(self.sealer.update(chunk) if self.sealer else chunk)

    def commit(self) -> Tuple[str, int, bool]:
        """Name the object and rename it into place; return (name, size, whether it was new)."""
        sha = self.digest.hexdigest()
        if self.sealer:
            self._out(self.sealer.finish(_object_context(sha)))
        os.close(self.fd)
        self.fd = None
        try:
            written = self.store.commit_blob(self.tmp, sha)
        except OSError:
            unlink_quietly(self.tmp)
            raise
        return sha, self.size, written

    def abort(self) -> None:
        """Drop the unfinished object (idempotent)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        unlink_quietly(self.tmp)


class Store:
    """A checkpoint store rooted at a directory, encrypted when created with an ``encryption_key``."""

    def __init__(self, root: str = DEFAULT_STORE, encryption_key: Optional[str] = None) -> None:
        self.root = os.path.abspath(root)
        self._tmp_token = secrets.token_hex(4)
        self._tmp_count = itertools.count()
        self._key = encryption_key or None
        self._cipher: Optional[Cipher] = None
        self._cipher_loaded = False
        self.packs = PackSet(self.path("packs"), self.path("tmp"), self._upgrade_to_packs)
        self._fanouts: Optional[Set[str]] = None  # objects/ fan-out directories, read once
        self._unsynced: Optional[Set[str]] = set()  # loose objects placed since the last sync; None: not known
        self._unsynced_lock = threading.Lock()
        self._root_checked = False

    # ----------------------------------------------------------------- layout
    def path(self, *parts: str) -> str:
        """Return a path inside the store."""
        return os.path.join(self.root, *parts)

    def check_root(self) -> None:
        """Refuse a root that is not a store, nothing yet, or a half-made store; a store's format must be known.

        Every way into the store passes here first (exists, init, lock, ids, read_format), so
        nothing is read or created under a path that is a file, a link or another directory.
        """
        if self._root_checked:
            return
        problem = root_problem(self.root)
        if problem:
            raise NotAStore(
                "not a checkpoint store: %s %s. Nothing was read or changed. Point store_path at a checkpoint "
                "store, or at a new or empty directory for a new one (the default is %s)." % (
                    self.root, problem, DEFAULT_STORE))
        self._root_checked = True
        if os.path.lexists(self.path("format")):
            self._read_format_document()

    def exists(self) -> bool:
        """Tell whether the store has been initialised."""
        self.check_root()
        return os.path.isfile(self.path("format"))

    def init(self) -> None:
        """Create the store layout (idempotent), every directory mode 0700.

        A new store is encrypted when an encryption key was given (format_version 2).
        """
        if self._key and not self.exists():  # the key and the library are checked before anything is made
            check_secret(self._key)
            require_cryptography("to create an encrypted store (AES-256-GCM, scrypt)")
        self._make_layout()
        if not self.exists():
            document: dict = {"format_version": PACKED_FORMAT_VERSION}
            if self._key:
                cipher = Cipher.create(self._key)
                document["encryption"] = cipher.describe()
                self._cipher, self._cipher_loaded = cipher, True
            atomic_write_json(self.path("format"), document)
        self.check_format()

    def _make_layout(self) -> None:
        self.check_root()
        for sub in ("",) + LAYOUT:
            ensure_private_dir(self.path(sub))

    def read_format(self) -> dict:
        """Return the store's format document, refusing versions this code does not know."""
        self.check_root()
        return self._read_format_document()

    def _read_format_document(self) -> dict:
        try:
            document = read_json(self.path("format"))
        except (OSError, ValueError) as exc:
            raise NotAStore(
                "not a checkpoint store: %s has a format file that is not a readable JSON document (%s). Nothing "
                "was read or changed. Point store_path at a checkpoint store, or restore the store's format file "
                "from a copy." % (self.root, exc)) from exc
        version = document.get("format_version") if isinstance(document, dict) else None
        if version == ENCRYPTED_FORMAT_VERSION and not isinstance(document.get("encryption"), dict):
            version = "2 without an encryption block"
        if version not in STORE_FORMATS:
            raise UnsupportedFormat(
                "Store %s has format_version %r; this collection reads versions %s. Nothing was read or "
                "changed. Upgrade gitops.rollback to read it." % (self.root, version, ", ".join(map(str, STORE_FORMATS)))
            )
        return document

    def _upgrade_to_packs(self) -> None:
        """Record in ``format`` that the store has packs (version 3) before the first pack is written."""
        document = self.read_format()
        if document["format_version"] != PACKED_FORMAT_VERSION:
            document["format_version"] = PACKED_FORMAT_VERSION
            atomic_write_json(self.path("format"), document)

    def check_format(self) -> None:
        """Refuse a store of an unknown format, or an encrypted store without its key (or a wrong one)."""
        self._cipher_loaded = False
        self._cipher = self._load_cipher(self.read_format())
        self._cipher_loaded = True

    def _load_cipher(self, document: dict) -> Optional[Cipher]:
        encryption = document.get("encryption")
        if not encryption:
            if self._key:
                raise EncryptionKeyError(
                    "Store %s is not encrypted, but encryption_key was given. Nothing was changed. An existing "
                    "store cannot be encrypted in place: use a new store_path for an encrypted store, or "
                    "drop encryption_key." % self.root)
            return None
        if document.get("rekey"):
            raise EncryptionKeyError(
                "Store %s has an interrupted rekey (from key id %s to key id %s). Nothing was changed. Finish it: "
                "run gitops.rollback.checkpoint state=rekeyed with encryption_key (the old key) and "
                "new_encryption_key (the new one; omitted when the rekey only moves the store to the current "
                "scheme)." % (self.root, encryption.get("key_id"), document["rekey"].get("key_id")))
        if not self._key:
            raise EncryptionKeyError(
                "Store %s is encrypted (key id %s) and no encryption_key was given. Nothing was read or changed. "
                "Pass encryption_key (from Ansible Vault)." % (self.root, encryption.get("key_id")))
        return Cipher.load(self._key, encryption, self.root)

    @property
    def cipher(self) -> Optional[Cipher]:
        """The store's cipher, or None for a plain store (or one not created yet)."""
        if not self._cipher_loaded:
            if not self.exists():
                if self._key:
                    check_secret(self._key)
                return None
            self.check_format()
        return self._cipher

    @property
    def encrypted(self) -> bool:
        """Tell whether objects and manifests are encrypted."""
        return self.cipher is not None

    def lock(self, owner: str, operation: str, timeout: float = 0.0, ttl: float = DEFAULT_TTL,
             check_format: bool = True) -> FileLock:
        """Take the store's exclusive writer lock (use as a context manager).

        ``check_format=False`` skips the key check (for a rekey, which checks both keys itself).
        """
        if check_format:
            self.init()
        else:
            self._make_layout()
        return FileLock(self.path("locks", "store.lock"), owner, operation, ttl).acquire(timeout)

    # ---------------------------------------------------------------- naming
    def hasher(self):
        """Return a fresh hash object that computes object names (SHA-256, or HMAC when encrypted)."""
        cipher = self.cipher
        return cipher.hasher() if cipher else hashlib.sha256()

    def hash_bytes(self, data: bytes) -> str:
        """Return the object name of ``data`` (one call into OpenSSL: most objects are small)."""
        cipher = self.cipher
        if cipher is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.digest(cipher.name_key, data, "sha256").hex()  # what cipher.hasher() computes

    def hash_file(self, path: str) -> str:
        """Return the object name of a file's content."""
        if self.cipher is None:
            return sha256_file(path)
        digest = self.hasher()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def hash_fd(self, fd: int) -> str:
        """Return the object name of the content of an open file (read from its current offset)."""
        digest = self.hasher()
        for chunk in iter(lambda: os.read(fd, CHUNK), b""):
            digest.update(chunk)
        return digest.hexdigest()

    # ------------------------------------------------------------------ blobs
    def blob_path(self, sha: str) -> str:
        """Return where the blob named ``sha`` lives."""
        if not _SHA_RE.match(sha or ""):
            raise IntegrityError("%r is not a SHA-256 object name." % (sha,))
        return self.path("objects", sha[:2], sha)

    def has_blob(self, sha: str) -> bool:
        """Tell whether the blob is stored (as a file of its own or in a pack)."""
        return self.packs.has(sha) or self._loose_exists(sha)

    def _loose_exists(self, sha: str) -> bool:
        """Tell whether a blob is a file of its own; no stat at all when its fan-out directory is absent."""
        if self._fanouts is None:
            objects = self.path("objects")
            self._fanouts = set(os.listdir(objects)) if os.path.isdir(objects) else set()
        return sha[:2] in self._fanouts and os.path.exists(self.blob_path(sha))

    def _made_fanout(self, sha: str) -> None:
        if self._fanouts is not None:
            self._fanouts.add(sha[:2])

    def _packed(self, sha: str) -> Optional[Location]:
        """Return where a blob is packed, or None when it is a file of its own (or missing)."""
        if self._loose_exists(sha):
            return None
        return self.packs.find(sha)

    def _stored_bytes(self, sha: str) -> bytes:
        """Return a blob's bytes as stored (sealed in an encrypted store), unchecked."""
        location = self._packed(sha)
        if location is not None:
            return read_range(location)
        try:
            with open(self.blob_path(sha), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "No such object in the store", self.blob_path(sha)) from None

    def cache_reader(self, root: str) -> CacheReader:
        """Return the stat cache of a managed root for lookups (sealed in an encrypted store)."""
        cipher = self.cipher
        return CacheReader(self._cache_path(root), cipher)

    def cache_writer(self, root: str) -> CacheWriter:
        """Return a writer of a managed root's new stat cache (renamed into place on commit)."""
        cipher = self.cipher
        return CacheWriter(self._cache_path(root), cipher)

    def _cache_path(self, root: str) -> str:
        return cache_file(self.path("cache"), root, self.hasher if self.cipher else None)

    def object_location(self, sha: str) -> Location:
        """Return (file, offset, length) of a blob's stored bytes: its own file, or a range of a pack."""
        location = self._packed(sha)
        return location if location else (self.blob_path(sha), 0, os.path.getsize(self.blob_path(sha)))

    def object_size(self, sha: str) -> int:
        """Return how many bytes a blob takes in the store."""
        location = self._packed(sha)
        return location[2] if location else os.path.getsize(self.blob_path(sha))

    def object_writer(self) -> ObjectWriter:
        """Return a writer of one new object (write chunks, then commit or abort)."""
        try:
            return ObjectWriter(self)
        except OSError as exc:
            raise_if_full(exc, "a blob into %s" % self.root)
            raise

    def put_stream(self, chunks: Iterable[bytes]) -> Tuple[str, int]:
        """Store the bytes of ``chunks``; return (sha256, size). Existing blobs are not rewritten."""
        writer = self.object_writer()
        pending: List[bytes] = []
        buffered = 0
        try:
            for chunk in chunks:  # small chunks (tree lines) are batched: one write per 256 KiB
                pending.append(chunk)
                buffered += len(chunk)
                if buffered >= 262144:
                    writer.write(b"".join(pending))
                    pending, buffered = [], 0
            if pending:
                writer.write(b"".join(pending))
            sha, size, _written = writer.commit()
        except BaseException:
            writer.abort()
            raise
        return sha, size

    def put_file(self, path: str) -> Tuple[str, int]:
        """Store a file's content; return (sha256, size)."""
        sha, size, _written = self.put_file_counted(path)
        return sha, size

    def put_file_counted(self, path: str, size_hint: Optional[int] = None) -> Tuple[str, int, bool]:
        """Store a file's content; return (sha256, size, whether a new object was written).

        A file of up to SMALL_FILE bytes is read whole and hashed first, so content already
        stored is not written again, and a new one is appended to a pack; a larger one is hashed
        while it is copied into an object file of its own. Safe to call
        from several threads (hashing and file I/O release the GIL).
        """
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            return self.put_fd_counted(fd, size_hint)
        finally:
            os.close(fd)

    def put_fd_counted(self, fd: int, size_hint: Optional[int] = None) -> Tuple[str, int, bool]:
        """Store the content of an open file (from its current offset); as ``put_file_counted``."""
        head = _read_up_to(fd, SMALL_FILE, size_hint)
        if len(head) > SMALL_FILE:
            return self._put_fd(fd, head)
        sha = self.hash_bytes(head)
        cipher = self.cipher
        stored = (lambda: cipher.seal(head, _object_context(sha))) if cipher else (lambda: head)
        return sha, len(head), self.packs.add(sha, stored, self._loose_exists)

    def _put_fd(self, fd: int, head: bytes) -> Tuple[str, int, bool]:
        """Copy ``head`` and the rest of ``fd`` into a new object, hashing as it goes."""
        if self.cipher is not None:
            return self._put_fd_sealed(fd, head)
        digest = hashlib.sha256(head)
        size = len(head)
        tmp = self.temp_object_path()
        try:
            out = create_private(tmp)
            try:
                _write_all(out, head)
                buffer = bytearray(CHUNK)
                view = memoryview(buffer)
                while True:
                    count = os.readv(fd, [buffer])
                    if not count:
                        break
                    digest.update(view[:count])
                    _write_all(out, view[:count])
                    size += count
                start_writeback(out, 0, size)  # on its way to disk before the final sync waits for it
            finally:
                os.close(out)
            sha = digest.hexdigest()
            written = self.commit_blob(tmp, sha)
        except OSError as exc:
            unlink_quietly(tmp)
            raise_if_full(exc, "a blob into %s" % self.root)
            raise
        return sha, size, written

    def _put_fd_sealed(self, fd: int, head: bytes) -> Tuple[str, int, bool]:
        writer = self.object_writer()
        try:
            writer.write(head)
            for chunk in iter(lambda: os.read(fd, CHUNK), b""):
                writer.write(chunk)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def adopt_file(self, path: str, sha: Optional[str] = None) -> Tuple[str, int]:
        """Move a finished plain file into the store as an object; return (name, size).

        A plain store renames the file (no copy; ``sha`` is its SHA-256 when known). An encrypted
        store encrypts it into a new object and deletes the plain file.
        """
        if self.cipher is not None:
            name, size, _written = self.put_file_counted(path)
            unlink_quietly(path)
            return name, size
        sha = sha or sha256_file(path)
        size = os.path.getsize(path)
        os.chmod(path, 0o600)
        self.commit_blob(path, sha)
        return sha, size

    def temp_object_path(self) -> str:
        """Return a fresh temporary name in tmp/ (no random syscall per object)."""
        return self.path("tmp", ".blob%s%d-%s-%d" % (TEMP_MARK, os.getpid(), self._tmp_token, next(self._tmp_count)))

    def put_bytes(self, data: bytes) -> str:
        """Store bytes; return their sha256."""
        return self.put_stream([data])[0]

    def commit_blob(self, tmp: str, sha: str) -> bool:
        """Rename a finished temporary file into place; return False when the object existed.

        Either way the object is made durable by the next ``sync``: one that existed may have
        been placed by a run killed before its own sync.
        """
        final = self.blob_path(sha)
        if os.path.exists(final):
            os.unlink(tmp)
            self._placed(final)
            return False
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
            self._made_fanout(sha)
            os.rename(tmp, final)
        self._placed(final)
        return True

    def read_blob(self, sha: str) -> bytes:
        """Return a blob's bytes after checking their hash (and, encrypted, their authenticity)."""
        return self._content(sha, self._stored_bytes(sha))

    def _content(self, sha: str, data: bytes) -> bytes:
        """Return a blob's content from its stored bytes after checking them (see read_blob)."""
        cipher = self.cipher
        if cipher is not None:
            data = cipher.unseal(data, _object_context(sha), "Object %s" % sha)
        actual = self.hash_bytes(data)
        if actual != sha:
            raise IntegrityError("Object %s is corrupted (content hashes to %s)." % (sha, actual))
        return data

    def iter_blob_chunks(self, sha: str) -> Iterator[bytes]:
        """Yield a blob's content in chunks, then check the hash of everything read.

        An encrypted object's tag is verified before its first byte is yielded.
        """
        location = self._packed(sha)
        if location is not None:
            yield self._content(sha, read_range(location))
            return
        digest = self.hasher()
        cipher = self.cipher
        with open(self.blob_path(sha), "rb") as handle:
            if cipher is None:
                chunks: Iterable[bytes] = iter(lambda: handle.read(CHUNK), b"")
            else:
                size = os.fstat(handle.fileno()).st_size
                chunks = cipher.open_stream(handle, size, _object_context(sha), "Object %s" % sha)
            for chunk in chunks:
                digest.update(chunk)
                yield chunk
        if digest.hexdigest() != sha:
            raise IntegrityError("Object %s is corrupted (content hashes to %s)." % (sha, digest.hexdigest()))

    def iter_blob_lines(self, sha: str) -> Iterator[bytes]:
        """Yield a blob's lines, then check the hash of everything read."""
        if self.cipher is not None or self._packed(sha) is not None:
            yield from split_lines(self.iter_blob_chunks(sha))
            return
        digest = hashlib.sha256()
        with open(self.blob_path(sha), "rb") as handle:
            for line in handle:
                digest.update(line)
                yield line
        if digest.hexdigest() != sha:
            raise IntegrityError("Object %s is corrupted (content hashes to %s)." % (sha, digest.hexdigest()))

    def blob_hash(self, sha: str) -> Optional[str]:
        """Return the actual name of a stored blob's content, or None if it is missing.

        For an encrypted object that fails authentication the result says so instead of a hash.
        """
        digest = self.hasher()
        try:
            location = self._packed(sha)
            if location is not None:
                stored = read_range(location)
                if self.cipher is None:
                    return self.hash_bytes(stored)
                digest.update(self.cipher.unseal(stored, _object_context(sha), "Object %s" % sha))
                return digest.hexdigest()
            if self.cipher is None:
                return sha256_file(self.blob_path(sha))
            for chunk in self.iter_blob_chunks(sha):
                digest.update(chunk)
        except FileNotFoundError:
            return None
        except EncryptionKeyError:
            return "encrypted with another key"
        except IntegrityError as exc:
            if "corrupted" in str(exc):
                return digest.hexdigest()
            return "not authentic (MAC mismatch)"
        return digest.hexdigest()

    def export_blob(self, sha: str, target: str) -> None:
        """Write a blob's plain content to ``target`` (mode 0600); a plain store hard-links when it can."""
        if self.cipher is None and self._packed(sha) is None:
            try:
                os.link(self.blob_path(sha), target)
                return
            except OSError:
                shutil.copyfile(self.blob_path(sha), target)
                return
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_blob_chunks(sha):
                    out.write(chunk)
        except BaseException:
            unlink_quietly(target)
            raise

    def readable_path(self, sha: str, workdir: str) -> str:
        """Return a path holding a blob's plain content for an external program.

        A plain store returns the object file itself; a packed object is copied out, and an
        encrypted store decrypts it (verified), into ``workdir``, which the caller removes.
        """
        if self.cipher is None and self._packed(sha) is None:
            return self.blob_path(sha)
        target = os.path.join(workdir, "object-" + sha)
        if not os.path.exists(target):
            self.export_blob(sha, target)
        return target

    # ------------------------------------------------- content worker processes
    def enter_worker(self) -> None:
        """In a forked content worker: write packs of its own, not the parent's open one."""
        self.packs.detach()

    def finish_worker(self) -> List[str]:
        """In a content worker: finish its pack; return the index files it wrote."""
        self.packs.finish()
        return list(self.packs.finished)

    def abort_worker(self) -> None:
        """In a content worker: drop its unfinished pack."""
        self.packs.abort()

    def adopt_packs(self, names: List[str]) -> None:
        """Make what content workers stored findable (their packs, fan-out directories they made), and durable at the next sync."""
        self.packs.adopt(names)
        self._fanouts = None
        self._sync_everything()  # the workers' own loose objects are not listed here

    def _placed(self, path: str) -> None:
        """Note a loose object put in place, for the next ``sync``."""
        with self._unsynced_lock:
            if self._unsynced is not None:
                self._unsynced.add(path)
                if len(self._unsynced) > LOOSE_SYNC_LIMIT:
                    self._unsynced = None

    def _sync_everything(self) -> None:
        """Make the next ``sync`` flush the whole file system (what was written is not known one by one)."""
        with self._unsynced_lock:
            self._unsynced = None

    def sync(self) -> None:
        """Make every object written so far durable (objects before manifests); finishes the open pack.

        Packs make themselves durable when finished. A few new loose objects (a database dump)
        are fsynced one by one with their directories, so that the sync does not wait for what
        other processes left unwritten on the same file system; otherwise the file system is
        synced (syncfs).
        """
        self.packs.finish()
        with self._unsynced_lock:
            unsynced, self._unsynced = self._unsynced, set()
        if unsynced is None:
            sync_filesystem(self.root)
            return
        for path in sorted(unsynced):
            fsync_path(path)
        if unsynced:
            for directory in sorted({os.path.dirname(path) for path in unsynced}) + [self.path("objects")]:
                fsync_path(directory)

    # -------------------------------------------------------------- manifests
    def manifest_path(self, checkpoint_id: str) -> str:
        """Return the manifest file of a checkpoint id."""
        if not _ID_RE.match(checkpoint_id):
            raise IntegrityError("%r is not a checkpoint id." % (checkpoint_id,))
        return self.path("checkpoints", checkpoint_id + ".json")

    def ids(self) -> List[str]:
        """Return every checkpoint id, oldest first."""
        self.check_root()
        try:
            names = os.listdir(self.path("checkpoints"))
        except FileNotFoundError:
            return []
        return sorted(name[:-5] for name in names if name.endswith(".json") and _ID_RE.match(name[:-5]))

    def load(self, checkpoint_id: str) -> dict:
        """Load and check a manifest (decrypting and authenticating it in an encrypted store)."""
        path = self.manifest_path(checkpoint_id)
        cipher = self.cipher
        try:
            if cipher is None:
                manifest = read_json(path)
            else:
                with open(path, "rb") as handle:
                    plain = cipher.unseal(handle.read(), _manifest_context(checkpoint_id), "Manifest %s" % checkpoint_id)
                manifest = json.loads(plain.decode("utf-8"))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise IntegrityError("Manifest %s in %s is not valid JSON (%s): it is damaged. Delete it "
                                 "(checkpoint state=absent) and use another checkpoint." % (checkpoint_id, self.root, exc)) from exc
        Manifest.from_json(manifest, checkpoint_id)  # the checks of format and shape
        return manifest

    def load_manifest(self, checkpoint_id: str) -> Manifest:
        """Like :meth:`load`, typed."""
        return Manifest.from_json(self.load(checkpoint_id), checkpoint_id)

    def typed_manifests(self) -> List[Manifest]:
        """Return every manifest, typed, oldest first."""
        return [Manifest.from_json(document) for document in self.manifests()]

    def find_manifest(self, ref: str) -> Manifest:
        """Like :meth:`find`, typed."""
        return Manifest.from_json(self.find(ref))

    def find_manifest_optional(self, ref: Optional[str]) -> Optional[Manifest]:
        """Like :meth:`find_optional`, typed."""
        document = self.find_optional(ref)
        return None if document is None else Manifest.from_json(document)

    def manifests(self) -> List[dict]:
        """Return every manifest, oldest first."""
        return [self.load(cid) for cid in self.ids()]

    def save(self, manifest: Union[dict, Manifest]) -> None:
        """Write a manifest atomically after syncing the objects it references."""
        if isinstance(manifest, Manifest):
            manifest = manifest.to_json()
        manifest["format_version"] = FORMAT_VERSION
        self.sync()
        cipher = self.cipher
        try:
            if cipher is None:
                atomic_write_json(self.manifest_path(manifest["id"]), manifest)
            else:
                plain = json.dumps(manifest, sort_keys=True).encode("utf-8")
                atomic_write_bytes(self.manifest_path(manifest["id"]), cipher.seal(plain, _manifest_context(manifest["id"])))
        except OSError as exc:
            raise_if_full(exc, "manifest %s" % manifest["id"])
            raise

    def new_manifest(self, label: Optional[str] = None, **fields: object) -> dict:
        """Return a fresh manifest dict (not yet saved); its label must be in the label grammar."""
        check_new_label(label)
        manifest = {
            "format_version": FORMAT_VERSION,
            "id": new_checkpoint_id((self.ids() or [None])[-1]),
            "label": label,
            "created": utc_now(),
            "host": socket.gethostname(),
            "kind": "checkpoint",
            "roots": [],
            "components": [],
            "facts": {},
        }
        manifest.update({key: value for key, value in fields.items() if value is not None})
        return manifest

    def find(self, ref: str) -> dict:
        """Resolve a checkpoint id, unique id prefix or label (newest wins) to its manifest."""
        ids = self.ids()
        if ref in ids:
            return self.load(ref)
        manifests = [self.load(cid) for cid in ids]
        labelled = [man for man in manifests if man.get("label") == ref]
        if labelled:
            return labelled[-1]
        prefixed = [cid for cid in ids if len(ref) >= 8 and cid.startswith(ref)]
        if len(prefixed) == 1:
            return self.load(prefixed[0])
        raise CheckpointNotFound(
            "Checkpoint %s is not in %s on %s (have: %s). Run gitops.rollback.checkpoint_info "
            "to list checkpoints." % (escape(ref), self.root, socket.gethostname(), describe(manifests)),
            available=[summarize(man) for man in manifests],
        )

    def find_optional(self, ref: Optional[str]) -> Optional[dict]:
        """Like :meth:`find`, but None when ``ref`` is empty or unknown."""
        if not ref:
            return None
        try:
            return self.find(ref)
        except CheckpointNotFound:
            return None

    def attach_component(self, manifest: dict, component: dict) -> dict:
        """Add or replace (same type and name) a component of a manifest and save it."""
        key = (component.get("type"), component.get("name"))
        kept = [c for c in manifest.get("components", []) if (c.get("type"), c.get("name")) != key]
        manifest["components"] = kept + [component]
        self.save(manifest)
        return manifest

    def delete(self, checkpoint_id: str) -> None:
        """Remove a manifest (its objects go at the next collection)."""
        os.unlink(self.manifest_path(checkpoint_id))

    # ------------------------------------------------------------ references
    def referenced(self, manifest: dict) -> Iterator[str]:
        """Yield every object a manifest references (tree objects, file blobs, component blobs)."""
        for root in manifest.get("roots", []):
            tree = root.get("tree")
            if tree:
                yield tree
                for entry in self.iter_tree(tree):
                    if entry.get("sha256"):
                        yield entry["sha256"]
        for component in manifest.get("components", []):
            yield from component.get("blobs", [])

    def iter_tree(self, sha: str) -> Iterator[dict]:
        """Yield the entries of a tree object (JSON lines)."""
        for number, line in enumerate(self.iter_blob_lines(sha), 1):
            if not line.strip():
                continue
            try:
                entry = _DECODE(line.decode("utf-8"))
            except ValueError as exc:
                raise IntegrityError("Tree object %s line %d is not JSON (%s): the checkpoint is damaged. Restore "
                                     "from another checkpoint." % (sha, number, exc)) from exc
            if not isinstance(entry, dict):
                raise IntegrityError("Tree object %s line %d is not an entry (a JSON object): the checkpoint is "
                                     "damaged. Restore from another checkpoint." % (sha, number))
            yield entry

    def collect_garbage(self) -> Tuple[int, int]:
        """Delete objects no manifest references; return (objects, bytes) removed."""
        keep: Set[str] = set()
        for manifest in self.manifests():
            keep.update(self.referenced(manifest))
        removed = freed = 0
        objects = self.path("objects")
        for fan in sorted(os.listdir(objects)) if os.path.isdir(objects) else []:
            for name in os.listdir(os.path.join(objects, fan)):
                if name not in keep:
                    full = os.path.join(objects, fan, name)
                    freed += os.lstat(full).st_size
                    os.unlink(full)
                    removed += 1
        packed_removed, packed_freed = self._collect_packs(keep)
        self._clean_tmp()
        return removed + packed_removed, freed + packed_freed

    def _pack_files(self) -> Tuple[List[PackIndex], List[str]]:
        """Return the finished packs' indexes and the pack files that have no index (leftovers)."""
        self.packs.forget()
        indexes = self.packs.indexes()
        indexed = {index.pack_path for index in indexes}
        packs_dir = self.path("packs")
        names = os.listdir(packs_dir) if os.path.isdir(packs_dir) else []
        orphans = [os.path.join(packs_dir, name) for name in names
                   if name.endswith(".pack") and os.path.join(packs_dir, name) not in indexed]
        return indexes, orphans

    def _collect_packs(self, keep: Set[str]) -> Tuple[int, int]:
        """Delete packs with no referenced object and rewrite those with some; return (objects, bytes) removed.

        A rewritten pack's live objects are copied into a new pack whose index is written before
        the old pack and index are deleted, so every object stays findable at every moment.
        """
        indexes, orphans = self._pack_files()
        removed = freed = 0
        for orphan in orphans:
            freed += os.path.getsize(orphan)
            os.unlink(orphan)
        for index in indexes:
            entries = list(index.entries())
            live = [entry for entry in entries if entry[0] in keep]
            if len(live) == len(entries):
                continue
            if live:
                self._rewrite_pack(index, live, lambda _sha, stored: stored)
            removed += len(entries) - len(live)
            freed += sum(length for sha, _offset, length in entries if sha not in keep)
            self._drop_pack(index)
        self.packs.forget()
        return removed, freed

    def _rewrite_pack(self, index: PackIndex, entries: List[Tuple[str, int, int]],
                      transform: Callable[[str, bytes], bytes]) -> None:
        """Copy ``entries`` of a pack, through ``transform(name, stored bytes)``, into a new finished pack."""
        writer = PackWriter(self.path("tmp"), self.path("packs"))
        try:
            for sha, offset, length in entries:
                writer.add(bytes.fromhex(sha), transform(sha, read_range((index.pack_path, offset, length))))
            os.fsync(writer.fd)
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        fsync_path(self.path("packs"))

    @staticmethod
    def _drop_pack(index: PackIndex) -> None:
        """Delete a pack's index, then the pack."""
        os.unlink(index.pack_path[:-len(".pack")] + ".idx")
        os.unlink(index.pack_path)

    def _drop_caches(self) -> None:
        cache = self.path("cache")
        for name in os.listdir(cache) if os.path.isdir(cache) else []:
            unlink_quietly(os.path.join(cache, name))

    def _clean_tmp(self) -> None:
        tmp = self.path("tmp")
        for name in os.listdir(tmp) if os.path.isdir(tmp) else []:
            unlink_quietly(os.path.join(tmp, name))

    def _referenced_with_use(self, manifest: dict) -> Iterator[Tuple[str, str]]:
        """Yield (object, what uses it): a tree, a file path, or a component."""
        for root in manifest.get("roots", []):
            tree = root.get("tree")
            if tree:
                yield tree, "tree of %s" % root["path"]
                for entry in self.iter_tree(tree):
                    if entry.get("sha256"):
                        yield entry["sha256"], os.path.join(root["path"], entry["path"])
        for component in manifest.get("components", []):
            for sha in component.get("blobs", []):
                yield sha, "%s %s" % (component.get("type"), component.get("name"))

    def verify(self, manifest: dict) -> List[dict]:
        """Re-hash every object of a checkpoint; return the problems found (empty when sound).

        Each problem names the object, what uses it (a path or a component) and the hash found.
        """
        problems: List[dict] = []
        seen: Set[str] = set()
        try:
            uses = list(self._referenced_with_use(manifest))
        except IntegrityError as exc:
            return [{"object": None, "used_by": None, "actual": None, "problem": str(exc)}]
        for sha, used_by in uses:
            if sha in seen:
                continue
            seen.add(sha)
            actual = self.blob_hash(sha)
            if actual != sha:
                problems.append({
                    "object": sha, "used_by": used_by, "actual": actual,
                    "problem": "missing" if actual is None else "hash mismatch",
                })
        return problems

    # ----------------------------------------------------------------- rekey
    def rekey(self, new_key: str, progress: Optional[Callable[[str], None]] = None, dry_run: bool = False) -> dict:
        """Re-encrypt every object and manifest under ``new_key`` and the current scheme; resumable.

        The caller holds the store lock. The format file records the rekey in progress first
        (target scheme, key id and KDF parameters), then each pack, object and manifest is
        re-encrypted into a temporary file and renamed over the old one (atomic per file), then
        the format file names the new key. Files already under the target key are skipped, so a
        rerun after a kill finishes the work. Object names do not change: the naming key is
        kept, re-wrapped. ``new_key`` may be the current key: that moves a store of an older
        scheme to the current one. ``changed`` is False when there is nothing to do.
        """
        document = self.read_format()
        encryption = document.get("encryption")
        if not encryption:
            raise EncryptionKeyError("Store %s is not encrypted; there is nothing to rekey. Nothing was changed."
                                     % self.root)
        marker = document.get("rekey")
        if not marker and Cipher.is_key_of(new_key, encryption):
            return {"changed": False, "objects": 0, "manifests": 0, "key_id": encryption["key_id"],
                    "scheme": encryption["scheme"], "resumed": False}
        if not self._key:
            raise EncryptionKeyError("Rekeying store %s needs its current encryption_key." % self.root)
        old = Cipher.load(self._key, encryption, self.root)
        require_cryptography("to re-encrypt a store with AES-256-GCM")  # in check mode too: the real run would fail
        if dry_run:
            return {"changed": True, "objects": 0, "manifests": 0, "key_id": None, "scheme": Cipher.scheme,
                    "resumed": bool(marker)}
        new = Cipher.rekey_target(old, new_key, marker)
        if marker and new.key_id != marker.get("key_id"):
            raise EncryptionKeyError(
                "Store %s has an interrupted rekey to key id %s, but new_encryption_key has id %s. Rerun with the "
                "new key of that rekey." % (self.root, marker.get("key_id"), new.key_id))
        if not marker:
            document["rekey"] = new.marker()
            atomic_write_json(self.path("format"), document)
        counts = {"objects": 0, "manifests": 0}
        for index in self._pack_files()[0]:
            if self._reseal_pack(index, old, new):
                counts["objects"] += index.count
                if progress:
                    progress(index.pack_path)
        for path, context, kind in self._encrypted_files():
            if self._reseal(path, context, old, new):
                counts[kind] += 1
                if progress:
                    progress(path)
        self._drop_caches()  # sealed under the old key; rebuilt at the next checkpoint
        self._sync_everything()
        self.sync()
        atomic_write_json(self.path("format"), {"format_version": document["format_version"],
                                                "encryption": new.describe()})
        self._key, self._cipher, self._cipher_loaded = new_key, new, True
        return {"changed": True, "key_id": new.key_id, "scheme": new.scheme, "resumed": bool(marker), **counts}

    def _encrypted_files(self) -> Iterator[Tuple[str, bytes, str]]:
        objects = self.path("objects")
        for fan in sorted(os.listdir(objects)) if os.path.isdir(objects) else []:
            for name in sorted(os.listdir(os.path.join(objects, fan))):
                if _SHA_RE.match(name):
                    yield os.path.join(objects, fan, name), _object_context(name), "objects"
        for checkpoint_id in self.ids():
            yield self.manifest_path(checkpoint_id), _manifest_context(checkpoint_id), "manifests"

    def _reseal_pack(self, index: PackIndex, old: Cipher, new: Cipher) -> bool:
        """Re-encrypt a pack into a new one from ``old`` to ``new`` (skipped when already under ``new``)."""
        entries = list(index.entries())
        if not entries:
            return False
        first = read_range((index.pack_path, entries[0][1], entries[0][2]))
        if new.envelope_key_id(io.BytesIO(first)) == new.key_id:
            return False

        def reseal(sha: str, stored: bytes) -> bytes:
            context = _object_context(sha)
            return new.seal(old.unseal(stored, context, "Object %s" % sha), context)

        self._rewrite_pack(index, entries, reseal)
        self._drop_pack(index)
        self.packs.forget()
        return True

    def _reseal(self, path: str, context: bytes, old: Cipher, new: Cipher) -> bool:
        """Re-encrypt one file from ``old`` to ``new`` (skipped when already under ``new``)."""
        with open(path, "rb") as handle:
            key_id = new.envelope_key_id(handle)
            if key_id == new.key_id:
                return False
            handle.seek(0)
            size = os.fstat(handle.fileno()).st_size
            sealer = new.sealer()
            tmp = self.temp_object_path()
            try:
                with os.fdopen(create_private(tmp), "wb") as out:
                    out.write(sealer.header)
                    for chunk in old.open_stream(handle, size, context, path):
                        out.write(sealer.update(chunk))
                    out.write(sealer.finish(context))
                    out.flush()
                    os.fsync(out.fileno())
                os.rename(tmp, path)
            except OSError as exc:
                unlink_quietly(tmp)
                raise_if_full(exc, "re-encrypting %s" % path)
                raise
            except RollbackError:
                unlink_quietly(tmp)
                raise
        fsync_path(os.path.dirname(path))
        return True


def describe(manifests: List[dict], limit: int = 20) -> str:
    """Return 'id (label), ...' for an error message, newest first."""
    if not manifests:
        return "none"
    parts = ["%s (%s)" % (show_label(man["label"]), man["id"]) if man.get("label") else man["id"]
             for man in reversed(manifests)]
    more = len(parts) - limit
    return ", ".join(parts[:limit]) + (", and %d more" % more if more > 0 else "")


def prune(store: Store, keep: Optional[int], older_than: Optional[float], now: Optional[float] = None) -> List[str]:
    """Choose checkpoints to delete: beyond the newest ``keep`` or older than ``older_than`` seconds.

    The newest checkpoint is never chosen (the count/age policy of ``_retention``).
    """
    policy = Policy(keep=keep, older_than_days=None if older_than is None else older_than / DAY)
    return forgotten(plan(snapshots(store), policy, time.time() if now is None else now))


def snapshots(store: Store) -> List[Snapshot]:
    """Return what retention needs of every checkpoint (id, created, label, kind), oldest first."""
    return [Snapshot(man["id"], parse_time(man["created"]), man.get("label"), man.get("kind") or "checkpoint")
            for man in store.manifests()]
