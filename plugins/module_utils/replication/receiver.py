# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The receiver: the program a repository host runs for one sync or fetch (see docs/repository.md).

Started over ssh as ``python3 -c <BOOTSTRAP>`` (a constant), which reads this file's source from stdin and runs it, or
installed there and run bound to one namespace (``main``). Requests are JSON lines on stdin, each followed by the bytes
it announces; replies likewise on stdout. Paths are made from checked names only. Standard library only; the
repository's directory must be one only the receiver's account can change (``common.nofollow.private_dir_problem``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import sys
import time

try:
    from ..common.nofollow import private_dir_problem
    from .receiver_files import Refused, apply_delta, file_digest
except ImportError:  # run from source on the repository host: receiver_source() sends these with this file
    pass

PYTHON_FLAGS = "-I -S"  # isolated (no PYTHON* variables, no user site), no site module: standard library only
BOOTSTRAP = ("import sys;_n=int(sys.stdin.buffer.readline());"
             'exec(compile(sys.stdin.buffer.read(_n),"gitops-rollback-receiver","exec"))')
REPOSITORY_VERSION = 1
CHUNK = 1024 * 1024
SYNC_ONE_BY_ONE = 8  # a batch of more objects is made durable by one sync of the file system
NAME_RE = re.compile(r"^[0-9a-f]{64}\Z")
ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}\Z")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}\Z")
LAYOUT = ("objects", "hosts", "tmp")
NEEDS = ".needs"  # beside a manifest: the names of the objects it needs, one a line (what collection keeps)


def _private_dir(path: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise Refused("%s exists and is not a directory" % path) from None


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO in its place never blocks
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_filesystem(path: str) -> None:
    """Flush the file system holding ``path`` (syncfs; sync where it is missing)."""
    import ctypes  # pylint: disable=import-outside-toplevel  # (only here: its import costs each session)
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO in its place never blocks
    try:
        if syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@contextlib.contextmanager
def _flock(path: str, mode: int):
    """flock(2) on a file of the repository while the block runs."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


class _Session:
    """The framing of requests and replies, and the repository's layout: paths from checked names, atomic writes, its lock."""

    def __init__(self, stdin, stdout, namespace: "str | None" = None) -> None:
        self.stdin, self.stdout = stdin, stdout
        self.root = self.host = ""
        self.bound = namespace  # the only namespace this login may open (its command line's ``--namespace``)

    def reply(self, document: dict, body: bytes = b"") -> None:
        """Send one reply line (and its bytes)."""
        self.stdout.write(json.dumps(document, sort_keys=True).encode("utf-8") + b"\n" + body)
        self.stdout.flush()

    def read_exactly(self, size: int) -> bytes:
        """Read ``size`` bytes of a request's body; a short read means the sender went away."""
        data = self.stdin.read(size)
        if len(data) != size:
            raise EOFError("the sender went away in the middle of a request")
        return data

    def path(self, *parts: str) -> str:
        """A path inside the repository."""
        return os.path.join(self.root, *parts)

    def object_path(self, name: str) -> str:
        """Where object ``name`` lives (``objects/<aa>/<name>``)."""
        if not NAME_RE.match(name):
            raise Refused("%r is not an object name" % (name,))
        return self.path("objects", name[:2], name)

    def manifest_dir(self) -> str:
        """The directory of this host's manifests."""
        return self.path("hosts", self.host, "checkpoints")

    def _temp(self) -> str:
        return self.path("tmp", ".recv.grtmp-%d-%s" % (os.getpid(), os.urandom(6).hex()))

    @staticmethod
    def _read_json(path: str):
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))

    def _write_atomic(self, path: str, data: bytes) -> None:
        tmp = os.path.join(os.path.dirname(path), ".%s.grtmp-%s" % (os.path.basename(path), os.urandom(4).hex()))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        _fsync(os.path.dirname(path))

    def _locked(self, mode: int):
        """The repository's lock: shared by writers of manifests, exclusive for garbage collection."""
        return _flock(self.path("format"), mode)


class _Namespaces(_Session):
    """Opening the repository and the host's namespace: its format document and its manifests."""

    def hello(self, request: dict) -> dict:
        """Open (and with ``create``, make) the repository and the host's namespace."""
        root, host = request.get("root"), request.get("host")
        if not isinstance(root, str) or not root.startswith("/") or "\0" in root:
            raise Refused("the repository path must be absolute, got %r" % (root,))
        if not isinstance(host, str) or not HOST_RE.match(host):
            raise Refused("%r is not a host namespace name (letters, digits, . _ -)" % (host,))
        if self.bound is not None and host != self.bound:
            raise Refused("this login is bound to host namespace %s, not %s" % (self.bound, host))
        self.root, self.host = os.path.normpath(root), host
        unsafe = private_dir_problem(self.root)
        if unsafe:
            raise Refused("refusing the repository %s: %s, so another user could plant links or files in it. Give "
                          "it a directory only the repository's account can change (owned by it, mode 0700; every "
                          "directory above it root's or that account's, not writable by others unless sticky)"
                          % (self.root, unsafe))
        exists = os.path.lexists(self.path("format"))
        if not exists:
            if os.path.lexists(self.root):
                if not stat.S_ISDIR(os.lstat(self.root).st_mode):
                    raise Refused("%s is not a directory" % self.root)
                foreign = sorted(set(os.listdir(self.root)) - set(LAYOUT) - {"lost+found"})
                if foreign:
                    raise Refused("%s is a directory that is not a repository (it holds %s)"
                                  % (self.root, ", ".join(foreign[:5])))
            if not request.get("create"):
                return {"ok": True, "exists": False, "host_format": None, "manifests": {}}
            self._make()
        document = self._read_json(self.path("format"))
        if not isinstance(document, dict) or document.get("repository") != REPOSITORY_VERSION:
            raise Refused("%s has a format this receiver does not know: %r" % (self.root, document))
        path = self.path("hosts", self.host, "format")
        host_format = self._read_json(path) if os.path.lexists(path) else None
        if request.get("create"):
            _private_dir(self.path("hosts", self.host))
            _private_dir(self.manifest_dir())
        return {"ok": True, "exists": True, "host_format": host_format, "manifests": self._manifest_digests()}

    def _make(self) -> None:
        _private_dir(self.root)
        for name in LAYOUT:
            _private_dir(self.path(name))
        self._write_atomic(self.path("format"), json.dumps(
            {"format_version": 1, "repository": REPOSITORY_VERSION}, sort_keys=True, indent=1).encode("utf-8"))

    def _manifest_digests(self) -> dict:
        folder = self.manifest_dir()
        found = {}
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name.endswith(".json") and ID_RE.match(name[:-5]):
                with open(os.path.join(folder, name), "rb") as handle:
                    found[name[:-5]] = hashlib.sha256(handle.read()).hexdigest()
        return found

    def set_format(self, request: dict) -> dict:
        """Record the host store's format document (no key in it: a wrapped naming key at most)."""
        body = self.read_exactly(int(request["size"]))
        json.loads(body.decode("utf-8"))
        self._write_atomic(self.path("hosts", self.host, "format"), body)
        return {"ok": True}

    def put_manifest(self, request: dict) -> dict:
        """Write a host's manifest once every object it needs is in place (temp name, fsync, rename)."""
        checkpoint_id = request.get("id")
        if not isinstance(checkpoint_id, str) or not ID_RE.match(checkpoint_id):
            raise Refused("%r is not a checkpoint id" % (checkpoint_id,))
        body = self.read_exactly(int(request["size"]))
        if hashlib.sha256(body).hexdigest() != request.get("sha256"):
            return {"ok": False, "problems": [{"manifest": checkpoint_id, "problem": "changed on the way"}]}
        _private_dir(self.path("hosts", self.host))
        _private_dir(self.manifest_dir())
        with self._locked(fcntl.LOCK_SH):
            needs, fresh = self._needs(request)
            if needs is None:  # the base was forgotten since the sender looked, or its list here is another
                return {"ok": False, "needs_in_full": True,
                        "problems": [{"manifest": checkpoint_id, "problem": "no list of needed objects to build on"}]}
            missing = [name for name in fresh if not os.path.exists(self.object_path(name))]
            if missing:
                return {"ok": False, "missing": missing[:20], "missing_count": len(missing)}
            self._write_atomic(os.path.join(self.manifest_dir(), checkpoint_id + NEEDS),
                               "".join(name + "\n" for name in needs).encode("ascii"))
            self._write_atomic(os.path.join(self.manifest_dir(), checkpoint_id + ".json"), body)
        return {"ok": True}

    def _needs(self, request: dict):
        """The objects a manifest needs, and those to check: all, or with ``needs_base`` (recorded here, its objects
        too) its list less ``needs_removed`` plus ``needs_added`` (None: base gone, or not the digest ``needs_sha256``)."""
        base_id = request.get("needs_base")
        if base_id is None:
            needs = list(request.get("needs", []))
            return needs, needs
        if not isinstance(base_id, str) or not ID_RE.match(base_id):
            raise Refused("%r is not a checkpoint id" % (base_id,))
        base = os.path.join(self.manifest_dir(), base_id)
        try:
            if not os.path.exists(base + ".json"):
                return None, None
            with open(base + NEEDS, "rb") as handle:
                listed = [line.decode("ascii").strip() for line in handle if line.strip()]
        except FileNotFoundError:  # forgotten meanwhile (forget takes no lock; collection cannot run now)
            return None, None
        removed, known = set(request.get("needs_removed", [])), set(listed)
        added = [name for name in request.get("needs_added", []) if name not in known]
        needs = [name for name in listed if name not in removed] + added
        digest = hashlib.sha256("".join(name + "\n" for name in sorted(set(needs))).encode("ascii")).hexdigest()
        return (needs, added) if digest == request.get("needs_sha256") else (None, None)

    def forget(self, request: dict) -> dict:
        """Delete manifests of this host (the manifest first, then its list of objects)."""
        forgotten = []
        for checkpoint_id in request.get("ids", []):
            if not isinstance(checkpoint_id, str) or not ID_RE.match(checkpoint_id):
                raise Refused("%r is not a checkpoint id" % (checkpoint_id,))
            for suffix in (".json", NEEDS):
                path = os.path.join(self.manifest_dir(), checkpoint_id + suffix)
                if os.path.lexists(path):
                    os.unlink(path)
                    if suffix == ".json":
                        forgotten.append(checkpoint_id)
        if os.path.isdir(self.manifest_dir()):
            _fsync(self.manifest_dir())
        return {"ok": True, "forgotten": forgotten}

    def get_manifests(self, request: dict) -> None:
        """Send the named manifests of the host (all when none are named): ids and sizes, then the bytes."""
        wanted = request.get("ids") or sorted(self._manifest_digests())
        bodies = []
        for checkpoint_id in wanted:
            if not ID_RE.match(checkpoint_id):
                raise Refused("%r is not a checkpoint id" % (checkpoint_id,))
            with open(os.path.join(self.manifest_dir(), checkpoint_id + ".json"), "rb") as handle:
                bodies.append(handle.read())
        self.reply({"ok": True, "ids": wanted, "sizes": [len(body) for body in bodies]}, b"".join(bodies))


class _Objects(_Namespaces):
    """The shared objects: which are held, receiving a batch (checked, durable, renamed), sending them back."""

    def have(self, request: dict) -> dict:
        """Say which of the named objects the repository holds (with ``key_id``: whose envelope names that key; with
        ``digests`` too, the SHA-256 of each)."""
        names = request.get("names", [])
        key_id = request.get("key_id")
        if key_id is None:
            return {"ok": True, "have": [name for name in names if os.path.exists(self.object_path(name))]}
        held = [name for name in names if self._sealed_by(self.object_path(name), key_id)]
        if not request.get("digests"):
            return {"ok": True, "have": held}
        # the SHA-256 of each held envelope: the sender checks it is its own, or that the one held opens under its key
        return {"ok": True, "have": held, "digests": [file_digest(self.object_path(name)) for name in held]}

    @staticmethod
    def _sealed_by(path: str, key_id: str) -> bool:
        """Whether an object's envelope names ``key_id`` (bytes 8-24 of every scheme's header)."""
        try:
            with open(path, "rb") as handle:
                return handle.read(24)[8:].hex() == key_id
        except FileNotFoundError:
            return False

    def put(self, request: dict) -> dict:
        """Receive a batch of objects, each followed by its SHA-256 (64 hex digits): checked, made durable, linked.

        A plain store's object comes with its name as the digest, an encrypted store's with its envelope's. An
        entry with a third field comes as a delta against that object (:func:`apply_delta`); when the base is not
        here, or the rebuilt object does not hash as announced, it is in ``problems`` and is sent whole.
        """
        entries = [(self.object_path(entry[0]), int(entry[1]), self._base(entry)) for entry in request["objects"]]
        staged = []
        problems = []
        plain = set()  # the names whose content hashed to them
        digests = {}  # the SHA-256 of each object received
        try:
            for final, size, base in entries:
                tmp = self._temp()
                if base is None:
                    actual = self._receive(tmp, self._body_chunks(size))
                else:
                    actual = self._receive_delta(tmp, self.read_exactly(size), base)
                expected = self.read_exactly(64).decode("ascii", "replace")
                if actual != expected:
                    if actual is not None:
                        os.unlink(tmp)
                    problem = {"object": os.path.basename(final), "expected": expected, "actual": actual}
                    problems.append(dict(problem, base=os.path.basename(base)) if base else problem)
                    continue
                staged.append((tmp, final))
                digests[final] = actual
                if actual == os.path.basename(final):
                    plain.add(actual)
            self._make_durable([tmp for tmp, _final in staged])
            stored = []
            fanouts = set()
            for tmp, final in staged:
                folder = os.path.dirname(final)
                if folder not in fanouts and not os.path.isdir(folder):
                    _private_dir(folder)
                fanouts.add(folder)
                problem = self._place(tmp, final, None if os.path.basename(final) in plain else digests[final])
                if problem:
                    problems.append({"object": os.path.basename(final), "problem": problem[1], "kind": problem[0]})
                else:
                    stored.append(os.path.basename(final))
            for folder in sorted(fanouts) + [self.path("objects")]:
                _fsync(folder)
        except BaseException:
            for tmp, _final in staged:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
            raise
        return {"ok": not problems, "stored": stored, "problems": problems}

    def _place(self, tmp: str, final: str, sealed: "str | None") -> "tuple | None":
        """Link a received object into place, never over one held (None), or say why it is not stored: (kind, text).

        An object held is kept, whoever sent another: an encrypted object's name is a keyed hash this host
        cannot check, so a replacement could be anything. The one held is made young again (a collection
        meanwhile keeps it for the manifest to come). An encrypted object (``sealed``: the SHA-256 of the bytes
        received) held with other bytes is named to the sender, which checks that the one held opens under its key.
        """
        try:
            try:
                os.link(tmp, final)
                return None
            except OSError as exc:  # EEXIST: held; a file system without hard links: a rename unless held
                if exc.errno not in (errno.EEXIST, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                if exc.errno != errno.EEXIST and not os.path.lexists(final):
                    os.rename(tmp, final)
                    return None
            os.utime(final)
            if sealed is None:
                return None
            with open(tmp, "rb") as handle:
                key_id = handle.read(24)[8:].hex()
            if not self._sealed_by(final, key_id):
                return ("other_key", "held sealed under another key, kept")
            return None if file_digest(final) == sealed else ("other_bytes", "held with other bytes, kept")
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def _base(self, entry) -> "str | None":
        return self.object_path(entry[2]) if len(entry) > 2 and entry[2] is not None else None

    def _body_chunks(self, size: int):
        left = size
        while left:
            chunk = self.stdin.read(min(CHUNK, left))
            if not chunk:
                raise EOFError("the sender went away in the middle of an object")
            left -= len(chunk)
            yield chunk

    def _receive_delta(self, tmp: str, delta: bytes, base: str) -> "str | None":
        """Rebuild an object from ``base`` (an object here) and ``delta``; None when the base is not here."""
        try:
            handle = open(base, "rb")  # pylint: disable=consider-using-with
        except FileNotFoundError:
            return None
        with handle:
            return self._receive(tmp, apply_delta(delta, handle))

    def _receive(self, tmp: str, chunks) -> str:
        digest = hashlib.sha256()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            for chunk in chunks:
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        return digest.hexdigest()

    def _make_durable(self, paths) -> None:
        flush, paths = (_sync_filesystem, [self.path("tmp")]) if len(paths) > SYNC_ONE_BY_ONE else (_fsync, paths)
        for path in paths:
            flush(path)

    def get(self, request: dict) -> None:
        """Send the stored bytes of the named objects (a size of -1: missing), one reply line, then the bytes: each
        looked up once (one ``stat``), sent by ``sendfile`` (no copy through Python) where stdout takes it."""
        names = request.get("names", [])
        sizes = [self._object_size(name) for name in names]
        self.reply({"ok": True, "sizes": sizes})
        try:  # stdout's descriptor, its buffer flushed by the reply (None when stdout is not a file, as in tests)
            out = self.stdout.fileno()
        except (AttributeError, OSError, ValueError):
            out = None
        for name, size in zip(names, sizes):
            if size < 0:
                continue
            with open(self.object_path(name), "rb", buffering=0) as handle:
                sent = self._sendfile(out, handle.fileno(), size) if out is not None else 0
                handle.seek(sent)
                left = size - sent
                while left:
                    chunk = handle.read(min(CHUNK, left))
                    if not chunk:
                        raise EOFError("object %s shrank while it was sent" % name)
                    self.stdout.write(chunk)
                    left -= len(chunk)
                if sent < size:  # copied through the buffer: out before the next object's sendfile
                    self.stdout.flush()
        self.stdout.flush()

    def _object_size(self, name: str) -> int:
        """The size of a stored object, -1 when it is not here."""
        try:
            status = os.stat(self.object_path(name))
        except FileNotFoundError:
            return -1
        return status.st_size if stat.S_ISREG(status.st_mode) else -1

    def _sendfile(self, out: int, source: int, size: int) -> int:
        """Send up to ``size`` bytes of ``source`` to ``out`` in the kernel; return how many went (the rest is copied)."""
        offset = 0
        while offset < size:
            try:
                sent = os.sendfile(out, source, offset, size - offset)
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EAGAIN):
                    return offset
                raise
            if not sent:
                raise EOFError("an object shrank while it was sent")
            offset += sent
        return offset


class Receiver(_Objects):
    """One repository, opened by the ``hello`` request: garbage collection and the request loop."""

    def collect(self, request: dict) -> dict:
        """Delete objects no manifest of any host needs, and temporary files, older than ``grace`` seconds.

        Every host's lists of needed objects are read under the exclusive lock, so no manifest is
        recorded meanwhile; an object sent for a manifest not recorded yet is kept while it is young.
        """
        grace = float(request.get("grace", 3600))
        dry_run = bool(request.get("dry_run"))
        deadline = time.time() - grace
        removed = freed = 0
        with self._locked(fcntl.LOCK_EX):
            keep = self._needed_by_all()
            objects = self.path("objects")
            for fan in sorted(os.listdir(objects)):
                folder = os.path.join(objects, fan)
                for name in set(os.listdir(folder)) - keep:
                    status = os.lstat(os.path.join(folder, name))
                    if status.st_mtime <= deadline:
                        removed, freed = removed + 1, freed + status.st_size
                        if not dry_run:
                            os.unlink(os.path.join(folder, name))
            for name in os.listdir(self.path("tmp")):
                path = self.path("tmp", name)
                if os.lstat(path).st_mtime <= deadline and not dry_run:
                    os.unlink(path)
        return {"ok": True, "objects": removed, "bytes": freed, "kept": len(keep)}

    def _needed_by_all(self) -> set:
        """The objects some manifest of some host needs; refuses a manifest without its list."""
        keep = set()
        hosts = self.path("hosts")
        for host in sorted(os.listdir(hosts)):
            folder = os.path.join(hosts, host, "checkpoints")
            names = set(os.listdir(folder)) if os.path.isdir(folder) else set()
            for name in sorted(names):
                if not name.endswith(".json") or name.startswith("."):
                    continue
                needs = name[:-len(".json")] + NEEDS
                if needs not in names:
                    raise Refused("manifest %s of host %s has no list of the objects it needs; nothing was collected"
                                  % (name, host))
                with open(os.path.join(folder, needs), "rb") as handle:
                    keep.update(line.decode("ascii").strip() for line in handle if line.strip())
        return keep

    def serve(self) -> None:
        """Answer requests until the sender closes stdin."""
        handlers = {"hello": self.hello, "set_format": self.set_format, "have": self.have, "put": self.put,
                    "put_manifest": self.put_manifest, "forget": self.forget, "collect": self.collect}
        streaming = {"get": self.get, "get_manifests": self.get_manifests}
        while True:
            line = self.stdin.readline()
            if not line:
                return
            request = json.loads(line.decode("utf-8"))
            operation = request.get("op")
            if operation != "hello" and not self.root:
                self.reply({"ok": False, "error": "the first request must be hello"})
                return
            try:
                if operation in streaming:
                    streaming[operation](request)
                elif operation in handlers:
                    self.reply(handlers[operation](request))
                else:
                    self.reply({"ok": False, "error": "unknown request %r" % (operation,)})
            except Refused as exc:  # the rest of the request may still be on its way: the session ends
                self.reply({"ok": False, "error": str(exc)})
                return
            except OSError as exc:
                self.reply({"ok": False, "error": "%s: %s" % (exc.__class__.__name__, exc), "errno": exc.errno})
                return


def main(argv: "list[str]") -> None:
    """Serve the requests on stdin; with ``--namespace NAME`` (a program installed on the repository host, run by
    the login's forced command), only in that namespace, after discarding the program the sender sends first."""
    os.umask(0o077)
    namespace = argv[2] if len(argv) == 3 and argv[1] == "--namespace" else None
    if len(argv) > 1 and (namespace is None or not HOST_RE.match(namespace)):
        raise SystemExit("usage: %s [--namespace HOST-NAMESPACE]" % argv[0])
    if namespace is not None:
        left = int(sys.stdin.buffer.readline())
        while left > 0:
            left -= len(sys.stdin.buffer.read(min(CHUNK, left))) or left
    Receiver(sys.stdin.buffer, sys.stdout.buffer, namespace).serve()


if __name__ == "__main__":
    main(sys.argv)
