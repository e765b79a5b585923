# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Repositories: copies of checkpoint stores on a repository host, reached over SSH (docs/repository.md).

A repository is a directory on another host holding the objects of many stores (shared) and, per
host, the store's ``format`` document and its manifests (``hosts/<name>/``). :func:`sync_store`
sends what the repository lacks, objects first and manifests last; :func:`fetch_checkpoint` brings
one checkpoint (its manifest and the objects it needs) back into a local store, checking each object
before it is placed. Objects and manifests cross exactly as stored: an encrypted store's stay sealed,
and no key ever leaves the host.

The system ``ssh`` is run with an argument list; on the repository host it runs ``python3`` with a
constant bootstrap that reads the receiver (:mod:`._repo_receiver`) from stdin, so no path, name or
option is ever parsed by a remote shell.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from . import _repo_receiver
from ._errors import CheckpointNotFound, IntegrityError, RollbackError, StoreFullError
from ._fsutil import atomic_write_bytes, atomic_write_json, create_private, ensure_private_dir, unlink_quietly
from ._labels import escape
from ._packs import SMALL_OBJECT
from ._retention import Policy, RetentionError, forgotten, plan
from ._store import LAYOUT, Store, parse_time, snapshots, summarize

BATCH_BYTES = 32 * 1024 * 1024  # objects sent per request (one durable sync on the repository each), by stored size
BATCH_OBJECTS = 2000
CHUNK = 1024 * 1024
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\[\]%-]{1,253}$")
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_NAMESPACE_RE = _repo_receiver.HOST_RE
Progress = Callable[[str, int], None]  # ("sent" | "stored", objects so far)


class RepositoryError(RollbackError):
    """The repository cannot be reached, refused a request, or lacks what was asked of it."""


@dataclass
class RepositorySpec:
    """Where a repository is and how to reach it (the ``repository`` option of the modules)."""

    host: str
    path: str
    port: int = 22
    user: Optional[str] = None
    name: Optional[str] = None
    private_key: Optional[str] = None
    private_key_file: Optional[str] = None
    known_hosts: Optional[str] = None
    connect_timeout: int = 30

    @classmethod
    def from_options(cls, options: dict) -> "RepositorySpec":
        """Build a spec from the module option (unknown keys ignored) and check it."""
        known = {key: options[key] for key in cls.__dataclass_fields__ if options.get(key) is not None}
        spec = cls(**known)
        spec.check()
        return spec

    @property
    def namespace(self) -> str:
        """The host's namespace in the repository: ``name``, else this host's name."""
        return self.name or socket.gethostname()

    def check(self) -> None:
        """Refuse values that are not what they claim to be, before anything is run."""
        problems = []
        if not _HOST_RE.match(self.host or "") or self.host.startswith("-"):
            problems.append("host=%s is not a host name or address" % escape(self.host or "", 80))
        if not isinstance(self.path, str) or not self.path.startswith("/") or "\0" in self.path:
            problems.append("path=%s is not an absolute path" % escape(str(self.path), 200))
        if not 0 < int(self.port) < 65536:
            problems.append("port=%s is not a TCP port" % self.port)
        if self.user is not None and not _USER_RE.match(self.user):
            problems.append("user=%s is not a user name" % escape(self.user, 80))
        if not _NAMESPACE_RE.match(self.namespace):
            problems.append("name=%s is not a host namespace (letters, digits, . _ -; at most 253)"
                            % escape(self.namespace, 80))
        if self.private_key and self.private_key_file:
            problems.append("private_key and private_key_file are mutually exclusive")
        if problems:
            raise RepositoryError("The repository option is refused: %s. Nothing was sent or changed." % "; ".join(problems))

    def where(self) -> str:
        """The repository, for messages (no secrets)."""
        user = "%s@" % self.user if self.user else ""
        return "%s%s:%s (port %d, host namespace %s)" % (user, self.host, self.path, self.port, self.namespace)


def receiver_source() -> bytes:
    """The receiver program sent to the repository host."""
    return inspect.getsource(_repo_receiver).encode("utf-8")


class Connection:
    """One ssh session to the receiver on the repository host (use as a context manager)."""

    def __init__(self, spec: RepositorySpec) -> None:
        self.spec = spec
        self.workdir = ""
        self.proc: Optional[subprocess.Popen] = None
        self.stderr_path = ""

    def argv(self) -> List[str]:
        """The ssh command: host keys checked, no agent or X11 forwarding, no tty, batch mode."""
        spec = self.spec
        argv = ["ssh", "-T", "-x", "-a", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", "ConnectTimeout=%d" % spec.connect_timeout, "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR", "-o", "ControlMaster=no",
                "-o", "ControlPath=none", "-p", str(int(spec.port))]
        if spec.user:
            argv += ["-l", spec.user]
        key_file = spec.private_key_file
        if spec.private_key:
            key_file = os.path.join(self.workdir, "identity")
            self._write_private(key_file, spec.private_key.strip() + "\n")
        if key_file:
            argv += ["-i", key_file, "-o", "IdentitiesOnly=yes"]
        if spec.known_hosts:
            known = os.path.join(self.workdir, "known_hosts")
            self._write_private(known, spec.known_hosts.strip() + "\n")
            argv += ["-o", "UserKnownHostsFile=%s" % known, "-o", "GlobalKnownHostsFile=/dev/null"]
        return argv + ["--", spec.host, "python3 -c %s" % shlex.quote(_repo_receiver.BOOTSTRAP)]

    @staticmethod
    def _write_private(path: str, text: str) -> None:
        fd = create_private(path)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)

    def __enter__(self) -> "Connection":
        self.workdir = tempfile.mkdtemp(prefix="gitops-rollback-repo-")
        try:
            argv = self.argv()
            self.stderr_path = os.path.join(self.workdir, "stderr")
            with open(self.stderr_path, "wb") as errors:
                self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
            source = receiver_source()
            self._write(b"%d\n" % len(source) + source)
        except FileNotFoundError as exc:
            self.close()
            raise RepositoryError("Reaching the repository needs the ssh client, which is not installed on this "
                                  "host (%s). Install openssh-client." % exc) from exc
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """End the session (the receiver stops at the end of its input) and remove the key files."""
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""

    def _stderr(self) -> str:
        try:
            with open(self.stderr_path, "rb") as handle:
                return handle.read()[-2000:].decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _lost(self, what: str) -> RepositoryError:
        proc = self.proc
        code = proc.poll() if proc else None
        return RepositoryError(
            "The repository %s could not be reached or stopped answering while %s (ssh exit status %s): %s. Check "
            "the address, the key (private_key or the host's own), that the repository host's key is in "
            "known_hosts, and that it has python3." % (self.spec.where(), what, code, self._stderr() or "no error output"))

    def _write(self, data) -> None:
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, ValueError) as exc:
            raise self._lost("sending") from exc

    def send(self, document: dict) -> None:
        """Send a request line (its bytes follow with :meth:`write`)."""
        self._write(json.dumps(document, sort_keys=True).encode("utf-8") + b"\n")

    def write(self, data) -> None:
        """Send bytes of the current request."""
        self._write(data)

    def reply(self, what: str) -> dict:
        """Read one reply line; a refusal raises RepositoryError (a full disk: StoreFullError)."""
        try:
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise self._lost(what) from exc
        line = self.proc.stdout.readline()
        if not line:
            raise self._lost(what)
        document = json.loads(line.decode("utf-8"))
        if document.get("error"):
            if document.get("errno") in (28, 122):  # ENOSPC, EDQUOT
                raise StoreFullError("The repository %s is full (%s) while %s. What was already stored stays; no "
                                     "manifest names an object that is missing. Free space there and run again."
                                     % (self.spec.where(), document["error"], what))
            raise RepositoryError("The repository %s refused %s: %s." % (self.spec.where(), what, document["error"]))
        return document

    def request(self, document: dict, what: str, body: bytes = b"") -> dict:
        """Send a request (and its bytes) and return its reply."""
        self.send(document)
        if body:
            self.write(body)
        return self.reply(what)

    def read_exactly(self, size: int, what: str) -> bytes:
        """Read ``size`` bytes that a reply announced."""
        data = self.proc.stdout.read(size)
        if len(data) != size:
            raise self._lost(what)
        return data

    def hello(self, create: bool) -> dict:
        """Open the repository (creating it when ``create``) in this host's namespace."""
        return self.request({"op": "hello", "root": self.spec.path, "host": self.spec.namespace, "create": create},
                            "opening it")

    def have(self, names: Sequence[str]) -> set:
        """Return which of ``names`` the repository holds."""
        found: set = set()
        for start in range(0, len(names), BATCH_OBJECTS):
            found.update(self.request({"op": "have", "names": list(names[start:start + BATCH_OBJECTS])},
                                      "listing objects")["have"])
        return found


# --------------------------------------------------------------------------- what a store holds


def needed_objects(store: Store, manifest: dict) -> List[str]:
    """Every object a checkpoint needs (trees, file contents, component data), once each, trees first."""
    return list(dict.fromkeys(store.referenced(manifest)))


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _compatible(local: dict, remote: Optional[dict]) -> Optional[str]:
    """Why a local store's format cannot share a host namespace with ``remote``, or None."""
    if remote is None:
        return None
    mine, theirs = local.get("encryption"), remote.get("encryption")
    if bool(mine) != bool(theirs):
        return "one of them is encrypted and the other is not"
    if mine and (mine.get("name_key") != theirs.get("name_key") or mine.get("key_id") != theirs.get("key_id")):
        return "they are encrypted with different keys or naming keys (key id %s here, %s there)" % (
            mine.get("key_id"), theirs.get("key_id"))
    return None


# --------------------------------------------------------------------------- sync


def _select(store: Store, refs: Sequence[str]) -> List[dict]:
    if not refs:
        return store.manifests()
    chosen = {}
    for ref in refs:
        manifest = store.find(ref)
        chosen[manifest["id"]] = manifest
    return [chosen[key] for key in sorted(chosen)]


def _batches(store: Store, names: Sequence[str]) -> Iterator[List[Tuple[str, Tuple[str, int, int]]]]:
    """Group objects into requests of at most BATCH_BYTES (a larger object goes alone)."""
    batch: List[Tuple[str, Tuple[str, int, int]]] = []
    size = 0
    for name in names:
        location = store.object_location(name)
        if batch and (size + location[2] > BATCH_BYTES or len(batch) >= BATCH_OBJECTS):
            yield batch
            batch, size = [], 0
        batch.append((name, location))
        size += location[2]
    if batch:
        yield batch


def _send_object(conn: Connection, name: str, location: Tuple[str, int, int], plain: bool) -> None:
    """Send one object's stored bytes and its digest: its name (plain store) or the envelope's SHA-256."""
    path, offset, length = location
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(offset)
        left = length
        while left:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                raise IntegrityError("Object %s is truncated in the local store (%s); it was not sent. Run "
                                     "gitops.rollback.checkpoint state=verified." % (name, path))
            if not plain:
                digest.update(chunk)
            conn.write(chunk)
            left -= len(chunk)
    conn.write((name if plain else digest.hexdigest()).encode("ascii"))


def _send_objects(conn: Connection, store: Store, names: Sequence[str], progress: Optional[Progress]) -> Tuple[int, int]:
    """Send objects in batches; return (objects, bytes) stored by the repository."""
    plain = store.cipher is None
    sent = stored = stored_bytes = 0
    for batch in _batches(store, names):
        conn.send({"op": "put", "objects": [[name, location[2]] for name, location in batch]})
        for name, location in batch:
            _send_object(conn, name, location, plain)
            sent += 1
            if progress:
                progress("sent", sent)
        reply = conn.reply("storing objects")
        if reply.get("problems"):
            first = reply["problems"][0]
            raise IntegrityError(
                "The repository %s received object %s with SHA-256 %s instead of %s: the local object is damaged or "
                "changed on the way. Nothing that needs it was recorded there. Run gitops.rollback.checkpoint "
                "state=verified here." % (conn.spec.where(), first["object"], first["actual"], first["expected"]))
        stored += len(reply["stored"])
        stored_bytes += sum(location[2] for _name, location in batch)
        if progress:
            progress("stored", stored)
    return stored, stored_bytes


def sync_store(store: Store, spec: RepositorySpec, refs: Sequence[str] = (), dry_run: bool = False,
               progress: Optional[Progress] = None) -> dict:
    """Send the checkpoints of ``store`` (or those ``refs`` name) that the repository lacks or holds in another version.

    Objects go first, in batches each made durable and renamed into place by the receiver before it
    answers; then each manifest, which the receiver accepts only when every object it needs is there.
    A rerun after an interruption sends only what the repository does not hold yet.
    """
    if not store.exists():
        raise RollbackError("There is no checkpoint store at %s on this host; there is nothing to send to the "
                            "repository. Create checkpoints with gitops.rollback.checkpoint." % store.root)
    local_format = store.read_format()
    store.check_format()
    manifests = _select(store, refs)
    with Connection(spec) as conn:
        hello = conn.hello(create=not dry_run)
        problem = _compatible(local_format, hello.get("host_format"))
        if problem:
            raise RepositoryError(
                "The store %s cannot be sent to host namespace %s of the repository %s: %s. Nothing was sent. Use "
                "another name (repository.name) or another repository path." % (
                    store.root, spec.namespace, spec.where(), problem))
        remote = hello.get("manifests", {})
        raw = {man["id"]: _read_file(store.manifest_path(man["id"])) for man in manifests}
        todo = [man for man in manifests if remote.get(man["id"]) != hashlib.sha256(raw[man["id"]]).hexdigest()]
        needs = {man["id"]: needed_objects(store, man) for man in todo}
        wanted = list(dict.fromkeys(name for man in todo for name in needs[man["id"]]))
        held = conn.have(wanted) if hello.get("exists") else set()
        missing = [name for name in wanted if name not in held]
        absent = [name for name in missing if not store.has_blob(name)]
        if absent:
            raise IntegrityError("The local store %s lacks object %s (and %d more) that checkpoints to send need; "
                                 "nothing was sent. Run gitops.rollback.checkpoint state=verified." % (
                                     store.root, absent[0], len(absent) - 1))
        result = {
            "changed": bool(todo), "repository": spec.where(), "host": spec.namespace,
            "checkpoints": [man["id"] for man in todo],
            "up_to_date": [man["id"] for man in manifests if man not in todo],
            "objects": {"needed": len(wanted), "present": len(held), "sent": len(missing),
                        "bytes": sum(store.object_size(name) for name in missing)},
        }
        if dry_run:
            return result
        if hello.get("host_format") != local_format:
            conn.request({"op": "set_format", "size": len(json.dumps(local_format).encode("utf-8"))},
                         "recording the store format", json.dumps(local_format).encode("utf-8"))
        stored, stored_bytes = _send_objects(conn, store, missing, progress)
        result["objects"].update(sent=stored, bytes=stored_bytes)
        for man in todo:
            body = raw[man["id"]]
            reply = conn.request({"op": "put_manifest", "id": man["id"], "size": len(body),
                                  "sha256": hashlib.sha256(body).hexdigest(), "needs": needs[man["id"]]},
                                 "recording checkpoint %s" % man["id"], body)
            if not reply.get("ok"):
                raise RepositoryError("The repository %s did not record checkpoint %s: %s. Run the sync again." % (
                    spec.where(), man["id"], reply.get("missing") or reply.get("problems")))
    return result


# --------------------------------------------------------------------------- fetch


def _missing_locally(store: Store, manifest: dict) -> Tuple[List[str], bool]:
    """Objects of a checkpoint the local store lacks, and whether the list is complete (every tree was there)."""
    trees = [root["tree"] for root in manifest.get("roots", []) if root.get("tree")]
    absent_trees = [tree for tree in trees if not store.has_blob(tree)]
    if absent_trees:
        return absent_trees, False
    return [name for name in needed_objects(store, manifest) if not store.has_blob(name)], True


def seed_store(store: Store, host_format: dict) -> None:
    """Create a missing local store with the format recorded in the repository (same naming key, if sealed)."""
    if store.exists():
        return
    for sub in ("",) + LAYOUT:
        ensure_private_dir(store.path(sub))
    atomic_write_json(store.path("format"), host_format)
    store.check_format()


class _View:
    """The host's manifests in the repository, read through a throwaway store of the same format."""

    def __init__(self, conn: Connection, host_format: dict, key: Optional[str], workdir: str) -> None:
        self.root = os.path.join(workdir, "view")
        for sub in ("",) + LAYOUT:
            ensure_private_dir(os.path.join(self.root, sub))
        atomic_write_json(os.path.join(self.root, "format"), host_format)
        reply = conn.request({"op": "get_manifests"}, "listing checkpoints")
        for checkpoint_id, size in zip(reply["ids"], reply["sizes"]):
            body = conn.read_exactly(size, "reading checkpoint %s" % checkpoint_id)
            atomic_write_bytes(os.path.join(self.root, "checkpoints", checkpoint_id + ".json"), body)
        self.store = Store(self.root, key)

    def find(self, ref: str, where: str) -> dict:
        try:
            return self.store.find(ref)
        except CheckpointNotFound as exc:
            available = exc.details.get("available", [])
            raise CheckpointNotFound(
                "Checkpoint %s is neither in the local store nor in the repository %s (it has: %s)." % (
                    escape(ref), where, ", ".join(
                        "%s (%s)" % (item["id"], item["label"]) if item.get("label") else item["id"]
                        for item in reversed(available[-20:])) or "none"), available=available) from exc

    def newest(self) -> Optional[dict]:
        """Id and creation time of the host's newest checkpoint in the repository (what a rebuild can reach at best)."""
        manifests = self.store.manifests()
        return {"id": manifests[-1]["id"], "created": manifests[-1]["created"]} if manifests else None

    def raw(self, checkpoint_id: str) -> bytes:
        return _read_file(self.store.manifest_path(checkpoint_id))


def _damaged(name: str, where: str, actual: Optional[str], exc: Optional[Exception] = None) -> IntegrityError:
    if actual is None:
        return IntegrityError("Object %s in the repository %s is damaged: %s Nothing was restored; the object was not "
                              "placed in the local store." % (name, where, exc), expected=name, actual=None)
    return IntegrityError(
        "Object %s in the repository %s is corrupted (its content hashes to %s). Nothing was restored; the object "
        "was not placed in the local store. Restore another checkpoint, or sync this one again from a host that "
        "holds it intact." % (name, where, actual), expected=name, actual=actual)


def _check_fetched(store: Store, name: str, tmp: str, where: str) -> None:
    """Refuse a fetched object file whose content does not have its name (or, sealed, is not authentic)."""
    cipher = store.cipher
    digest = store.hasher()
    try:
        with open(tmp, "rb") as handle:
            if cipher is None:
                for chunk in iter(lambda: handle.read(CHUNK), b""):
                    digest.update(chunk)
            else:
                size = os.fstat(handle.fileno()).st_size
                for chunk in cipher.open_stream(handle, size, b"object:" + name.encode("ascii"), "Object %s" % name):
                    digest.update(chunk)
    except IntegrityError as exc:
        raise _damaged(name, where, None, exc) from exc
    if digest.hexdigest() != name:
        raise _damaged(name, where, digest.hexdigest())


def _check_fetched_bytes(store: Store, name: str, data: bytes, where: str) -> None:
    """Like :func:`_check_fetched`, for an object read into memory."""
    cipher = store.cipher
    try:
        content = data if cipher is None else cipher.unseal(data, b"object:" + name.encode("ascii"), "Object %s" % name)
    except IntegrityError as exc:
        raise _damaged(name, where, None, exc) from exc
    actual = store.hash_bytes(content)
    if actual != name:
        raise _damaged(name, where, actual)


def _receive_batch(conn: Connection, store: Store, names: List[str], sizes: List[int],
                   staged: List[Tuple[str, str]]) -> List[Tuple[str, bytes]]:
    """Read a batch's objects, each checked: small ones into memory, larger ones into temporary files (``staged``)."""
    where = conn.spec.where()
    small = []
    for name, size in zip(names, sizes):
        if size <= SMALL_OBJECT:
            data = conn.read_exactly(size, "sending object %s" % name)
            _check_fetched_bytes(store, name, data, where)
            small.append((name, data))
            continue
        tmp = store.temp_object_path()
        staged.append((name, tmp))
        with os.fdopen(create_private(tmp), "wb") as out:
            left = size
            while left:
                data = conn.read_exactly(min(CHUNK, left), "sending object %s" % name)
                out.write(data)
                left -= len(data)
        _check_fetched(store, name, tmp, where)
    return small


def _fetch_objects(conn: Connection, store: Store, names: Sequence[str]) -> Tuple[int, int]:
    """Fetch objects into the local store, each checked before it is placed; return (objects, bytes).

    Objects of up to 256 KiB go into a pack (as a checkpoint stores them), larger ones are renamed
    into place; none is placed before every object of its batch was checked.
    """
    count = total = 0
    for start in range(0, len(names), BATCH_OBJECTS):
        chunk = list(names[start:start + BATCH_OBJECTS])
        sizes = conn.request({"op": "get", "names": chunk}, "sending objects")["sizes"]
        gone = [name for name, size in zip(chunk, sizes) if size < 0]
        if gone:
            raise IntegrityError("The repository %s lacks object %s (and %d more) that the checkpoint needs. "
                                 "Nothing was restored." % (conn.spec.where(), gone[0], len(gone) - 1),
                                 expected=gone[0], actual=None)
        staged: List[Tuple[str, str]] = []
        try:
            small = _receive_batch(conn, store, chunk, sizes, staged)
            for name, data in small:
                store.packs.add(name, lambda data=data: data, lambda _name: False)
            for name, tmp in staged:
                store.commit_blob(tmp, name)
            staged = []
        finally:
            for _name, tmp in staged:
                unlink_quietly(tmp)
        count += len(chunk)
        total += sum(sizes)
    return count, total


def plan_fetch(store: Store, spec: RepositorySpec, ref: str, key: Optional[str] = None) -> dict:
    """What :func:`fetch_checkpoint` would do, changing nothing here or there (check mode).

    The checkpoint's tree objects are read into a throwaway directory to count the objects the local
    store lacks.
    """
    if store.exists():
        local = store.find_optional(ref)
        if local is not None and _missing_locally(store, local) == ([], True):
            return {"checkpoint": summarize(local), "fetched": {"objects": 0, "bytes": 0}, "source": "local"}
    with Connection(spec) as conn, tempfile.TemporaryDirectory(prefix="gitops-rollback-view-") as workdir:
        host_format = _host_format(conn.hello(create=False), spec)
        view = _View(conn, host_format, key, workdir)
        manifest = view.find(ref, spec.where())
        trees = [root["tree"] for root in manifest.get("roots", []) if root.get("tree")]
        _fetch_objects(conn, view.store, trees)
        here = store if store.exists() else None
        missing = [name for name in needed_objects(view.store, manifest) if here is None or not here.has_blob(name)]
    return {"checkpoint": summarize(manifest), "fetched": {"objects": len(missing), "bytes": None},
            "source": "repository"}


def _host_format(hello: dict, spec: RepositorySpec) -> dict:
    if not hello.get("exists") or not hello.get("host_format"):
        raise RepositoryError("The repository %s holds no checkpoints of host %s. Sync them first "
                              "(gitops.rollback.checkpoint_sync), or set repository.name to the name they were "
                              "sent under." % (spec.where(), spec.namespace))
    return hello["host_format"]


def fetch_checkpoint(store: Store, spec: RepositorySpec, ref: str, key: Optional[str] = None) -> dict:
    """Make the local store hold checkpoint ``ref``: from the local store when it is complete there, else from the repository.

    A missing local store is created with the format recorded in the repository. Tree objects come
    first, then the file and component objects the local store lacks, each checked (hash; envelope
    authenticity in an encrypted store) before it is placed; the manifest is written last. The caller
    holds the store lock once the store exists (see :func:`prepare_store`).
    """
    if store.exists():
        local = store.find_optional(ref)
        if local is not None and _missing_locally(store, local) == ([], True):
            return {"checkpoint": summarize(local), "fetched": {"objects": 0, "bytes": 0}, "source": "local"}
    with Connection(spec) as conn, tempfile.TemporaryDirectory(prefix="gitops-rollback-view-") as workdir:
        host_format = _host_format(conn.hello(create=False), spec)
        seed_store(store, host_format)
        problem = _compatible(store.read_format(), host_format)
        if problem:
            raise RepositoryError(
                "The local store %s cannot take checkpoints of host namespace %s of the repository %s: %s. Nothing "
                "was changed. Restore into a new store_path (or remove the store that was created anew)." % (
                    store.root, spec.namespace, spec.where(), problem))
        local = store.find_optional(ref)
        newest = None
        if local is not None:
            manifest, raw = local, None
        else:
            view = _View(conn, host_format, key, workdir)
            manifest = view.find(ref, spec.where())
            raw = view.raw(manifest["id"])
            newest = view.newest()
        missing, complete = _missing_locally(store, manifest)
        objects, size = _fetch_objects(conn, store, missing)
        if not complete:
            missing, _complete = _missing_locally(store, manifest)
            more, more_size = _fetch_objects(conn, store, missing)
            objects, size = objects + more, size + more_size
        store.sync()
        if raw is not None:
            atomic_write_bytes(store.manifest_path(manifest["id"]), raw)
            store.load(manifest["id"])
    return {"checkpoint": summarize(manifest), "fetched": {"objects": objects, "bytes": size}, "source": "repository",
            "newest_replicated": newest,
            "rpo_seconds": None if newest is None else max(0, int(time.time() - parse_time(newest["created"])))}


def prepare_store(store: Store, spec: RepositorySpec) -> None:
    """Create a missing local store from the format the repository recorded for this host (before the lock is taken)."""
    if store.exists():
        return
    with Connection(spec) as conn:
        seed_store(store, _host_format(conn.hello(create=False), spec))


def known_hosts_line(address: str, port: int, public_key: str) -> str:
    """A known_hosts line for a host key (``[address]:port`` for a port other than 22)."""
    fields = public_key.split()
    host = address if port == 22 else "[%s]:%d" % (address, port)
    return "%s %s %s" % (host, fields[0], fields[1])


def prune_repository(spec: RepositorySpec, policy: Policy, key: Optional[str] = None, grace: float = 3600.0,
                     dry_run: bool = False) -> dict:
    """Forget this host's checkpoints in the repository that ``policy`` does not keep, then collect garbage there.

    The host reads its manifests from the repository (with its key, for an encrypted store) and
    decides; the receiver deletes the forgotten manifests, then, under the repository's exclusive
    lock, every object that no manifest of any host needs and that is older than ``grace`` seconds
    (so objects of a sync whose manifests are not recorded yet stay). The newest checkpoint is never
    forgotten. In a dry run nothing is deleted and nothing is collected.
    """
    with Connection(spec) as conn, tempfile.TemporaryDirectory(prefix="gitops-rollback-view-") as workdir:
        view = _View(conn, _host_format(conn.hello(create=False), spec), key, workdir)
        try:
            decisions = plan(snapshots(view.store), policy, time.time())
        except RetentionError as exc:
            raise RollbackError(str(exc)) from exc
        doomed = forgotten(decisions)
        result = {
            "changed": bool(doomed), "repository": spec.where(), "host": spec.namespace, "deleted": doomed,
            "kept": [dict(id=dec.snapshot.id, label=dec.snapshot.label, reasons=dec.reasons)
                     for dec in reversed(decisions) if dec.kept],
        }
        if dry_run:
            return result
        if doomed:
            conn.request({"op": "forget", "ids": doomed}, "forgetting checkpoints")
        collected = conn.request({"op": "collect", "grace": grace}, "collecting garbage")
    result["collected"] = {"objects": collected["objects"], "bytes": collected["bytes"]}
    result["changed"] = bool(doomed or collected["objects"])
    return result


def sync_host(store: Store, options: dict, check_mode: bool) -> dict:
    """The checkpoint_sync module: send the store's checkpoints (state=present) or prune the repository (state=pruned)."""
    spec = RepositorySpec.from_options(options["repository"])
    if options.get("state") == "pruned":
        retention = options.get("retention") or {}
        policy = Policy(**{name: retention.get(name) for name in Policy.__dataclass_fields__})
        return prune_repository(spec, policy, options.get("encryption_key") or None,
                                float(options.get("gc_grace_hours", 1.0)) * 3600, dry_run=check_mode)
    return sync_store(store, spec, options.get("checkpoints") or (), dry_run=check_mode)
