# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's maintenance: garbage collection, verify, rekey (see docs/store-format.md)."""

from __future__ import annotations

import io
import os
from typing import Callable, Iterator, List, Optional, Set, Tuple

from .crypto import Cipher, require_cryptography
from ..common.errors import EncryptionKeyError, IntegrityError, RollbackError
from ..common.fsutil import atomic_write_json, create_private, fsync_path, is_temp_name, raise_if_full, unlink_quietly
from .packs import PackIndex, PackWriter, read_range
from .root import SHA_RE, StoreRoot, manifest_context, object_context
from .manifests import Manifests
from .objects import Objects
from .statcache import CacheReader
from .writes import ObjectWrites


class Maintenance:
    """What keeps a store sound and small: garbage collection (loose objects and packs), verification of a
    checkpoint's objects, and re-encryption under a new key (rekey)."""

    def __init__(self, base: StoreRoot, objects: Objects, writes: ObjectWrites, checkpoints: Manifests) -> None:
        self.base = base
        self.objects = objects
        self.writes = writes
        self.checkpoints = checkpoints

    def collect_garbage(self) -> Tuple[int, int]:
        """Delete objects no manifest references; return (objects, bytes) removed."""
        keep: Set[str] = set()
        for manifest in self.checkpoints.manifests():
            keep.update(self.checkpoints.referenced(manifest))
        self._drop_caches(lambda hashes: any(sha not in keep for sha in hashes))  # before any object goes
        removed = freed = 0
        objects = self.base.path("objects")
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
        self.objects.packs.forget()
        indexes = self.objects.packs.indexes()
        indexed = {index.pack_path for index in indexes}
        packs_dir = self.base.path("packs")
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
        self.objects.packs.forget()
        return removed, freed

    def _rewrite_pack(self, index: PackIndex, entries: List[Tuple[str, int, int]],
                      transform: Callable[[str, bytes], bytes]) -> None:
        """Copy ``entries`` of a pack, through ``transform(name, stored bytes)``, into a new finished pack."""
        writer = PackWriter(self.base.path("tmp"), self.base.path("packs"))
        try:
            for sha, offset, length in entries:
                writer.add(bytes.fromhex(sha), transform(sha, read_range((index.pack_path, offset, length))))
            os.fsync(writer.fd)
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        fsync_path(self.base.path("packs"))

    @staticmethod
    def _drop_pack(index: PackIndex) -> None:
        """Delete a pack's index, then the pack."""
        os.unlink(index.pack_path[:-len(".pack")] + ".idx")
        os.unlink(index.pack_path)

    def _drop_caches(self, naming: Optional[Callable[[Iterator[Optional[str]]], bool]] = None) -> None:
        """Delete the stat caches (those whose hashes ``naming`` is true of, when given)."""
        cache = self.base.path("cache")
        for name in os.listdir(cache) if os.path.isdir(cache) else []:
            path = os.path.join(cache, name)
            if naming is not None and not is_temp_name(name):
                reader = CacheReader(path, self.objects.cipher)
                try:
                    if not naming(reader.hashes()):
                        continue
                finally:
                    reader.close()
            unlink_quietly(path)

    def _clean_tmp(self) -> None:
        tmp = self.base.path("tmp")
        for name in os.listdir(tmp) if os.path.isdir(tmp) else []:
            unlink_quietly(os.path.join(tmp, name))

    def _referenced_with_use(self, manifest: dict) -> Iterator[Tuple[str, str]]:
        """Yield (object, what uses it): a tree, a file path, or a component."""
        for root in manifest.get("roots", []):
            tree = root.get("tree")
            if tree:
                yield tree, "tree of %s" % root["path"]
                for entry in self.checkpoints.iter_tree(tree):
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
            actual = self.objects.blob_hash(sha)
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
        document = self.base.read_format()
        encryption = document.get("encryption")
        if not encryption:
            raise EncryptionKeyError("Store %s is not encrypted; there is nothing to rekey. Nothing was changed."
                                     % self.base.root)
        marker = document.get("rekey")
        if not marker and Cipher.is_key_of(new_key, encryption):
            return {"changed": False, "objects": 0, "manifests": 0, "key_id": encryption["key_id"],
                    "scheme": encryption["scheme"], "resumed": False}
        if not self.base.key:
            raise EncryptionKeyError("Rekeying store %s needs its current encryption_key." % self.base.root)
        old = Cipher.load(self.base.key, encryption, self.base.root)
        require_cryptography("to re-encrypt a store with AES-256-GCM")  # in check mode too: the real run would fail
        if dry_run:
            return {"changed": True, "objects": 0, "manifests": 0, "key_id": None, "scheme": Cipher.scheme,
                    "resumed": bool(marker)}
        new = Cipher.rekey_target(old, new_key, marker)
        if marker and new.key_id != marker.get("key_id"):
            raise EncryptionKeyError(
                "Store %s has an interrupted rekey to key id %s, but new_encryption_key has id %s. Rerun with the "
                "new key of that rekey." % (self.base.root, marker.get("key_id"), new.key_id))
        if not marker:
            document["rekey"] = new.marker()
            atomic_write_json(self.base.path("format"), document)
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
        self.writes.sync_everything()
        self.writes.sync()
        atomic_write_json(self.base.path("format"), {"format_version": document["format_version"],
                                                     "encryption": new.describe()})
        self.base.use_key(new_key, new)
        return {"changed": True, "key_id": new.key_id, "scheme": new.scheme, "resumed": bool(marker), **counts}

    def _encrypted_files(self) -> Iterator[Tuple[str, bytes, str]]:
        objects = self.base.path("objects")
        for fan in sorted(os.listdir(objects)) if os.path.isdir(objects) else []:
            for name in sorted(os.listdir(os.path.join(objects, fan))):
                if SHA_RE.match(name):
                    yield os.path.join(objects, fan, name), object_context(name), "objects"
        for checkpoint_id in self.checkpoints.ids():
            yield self.checkpoints.manifest_path(checkpoint_id), manifest_context(checkpoint_id), "manifests"

    def _reseal_pack(self, index: PackIndex, old: Cipher, new: Cipher) -> bool:
        """Re-encrypt a pack into a new one from ``old`` to ``new`` (skipped when already under ``new``)."""
        entries = list(index.entries())
        if not entries:
            return False
        first = read_range((index.pack_path, entries[0][1], entries[0][2]))
        if new.envelope_key_id(io.BytesIO(first)) == new.key_id:
            return False

        def reseal(sha: str, stored: bytes) -> bytes:
            context = object_context(sha)
            return new.seal(old.unseal(stored, context, "Object %s" % sha), context)

        self._rewrite_pack(index, entries, reseal)
        self._drop_pack(index)
        self.objects.packs.forget()
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
            tmp = self.writes.temp_object_path()
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
