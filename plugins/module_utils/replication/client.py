# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client side of a repository (docs/repository.md): where it is, the SSH session to its receiver, and what sync and fetch share.

The system ``ssh`` is run with an argument list; on the repository host it runs ``python3`` with a
constant bootstrap that reads the receiver (:mod:`replication.receiver`) from stdin, so no path, name or
option is ever parsed by a remote shell.
"""

from __future__ import annotations

import fcntl
import inspect
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Sequence

from . import receiver, receiver_files
from ..common.errors import RollbackError, StoreFullError
from ..common.fsutil import create_private
from ..common.labels import escape
from ..common.nofollow import private_dir_rule_source
from ..store.store import Store

NAMES_PER_REQUEST = 2000  # object names asked about (have) or fetched (get) per request
CHUNK = 1024 * 1024
PIPE_BYTES = 1024 * 1024  # the ssh pipes' capacity (Linux F_SETPIPE_SZ; the default 64 KiB stalls ssh every 64 KiB)
_F_SETPIPE_SZ = 1031
# A fraction of chacha20-poly1305's CPU at both ends where the processor has AES instructions (most x86 and arm64).
PREFERRED_CIPHER = "aes128-gcm@openssh.com"
_CIPHERS: dict = {}  # the cipher options for each host, port and user (ssh -G asked once per process)
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\[\]%-]{1,253}\Z")
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z")
_NAMESPACE_RE = receiver.HOST_RE
REMOTE_TEXT_LIMIT = 500  # characters of the repository's error text or of ssh's error output shown in a message


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
    """The receiver program sent to the repository host, with what it imports: ``receiver_files`` and the rule of
    ``common.nofollow``."""
    source = inspect.getsource(receiver)
    files = inspect.getsource(receiver_files).split("\n" + receiver_files.BODY_MARK + "\n", 1)[1]
    rule = private_dir_rule_source()
    head, guard, tail = source.rpartition('\nif __name__ == "__main__":')
    return (head + "\n" + files + "\n" + rule + "\n" + guard + tail).encode("utf-8")


class Connection:
    """One ssh session to the receiver on the repository host (use as a context manager)."""

    def __init__(self, spec: RepositorySpec) -> None:
        self.spec = spec
        self.workdir = ""
        self.proc: Optional[subprocess.Popen] = None
        self.stderr_path = ""
        self.bytes_sent = 0  # what crossed the SSH session after the receiver program (requests and their bytes)
        self.bytes_received = 0

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
        argv += cipher_options(spec)
        return argv + ["--", spec.host, "python3 %s -c %s" % (receiver.PYTHON_FLAGS, shlex.quote(receiver.BOOTSTRAP))]

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
            _widen_pipes(self.proc)
            source = receiver_source()
            self._write(b"%d\n" % len(source) + source)
            self.bytes_sent = 0
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

    def kill(self) -> None:
        """End ssh at once (a session that stopped answering); :meth:`close` follows."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        """End the session (the receiver stops at the end of its input) and remove the key files.

        Replies not read (a restore that stopped in the middle of a stream of objects) are dropped:
        the receiver, blocked writing them, ends on the closed pipe instead of waiting for a reader.
        """
        proc, self.proc = self.proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
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
        """The end of ssh's error output, escaped (it holds what the repository host printed)."""
        try:
            with open(self.stderr_path, "rb") as handle:
                text = handle.read()[-2000:].decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return escape(text[-REMOTE_TEXT_LIMIT:], REMOTE_TEXT_LIMIT) if text else ""

    def _lost(self, what: str) -> RepositoryError:
        proc = self.proc
        code = proc.poll() if proc else None
        return RepositoryError(
            "The repository %s could not be reached or stopped answering while %s (ssh exit status %s): %s. Check "
            "the address, the key (private_key or the host's own), that the repository host's key is in "
            "known_hosts, and that it has python3." % (self.spec.where(), what, code, self._stderr() or "no error output"))

    def _write(self, data) -> None:
        self.bytes_sent += len(data)
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

    def flush(self, what: str) -> None:
        """Push what was sent so far to the repository host."""
        try:
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise self._lost(what) from exc

    def reply(self, what: str) -> dict:
        """Read one reply line; a refusal raises RepositoryError (a full disk: StoreFullError)."""
        self.flush(what)
        line = self.proc.stdout.readline()
        if not line:
            raise self._lost(what)
        self.bytes_received += len(line)
        document = json.loads(line.decode("utf-8"))
        if document.get("error"):
            error = escape(document["error"], REMOTE_TEXT_LIMIT)  # the repository's text: no line or escape of its own
            if document.get("errno") in (28, 122):  # ENOSPC, EDQUOT
                raise StoreFullError("The repository %s is full (%s) while %s. What was already stored stays; no "
                                     "manifest names an object that is missing. Free space there and run again."
                                     % (self.spec.where(), error, what))
            raise RepositoryError("The repository %s refused %s: %s." % (self.spec.where(), what, error))
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
        self.bytes_received += size
        return data

    def read_into(self, path: str, size: int, what: str) -> None:
        """Read ``size`` announced bytes into a new private file at ``path``, CHUNK bytes at a time."""
        with os.fdopen(create_private(path), "wb") as out:
            left = size
            while left:
                data = self.read_exactly(min(CHUNK, left), what)
                out.write(data)
                left -= len(data)

    def hello(self, create: bool) -> dict:
        """Open the repository (creating it when ``create``) in this host's namespace."""
        return self.request({"op": "hello", "root": self.spec.path, "host": self.spec.namespace, "create": create},
                            "opening it")

    def have(self, names: Sequence[str], key_id: Optional[str] = None) -> set:
        """Return which of ``names`` the repository holds (with ``key_id``: sealed under that key).

        Objects are shared by name across host namespaces; a store whose key was rotated names its
        objects as before, so the copies sealed under the old key do not count as held.
        """
        found: set = set()
        for start in range(0, len(names), NAMES_PER_REQUEST):
            request = {"op": "have", "names": list(names[start:start + NAMES_PER_REQUEST])}
            if key_id:
                request["key_id"] = key_id
            found.update(self.request(request, "listing objects")["have"])
        return found


def _widen_pipes(proc: subprocess.Popen) -> None:
    """Let the pipes to and from ssh hold PIPE_BYTES, so ssh and this process wait on each other less (where allowed)."""
    for stream in (proc.stdin, proc.stdout):
        try:
            fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # not Linux, or above the system's pipe-max-size: the default capacity


def cipher_options(spec: RepositorySpec) -> List[str]:
    """``-o Ciphers=...`` with PREFERRED_CIPHER first, when the ssh configuration (the user's and the system's)
    leaves the ciphers for the repository host at ssh's defaults and they include it; else none (a Ciphers
    setting is kept as it is). The client offers the cipher first; a server without it agrees on the next
    one, as by default. ``ssh -G`` tells (it evaluates the configuration, connecting nowhere), once per process.
    """
    where = ["-p", str(int(spec.port))] + (["-l", spec.user] if spec.user else []) + ["--", spec.host]
    key = tuple(where)
    if key not in _CIPHERS:
        _CIPHERS[key] = preferred_ciphers(_ssh_ciphers(["ssh", "-G"] + where),
                                          _ssh_ciphers(["ssh", "-G", "-F", "/dev/null"] + where))
    return list(_CIPHERS[key])


def preferred_ciphers(configured: Optional[List[str]], defaults: Optional[List[str]]) -> List[str]:
    """The cipher options for ssh's effective ciphers ``configured`` and its built-in ``defaults`` (None: unknown)."""
    if not configured or configured != defaults or PREFERRED_CIPHER not in defaults or defaults[0] == PREFERRED_CIPHER:
        return []
    return ["-o", "Ciphers=" + ",".join([PREFERRED_CIPHER] + [name for name in defaults if name != PREFERRED_CIPHER])]


def _ssh_ciphers(argv: List[str]) -> Optional[List[str]]:
    """The ciphers ``ssh -G`` reports (the configuration evaluated, nothing connected); None when it cannot tell."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        if line.lower().startswith("ciphers "):
            return line.split(None, 1)[1].strip().split(",")
    return None


def known_hosts_line(address: str, port: int, public_key: str) -> str:
    """A known_hosts line for a host key (``[address]:port`` for a port other than 22)."""
    fields = public_key.split()
    host = address if port == 22 else "[%s]:%d" % (address, port)
    return "%s %s %s" % (host, fields[0], fields[1])


def recorded_format(hello: dict, spec: RepositorySpec) -> dict:
    """The store format the repository recorded for the host (from the reply to ``hello``); refuses a host it lacks."""
    if not hello.get("exists") or not hello.get("host_format"):
        raise RepositoryError("The repository %s holds no checkpoints of host %s. Sync them first "
                              "(gitops.rollback.checkpoint_sync), or set repository.name to the name they were "
                              "sent under." % (spec.where(), spec.namespace))
    return hello["host_format"]


# --------------------------------------------------------------------------- what a store holds


def needed_objects(store: Store, manifest: dict) -> List[str]:
    """Every object a checkpoint needs (trees, file contents, component data), once each, trees first."""
    return list(dict.fromkeys(store.referenced(manifest)))


def read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def compatible(local: dict, remote: Optional[dict]) -> Optional[str]:
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
