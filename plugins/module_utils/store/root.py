# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's root: its layout, format document, cipher and writer lock (see docs/store-format.md).

The layers above it: objects (``store.objects``, ``store.writes``), manifests (``store.manifests``),
maintenance (``store.maintenance``); ``store.store.Store`` is the facade the rest of the collection uses.

The layout under the root: the ``store.store`` module docstring and docs/store-format.md. Everything
below the root is reached by path: ``check_root`` first refuses a root another user could change
(``common.nofollow.private_dir_problem``), so no link can have been planted there (docs/security.md).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Optional

from ..common.errors import EncryptionKeyError, NotAStore, RollbackError, UnsafePathError, UnsupportedFormat
from ..common.fsutil import atomic_write_json, ensure_private_dir, is_temp_name, read_json
from ..common.labels import escape
from ..common.nofollow import private_dir_problem
from ..common.lock import DEFAULT_TTL, FileLock
from .location import DEFAULT_STORE
from .manifest import FORMAT_VERSION

if TYPE_CHECKING:
    from .crypto import Cipher


def _crypto():
    """Return the cipher module, imported on first use: a plain store never needs it (module start-up time)."""
    from . import crypto  # pylint: disable=import-outside-toplevel

    return crypto


ENCRYPTED_FORMAT_VERSION = 2  # an encrypted store without packs
PACKED_FORMAT_VERSION = 3  # version 1 or 2 plus packs: what this code creates and upgrades to
STORE_FORMATS = (FORMAT_VERSION, ENCRYPTED_FORMAT_VERSION, PACKED_FORMAT_VERSION)
CHUNK = 1024 * 1024
SHA_RE = re.compile(r"^[0-9a-f]{64}\Z")
ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}\Z")
LAYOUT = ("objects", "packs", "checkpoints", "cache", "locks", "tmp")
_FOREIGN_ALLOWED = ("lost+found",)  # a store that is a file system of its own
_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


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


def read_up_to(fd: int, limit: int, expected: Optional[int] = None) -> bytes:
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


def object_context(sha: str) -> bytes:
    """The associated data an object is sealed with (its name)."""
    return b"object:" + sha.encode("ascii")


def manifest_context(checkpoint_id: str) -> bytes:
    """The associated data a manifest is sealed with (its checkpoint id)."""
    return b"manifest:" + checkpoint_id.encode("ascii")


class StoreRoot:
    """A store's directory: its layout, format document, cipher (from the encryption key) and writer lock."""

    def __init__(self, root: str = DEFAULT_STORE, encryption_key: Optional[str] = None) -> None:
        self.root = os.path.abspath(root)
        self._key = encryption_key or None
        self._cipher: Optional[Cipher] = None
        self._cipher_loaded = False
        self._root_checked = False

    @property
    def key(self) -> Optional[str]:
        """The encryption key the store was opened with (None for a plain store)."""
        return self._key

    def use_key(self, key: str, cipher: Cipher) -> None:
        """Use ``key`` and its cipher from now on (after a rekey)."""
        self._key, self._cipher, self._cipher_loaded = key, cipher, True

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
        unsafe = private_dir_problem(self.root)
        if unsafe:
            raise UnsafePathError(
                "Refusing the store %s: %s, so another user could plant links or files in it that this user would "
                "then follow. Nothing was read or changed. Give the store a directory only this user can change "
                "(chown it to this user, chmod 0700; every directory above it root's or this user's, not writable "
                "by others unless sticky)." % (self.root, unsafe), path=self.root)
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
            _crypto().check_secret(self._key)
            _crypto().require_cryptography("to create an encrypted store (AES-256-GCM, scrypt)")
        self.make_layout()
        if not self.exists():
            document: dict = {"format_version": PACKED_FORMAT_VERSION}
            if self._key:
                cipher = _crypto().Cipher.create(self._key)
                document["encryption"] = cipher.describe()
                self._cipher, self._cipher_loaded = cipher, True
            atomic_write_json(self.path("format"), document)
        self.check_format()

    def make_layout(self) -> None:
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

    def upgrade_to_packs(self) -> None:
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
        return _crypto().Cipher.load(self._key, encryption, self.root)

    def derive_key_soon(self) -> None:
        """Start deriving the key of an encrypted store (or of a store about to be created with a key) in a
        background thread (``crypto.derive_soon``), so that scrypt runs while the caller does other work.

        Opening the store checks the key as always and takes the result. Never raises: a store that cannot
        be opened is refused, with its message, when it is opened.
        """
        if not self._key:
            return
        try:
            document = self.read_format() if self.exists() else None
        except (RollbackError, OSError, ValueError):
            return
        encryption = document.get("encryption") if document else None
        if document is None or isinstance(encryption, dict):
            _crypto().derive_soon(self._key, encryption)

    @property
    def cipher(self) -> Optional[Cipher]:
        """The store's cipher, or None for a plain store (or one not created yet)."""
        if not self._cipher_loaded:
            if not self.exists():
                if self._key:
                    _crypto().check_secret(self._key)
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
            self.make_layout()
        return FileLock(self.path("locks", "store.lock"), owner, operation, ttl).acquire(timeout)
