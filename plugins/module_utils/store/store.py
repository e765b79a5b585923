# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The content-addressed checkpoint store (see docs/store-format.md): ``Store`` is the facade the rest of the
collection uses; the work is done by its layers, each with a narrow interface (as restic's repository, index
and snapshots):

- ``store.root.StoreRoot``: the directory, its layout, format document, cipher and writer lock;
- ``store.objects.Objects``: object names, lookup (loose files and packs) and verified reads;
- ``store.writes.ObjectWrites``: object writes (packs, loose files), content workers, ``sync``;
- ``store.manifests.Manifests``: one manifest per checkpoint, and the objects each references;
- ``store.maintenance.Maintenance``: garbage collection, verify, rekey.

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

import time
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, List, Optional, Set, Tuple, Union

from ..common.labels import is_label
from ..common.lock import DEFAULT_TTL, FileLock, utc_now
from .manifest import Manifest
from .packs import Location, PackSet
from .retention import DAY, Policy, Snapshot, forgotten, plan
from .root import CHUNK, DEFAULT_STORE, LAYOUT, StoreRoot, parse_time, sha256_file
from .manifests import Manifests, check_new_label, checkpoint_summary
from .objects import Objects
from .writes import SMALL_FILE, ObjectWriter, ObjectWrites

if TYPE_CHECKING:  # imported where used: a checkpoint of a plain store needs neither (module start-up)
    from .crypto import Cipher
    from .maintenance import Maintenance
    from .statcache import CacheReader, CacheWriter, KeptCache  # a capture and a restore plan import it (Objects)

SOUND_MEMORY = 1 << 20  # object names a store remembers as checked in this process (about 100 bytes each)

# The store's public names, used across the collection (the layers' own names stay in their files).
__all__ = ["CHUNK", "DEFAULT_STORE", "LAYOUT", "SMALL_FILE", "Store", "check_new_label", "parse_time", "prune", "safety_label",
           "sha256_file", "snapshots", "checkpoint_summary", "utc_now"]


def safety_label(manifest: dict) -> str:
    """Return the label of the safety checkpoint taken before restoring ``manifest``: ``safety/<its label>``.

    An old checkpoint whose label is outside the grammar (or too long for the prefix) gives ``safety/<its id>``.
    """
    label = "safety/%s" % manifest.get("label")
    return label if manifest.get("label") and is_label(label) else "safety/%s" % manifest["id"]


class Store:
    """A checkpoint store rooted at a directory, encrypted when created with an ``encryption_key``."""

    def __init__(self, root: str = DEFAULT_STORE, encryption_key: Optional[str] = None) -> None:
        self.base = StoreRoot(root, encryption_key)
        self.root = self.base.root
        self.objects = Objects(self.base)
        self.writes = ObjectWrites(self.objects)
        self.checkpoints = Manifests(self.base, self.objects, self.writes)
        self._maintenance: Optional[Maintenance] = None
        self._sound: Set[bytes] = set()  # objects this process checked against their names (see remember_sound)
        self.keep_caches = False  # True: captures leave the stat caches as they are (see cache_writer)

    @property
    def maintenance(self) -> Maintenance:
        """Garbage collection, verify and rekey (``store.maintenance``, imported on first use)."""
        if self._maintenance is None:
            from .maintenance import Maintenance  # pylint: disable=import-outside-toplevel

            self._maintenance = Maintenance(self.base, self.objects, self.writes, self.checkpoints)
        return self._maintenance

    @property
    def packs(self) -> PackSet:
        """The store's packs (``Objects.packs``)."""
        return self.objects.packs

    @property
    def cipher(self) -> Optional[Cipher]:
        """The store's cipher, or None for a plain store (or one not created yet)."""
        return self.base.cipher

    @property
    def encrypted(self) -> bool:
        """Tell whether objects and manifests are encrypted."""
        return self.base.encrypted

    # ------------------------------------------------------------ root, format, lock
    def path(self, *parts: str) -> str:
        """Return a path inside the store."""
        return self.base.path(*parts)

    def check_root(self) -> None:
        """Refuse a root that is not a store, nothing yet, or a half-made store; a store's format must be known."""
        return self.base.check_root()

    def exists(self) -> bool:
        """Tell whether the store has been initialised."""
        return self.base.exists()

    def init(self) -> None:
        """Create the store layout (idempotent), every directory mode 0700."""
        return self.base.init()

    def read_format(self) -> dict:
        """Return the store's format document, refusing versions this code does not know."""
        return self.base.read_format()

    def check_format(self) -> None:
        """Refuse a store of an unknown format, or an encrypted store without its key (or a wrong one)."""
        return self.base.check_format()

    def lock(self, owner: str, operation: str, timeout: float = 0.0, ttl: float = DEFAULT_TTL,
             check_format: bool = True) -> FileLock:
        """Take the store's exclusive writer lock (use as a context manager)."""
        return self.base.lock(owner, operation, timeout, ttl, check_format)

    # ------------------------------------------------------------ objects: names, lookup, reads
    def hasher(self):
        """Return a fresh hash object that computes object names (SHA-256, or HMAC when encrypted)."""
        return self.objects.hasher()

    def hash_bytes(self, data: bytes) -> str:
        """Return the object name of ``data`` (one call into OpenSSL: most objects are small)."""
        return self.objects.hash_bytes(data)

    def hash_file(self, path: str) -> str:
        """Return the object name of a file's content."""
        return self.objects.hash_file(path)

    def hash_fd(self, fd: int) -> str:
        """Return the object name of the content of an open file (read from its current offset)."""
        return self.objects.hash_fd(fd)

    def blob_path(self, sha: str) -> str:
        """Return where the blob named ``sha`` lives."""
        return self.objects.blob_path(sha)

    def remember_sound(self, names: Iterable[str]) -> None:
        """Remember objects this process has just checked against their names and placed (a fetch).

        A restore in the same run then need not hash them again; the store is writable by root
        only. At most SOUND_MEMORY names are kept (beyond that, objects are hashed again).
        """
        for name in names:
            if len(self._sound) >= SOUND_MEMORY:
                return
            self._sound.add(bytes.fromhex(name))

    def known_sound(self, name: str) -> bool:
        """Tell whether this process checked the object against its name (:meth:`remember_sound`)."""
        return bytes.fromhex(name) in self._sound

    def has_blob(self, sha: str) -> bool:
        """Tell whether the blob is stored (as a file of its own or in a pack)."""
        return self.objects.has_blob(sha)

    def cache_reader(self, root: str) -> CacheReader:
        """Return the stat cache of a managed root for lookups (sealed in an encrypted store)."""
        return self.objects.cache_reader(root)

    def cache_writer(self, root: str) -> Union[CacheWriter, KeptCache]:
        """Return a writer of a managed root's new stat cache (renamed into place on commit); with
        ``keep_caches`` one that writes nothing."""
        if self.keep_caches:
            from . import statcache  # pylint: disable=import-outside-toplevel  # see TYPE_CHECKING above
            return statcache.KeptCache()
        return self.objects.cache_writer(root)

    def object_location(self, sha: str) -> Location:
        """Return (file, offset, length) of a blob's stored bytes: its own file, or a range of a pack."""
        return self.objects.object_location(sha)

    def object_size(self, sha: str) -> int:
        """Return how many bytes a blob takes in the store."""
        return self.objects.object_size(sha)

    def read_blob(self, sha: str) -> bytes:
        """Return a blob's bytes after checking their hash (and, encrypted, their authenticity)."""
        return self.objects.read_blob(sha)

    def iter_blob_chunks(self, sha: str) -> Iterator[bytes]:
        """Yield a blob's content in chunks, then check the hash of everything read."""
        return self.objects.iter_blob_chunks(sha)

    def iter_blob_content(self, sha: str) -> Iterator[bytes]:
        """Yield a blob's content unhashed, for a caller that hashes it (an encrypted object is authenticated)."""
        return self.objects.iter_blob_content(sha)

    def iter_blob_lines(self, sha: str) -> Iterator[bytes]:
        """Yield a blob's lines, then check the hash of everything read."""
        return self.objects.iter_blob_lines(sha)

    def blob_hash(self, sha: str) -> Optional[str]:
        """Return the actual name of a stored blob's content, or None if it is missing."""
        return self.objects.blob_hash(sha)

    def export_blob(self, sha: str, target: str) -> None:
        """Write a blob's plain content to ``target`` (mode 0600); a plain store hard-links when it can."""
        return self.objects.export_blob(sha, target)

    def readable_path(self, sha: str, workdir: str) -> str:
        """Return a path holding a blob's plain content for an external program."""
        return self.objects.readable_path(sha, workdir)

    # ------------------------------------------------------------ objects: writes, workers, sync
    def object_writer(self) -> ObjectWriter:
        """Return a writer of one new object (write chunks, then commit or abort)."""
        return self.writes.object_writer()

    def put_stream(self, chunks: Iterable[bytes]) -> Tuple[str, int]:
        """Store the bytes of ``chunks``; return (sha256, size). Existing blobs are not rewritten."""
        return self.writes.put_stream(chunks)

    def put_file(self, path: str) -> Tuple[str, int]:
        """Store a file's content; return (sha256, size)."""
        return self.writes.put_file(path)

    def put_file_counted(self, path: str, size_hint: Optional[int] = None) -> Tuple[str, int, bool]:
        """Store a file's content; return (sha256, size, whether a new object was written)."""
        return self.writes.put_file_counted(path, size_hint)

    def put_fd_counted(self, fd: int, size_hint: Optional[int] = None) -> Tuple[str, int, bool]:
        """Store the content of an open file (from its current offset); as ``put_file_counted``."""
        return self.writes.put_fd_counted(fd, size_hint)

    def adopt_file(self, path: str, sha: Optional[str] = None) -> Tuple[str, int]:
        """Move a finished plain file into the store as an object; return (name, size)."""
        return self.writes.adopt_file(path, sha)

    def temp_object_path(self) -> str:
        """Return a fresh temporary name in tmp/ (no random syscall per object)."""
        return self.writes.temp_object_path()

    def put_bytes(self, data: bytes) -> str:
        """Store bytes; return their sha256."""
        return self.writes.put_bytes(data)

    def commit_blob(self, tmp: str, sha: str) -> bool:
        """Rename a finished temporary file into place; return False when the object existed."""
        return self.writes.commit_blob(tmp, sha)

    def enter_worker(self) -> None:
        """In a forked content worker: write packs of its own, not the parent's open one."""
        return self.writes.enter_worker()

    def finish_worker(self) -> List[str]:
        """In a content worker: finish its pack; return the index files it wrote."""
        return self.writes.finish_worker()

    def abort_worker(self) -> None:
        """In a content worker: drop its unfinished pack."""
        return self.writes.abort_worker()

    def adopt_packs(self, names: List[str]) -> None:
        """Make what content workers stored findable, and durable at the next sync."""
        return self.writes.adopt_packs(names)

    def sync(self) -> None:
        """Make every object written so far durable (objects before manifests); finishes the open pack."""
        return self.writes.sync()

    # ------------------------------------------------------------ manifests
    def manifest_path(self, checkpoint_id: str) -> str:
        """Return the manifest file of a checkpoint id."""
        return self.checkpoints.manifest_path(checkpoint_id)

    def ids(self) -> List[str]:
        """Return every checkpoint id, oldest first."""
        return self.checkpoints.ids()

    def load(self, checkpoint_id: str) -> dict:
        """Load and check a manifest (decrypting and authenticating it in an encrypted store)."""
        return self.checkpoints.load(checkpoint_id)

    def load_manifest(self, checkpoint_id: str) -> Manifest:
        """Like :meth:`load`, typed."""
        return self.checkpoints.load_manifest(checkpoint_id)

    def typed_manifests(self) -> List[Manifest]:
        """Return every manifest, typed, oldest first."""
        return self.checkpoints.typed_manifests()

    def find_manifest(self, ref: str) -> Manifest:
        """Like :meth:`find`, typed."""
        return self.checkpoints.find_manifest(ref)

    def find_manifest_optional(self, ref: Optional[str]) -> Optional[Manifest]:
        """Like :meth:`find_optional`, typed."""
        return self.checkpoints.find_manifest_optional(ref)

    def manifests(self) -> List[dict]:
        """Return every manifest, oldest first."""
        return self.checkpoints.manifests()

    def save(self, manifest: Union[dict, Manifest]) -> None:
        """Write a manifest atomically after syncing the objects it references."""
        return self.checkpoints.save(manifest)

    def new_manifest(self, label: Optional[str] = None, **fields: object) -> dict:
        """Return a fresh manifest dict (not yet saved); its label must be in the label grammar."""
        return self.checkpoints.new_manifest(label, **fields)

    def find(self, ref: str) -> dict:
        """Resolve a checkpoint id, unique id prefix or label (newest wins) to its manifest."""
        return self.checkpoints.find(ref)

    def find_optional(self, ref: Optional[str]) -> Optional[dict]:
        """Like :meth:`find`, but None when ``ref`` is empty or unknown."""
        return self.checkpoints.find_optional(ref)

    def attach_component(self, manifest: dict, component: dict) -> dict:
        """Add or replace (same type and name) a component of a manifest and save it."""
        return self.checkpoints.attach_component(manifest, component)

    def delete(self, checkpoint_id: str) -> None:
        """Remove a manifest (its objects go at the next collection)."""
        return self.checkpoints.delete(checkpoint_id)

    def referenced(self, manifest: dict) -> Iterator[str]:
        """Yield every object a manifest references (tree objects, file blobs, component blobs)."""
        return self.checkpoints.referenced(manifest)

    def iter_tree(self, sha: str) -> Iterator[dict]:
        """Yield the entries of a tree object (JSON lines)."""
        return self.checkpoints.iter_tree(sha)

    # ------------------------------------------------------------ maintenance
    def collect_garbage(self) -> Tuple[int, int]:
        """Delete objects no manifest references; return (objects, bytes) removed."""
        return self.maintenance.collect_garbage()

    def verify(self, manifest: dict) -> List[dict]:
        """Re-hash every object of a checkpoint; return the problems found (empty when sound)."""
        return self.maintenance.verify(manifest)

    def rekey(self, new_key: str, progress: Optional[Callable[[str], None]] = None, dry_run: bool = False) -> dict:
        """Re-encrypt every object and manifest under ``new_key`` and the current scheme; resumable."""
        return self.maintenance.rekey(new_key, progress, dry_run)


def prune(store: Store, keep: Optional[int], older_than: Optional[float], now: Optional[float] = None) -> List[str]:
    """Choose checkpoints to delete: beyond the newest ``keep`` or older than ``older_than`` seconds.

    The newest checkpoint is never chosen (the count/age policy of ``store.retention``).
    """
    policy = Policy(keep=keep, older_than_days=None if older_than is None else older_than / DAY)
    return forgotten(plan(snapshots(store), policy, time.time() if now is None else now))


def snapshots(store: Store) -> List[Snapshot]:
    """Return what retention needs of every checkpoint (id, created, label, kind), oldest first."""
    return [Snapshot(man["id"], parse_time(man["created"]), man.get("label"), man.get("kind") or "checkpoint")
            for man in store.manifests()]
