# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The content-addressed checkpoint store (see docs/store-format.md).

Layout under the store root (mode 0700)::

    format                     {"format_version": 1}
    objects/<aa>/<sha256>      immutable blobs, named by the SHA-256 of their content
    checkpoints/<id>.json      manifests; a checkpoint exists once its manifest does
    cache/                     rebuildable stat caches
    locks/store.lock           the exclusive lock of writers
    tmp/                       temporary files, renamed into place
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import secrets
import socket
import time
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator, List, Optional, Set, Tuple

from ._errors import CheckpointNotFound, IntegrityError, UnsupportedFormat
from ._fsutil import (
    TEMP_MARK, atomic_write_json, ensure_private_dir, raise_if_full, read_json, sync_filesystem,
    temp_name, unlink_quietly,
)
from ._lock import DEFAULT_TTL, FileLock

FORMAT_VERSION = 1
DEFAULT_STORE = "/var/lib/gitops-rollback"
CHUNK = 1024 * 1024
SMALL_FILE = 256 * 1024
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$")


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


def _read_up_to(fd: int, limit: int) -> bytes:
    """Read ``fd`` to its end, or stop once more than ``limit`` bytes were read."""
    parts = []
    total = 0
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


class Store:
    """A checkpoint store rooted at a directory."""

    def __init__(self, root: str = DEFAULT_STORE) -> None:
        self.root = os.path.abspath(root)
        self._tmp_token = secrets.token_hex(4)
        self._tmp_count = itertools.count()

    # ----------------------------------------------------------------- layout
    def path(self, *parts: str) -> str:
        """Return a path inside the store."""
        return os.path.join(self.root, *parts)

    def exists(self) -> bool:
        """Tell whether the store has been initialised."""
        return os.path.isfile(self.path("format"))

    def init(self) -> None:
        """Create the store layout (idempotent), every directory mode 0700."""
        for sub in ("", "objects", "checkpoints", "cache", "locks", "tmp"):
            ensure_private_dir(self.path(sub))
        if not self.exists():
            atomic_write_json(self.path("format"), {"format_version": FORMAT_VERSION})
        self.check_format()

    def check_format(self) -> None:
        """Refuse a store written by a newer, unknown format."""
        version = read_json(self.path("format")).get("format_version")
        if version != FORMAT_VERSION:
            raise UnsupportedFormat(
                "Store %s has format_version %r; this collection reads version %d. Upgrade "
                "gitops.rollback to read it." % (self.root, version, FORMAT_VERSION)
            )

    def lock(self, owner: str, operation: str, timeout: float = 0.0, ttl: float = DEFAULT_TTL) -> FileLock:
        """Take the store's exclusive writer lock (use as a context manager)."""
        self.init()
        return FileLock(self.path("locks", "store.lock"), owner, operation, ttl).acquire(timeout)

    # ------------------------------------------------------------------ blobs
    def blob_path(self, sha: str) -> str:
        """Return where the blob named ``sha`` lives."""
        if not _SHA_RE.match(sha or ""):
            raise IntegrityError("%r is not a SHA-256 object name." % (sha,))
        return self.path("objects", sha[:2], sha)

    def has_blob(self, sha: str) -> bool:
        """Tell whether the blob is stored."""
        return os.path.exists(self.blob_path(sha))

    def put_stream(self, chunks: Iterable[bytes]) -> Tuple[str, int]:
        """Store the bytes of ``chunks``; return (sha256, size). Existing blobs are not rewritten."""
        digest = hashlib.sha256()
        size = 0
        tmp = temp_name(self.path("tmp", "blob"))
        try:
            with open(tmp, "xb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            sha = digest.hexdigest()
            self._commit_blob(tmp, sha)
        except OSError as exc:
            unlink_quietly(tmp)
            raise_if_full(exc, "a blob into %s" % self.root)
            raise
        return sha, size

    def put_file(self, path: str) -> Tuple[str, int]:
        """Store a file's content; return (sha256, size)."""
        sha, size, _written = self.put_file_counted(path)
        return sha, size

    def put_file_counted(self, path: str) -> Tuple[str, int, bool]:
        """Store a file's content; return (sha256, size, whether a new object was written).

        A file of up to SMALL_FILE bytes is read whole and hashed first, so content already
        stored is not written again; a larger one is hashed while it is copied. Safe to call
        from several threads (hashing and file I/O release the GIL).
        """
        fd = os.open(path, os.O_RDONLY)
        try:
            head = _read_up_to(fd, SMALL_FILE)
            if len(head) > SMALL_FILE:
                return self._put_fd(fd, head)
        finally:
            os.close(fd)
        sha = hashlib.sha256(head).hexdigest()
        if os.path.exists(self.blob_path(sha)):
            return sha, len(head), False
        tmp = self._tmp_path()
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                _write_all(out, head)
            finally:
                os.close(out)
            written = self._commit_blob(tmp, sha)
        except OSError as exc:
            unlink_quietly(tmp)
            raise_if_full(exc, "a blob into %s" % self.root)
            raise
        return sha, len(head), written

    def _put_fd(self, fd: int, head: bytes) -> Tuple[str, int, bool]:
        """Copy ``head`` and the rest of ``fd`` into a new object, hashing as it goes."""
        digest = hashlib.sha256(head)
        size = len(head)
        tmp = self._tmp_path()
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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
            finally:
                os.close(out)
            sha = digest.hexdigest()
            written = self._commit_blob(tmp, sha)
        except OSError as exc:
            unlink_quietly(tmp)
            raise_if_full(exc, "a blob into %s" % self.root)
            raise
        return sha, size, written

    def _tmp_path(self) -> str:
        """Return a fresh temporary name in tmp/ (no random syscall per object)."""
        return self.path("tmp", ".blob%s%d-%s-%d" % (TEMP_MARK, os.getpid(), self._tmp_token, next(self._tmp_count)))

    def put_bytes(self, data: bytes) -> str:
        """Store bytes; return their sha256."""
        return self.put_stream([data])[0]

    def _commit_blob(self, tmp: str, sha: str) -> bool:
        """Rename a finished temporary file into place; return False when the object existed."""
        final = self.blob_path(sha)
        if os.path.exists(final):
            os.unlink(tmp)
            return False
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
            os.rename(tmp, final)
        return True

    def read_blob(self, sha: str) -> bytes:
        """Return a blob's bytes after checking their hash."""
        with open(self.blob_path(sha), "rb") as handle:
            data = handle.read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            raise IntegrityError("Object %s is corrupted (content hashes to %s)." % (sha, actual))
        return data

    def iter_blob_lines(self, sha: str) -> Iterator[bytes]:
        """Yield a blob's lines, then check the hash of everything read."""
        digest = hashlib.sha256()
        with open(self.blob_path(sha), "rb") as handle:
            for line in handle:
                digest.update(line)
                yield line
        if digest.hexdigest() != sha:
            raise IntegrityError("Object %s is corrupted (content hashes to %s)." % (sha, digest.hexdigest()))

    def blob_hash(self, sha: str) -> Optional[str]:
        """Return the actual hash of a stored blob, or None if it is missing."""
        try:
            return sha256_file(self.blob_path(sha))
        except FileNotFoundError:
            return None

    def sync(self) -> None:
        """Make every object written so far durable (objects before manifests)."""
        sync_filesystem(self.root)

    # -------------------------------------------------------------- manifests
    def manifest_path(self, checkpoint_id: str) -> str:
        """Return the manifest file of a checkpoint id."""
        if not _ID_RE.match(checkpoint_id):
            raise IntegrityError("%r is not a checkpoint id." % (checkpoint_id,))
        return self.path("checkpoints", checkpoint_id + ".json")

    def ids(self) -> List[str]:
        """Return every checkpoint id, oldest first."""
        try:
            names = os.listdir(self.path("checkpoints"))
        except FileNotFoundError:
            return []
        return sorted(name[:-5] for name in names if name.endswith(".json") and _ID_RE.match(name[:-5]))

    def load(self, checkpoint_id: str) -> dict:
        """Load and check a manifest."""
        manifest = read_json(self.manifest_path(checkpoint_id))
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            raise UnsupportedFormat(
                "Manifest %s has format_version %r; this collection reads version %d."
                % (checkpoint_id, manifest.get("format_version") if isinstance(manifest, dict) else None,
                   FORMAT_VERSION)
            )
        return manifest

    def manifests(self) -> List[dict]:
        """Return every manifest, oldest first."""
        return [self.load(cid) for cid in self.ids()]

    def save(self, manifest: dict) -> None:
        """Write a manifest atomically after syncing the objects it references."""
        manifest["format_version"] = FORMAT_VERSION
        self.sync()
        try:
            atomic_write_json(self.manifest_path(manifest["id"]), manifest)
        except OSError as exc:
            raise_if_full(exc, "manifest %s" % manifest["id"])
            raise

    def new_manifest(self, label: Optional[str] = None, **fields: object) -> dict:
        """Return a fresh manifest dict (not yet saved)."""
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
            "Checkpoint %r is not in %s on %s (have: %s). Run gitops.rollback.checkpoint_info "
            "to list checkpoints." % (ref, self.root, socket.gethostname(), describe(manifests)),
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
        import json  # local: keeps the hot import list short

        for line in self.iter_blob_lines(sha):
            if line.strip():
                yield json.loads(line)

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
        self._clean_tmp()
        return removed, freed

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


def describe(manifests: List[dict], limit: int = 20) -> str:
    """Return 'id (label), ...' for an error message, newest first."""
    if not manifests:
        return "none"
    parts = [
        "%s%s" % (man.get("label") or man["id"], " (%s)" % man["id"] if man.get("label") else "")
        for man in reversed(manifests)
    ]
    more = len(parts) - limit
    return ", ".join(parts[:limit]) + (", and %d more" % more if more > 0 else "")


def prune(store: Store, keep: Optional[int], older_than: Optional[float], now: Optional[float] = None) -> List[str]:
    """Choose checkpoints to delete: beyond the newest ``keep`` or older than ``older_than`` seconds.

    The newest checkpoint is never chosen.
    """
    ids = store.ids()
    if not ids:
        return []
    now = time.time() if now is None else now
    chosen = set()
    candidates = ids[:-1]
    if keep is not None:
        chosen.update(ids[: max(len(ids) - max(keep, 1), 0)])
    if older_than is not None:
        for cid in candidates:
            if now - parse_time(store.load(cid)["created"]) > older_than:
                chosen.add(cid)
    return [cid for cid in candidates if cid in chosen]
