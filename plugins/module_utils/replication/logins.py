# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bound logins on a repository host: the receiver program installed there and one ``authorized_keys`` line per host.

Each line forces ``python3 -I -S <receiver> --namespace <host>`` (docs/repository.md, "A login bound to its
namespace"), so the key opens that namespace only. The lines live in a block between two marker comments; lines
outside it are never changed. Namespaces and keys come from the inventory (other hosts' variables): each is
checked against a grammar before it is written, and written only in the form rendered here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import pwd
import re
import stat
import struct
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple

from ..common.errors import RollbackError
from ..common.nofollow import lstat_at, open_dir_at, open_root, private_dir_problem, read_small, write_file_at
from .receiver import HOST_RE, PYTHON_FLAGS

BEGIN = "# BEGIN gitops.rollback repository logins (written by Ansible: edits inside this block are replaced)"
END = "# END gitops.rollback repository logins"
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
_KEY_RE = re.compile(r"\A(?P<type>[a-z0-9@.-]{1,40}) (?P<blob>[A-Za-z0-9+/]{16,16384}={0,2})(?: [\x20-\x7e]{0,200})?\Z")
_RECEIVER_RE = re.compile(r"\A(?:/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,127}){1,32}\Z")  # no "." or ".." component
FILE_LIMIT = 4 * 1024 * 1024  # an authorized_keys file larger than this is refused, not read


class LoginError(RollbackError):
    """A login, a path or the authorized_keys file is not what this module can write safely."""


@dataclass(frozen=True)
class Login:
    """One managed host's bound login: its namespace and its public key (type and base64 blob)."""

    namespace: str
    key_type: str
    blob: str

    @property
    def fingerprint(self) -> str:
        """The key's SHA256 fingerprint, as ``ssh-keygen -l`` shows it."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")

    def line(self, receiver: str) -> str:
        """The authorized_keys line that binds this key to its namespace."""
        command = "python3 %s %s --namespace %s" % (PYTHON_FLAGS, receiver, self.namespace)
        return 'restrict,command="%s" %s %s gitops-rollback:%s' % (command, self.key_type, self.blob, self.namespace)

    def public(self) -> dict:
        """What a module returns about the login."""
        return {"namespace": self.namespace, "key_type": self.key_type, "fingerprint": self.fingerprint}


def parse_login(namespace: object, public_key: object) -> Login:
    """Check a namespace and an OpenSSH public key line (``type base64 [comment]``); the comment is dropped."""
    if not isinstance(namespace, str) or not HOST_RE.match(namespace):
        raise LoginError("The namespace %r is not a host namespace (a letter or digit, then letters, digits, . _ -; at "
                         "most 253). Use the host's repository.name (default: its inventory name)." % (namespace,))
    found = _KEY_RE.match(public_key.strip(" ") if isinstance(public_key, str) else "")
    if not found or found.group("type") not in KEY_TYPES:
        raise LoginError("The public key for namespace %s is not one OpenSSH public key line (%s, then the key in "
                         "base64, then an optional comment; no options, no line breaks). Give the content of the "
                         "host's .pub file." % (namespace, ", ".join(KEY_TYPES)))
    key_type, blob = found.group("type"), found.group("blob")
    if _embedded_type(blob) != key_type:
        raise LoginError("The public key for namespace %s is not a %s key: its base64 does not decode to one. Give "
                         "the content of the host's .pub file." % (namespace, key_type))
    return Login(namespace, key_type, blob)


def _embedded_type(blob: str) -> Optional[str]:
    """The key type named inside a key blob (its first string), or None when it holds none."""
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 4:
        return None
    size = struct.unpack(">I", raw[:4])[0]
    if size > 64 or len(raw) < 4 + size + 4:
        return None
    return raw[4:4 + size].decode("ascii", "replace")


def parse_logins(entries: Iterable[Tuple[object, object]]) -> List[Login]:
    """Check every (namespace, public key) pair; one key may bind one namespace only. Sorted by namespace."""
    logins: List[Login] = []
    seen: dict = {}
    for namespace, public_key in entries:
        login = parse_login(namespace, public_key)
        other = seen.setdefault(login.blob, login.namespace)
        if other != login.namespace:
            raise LoginError("The key %s is given for namespaces %s and %s: sshd would bind it to the first one "
                             "only. Give each host its own key." % (login.fingerprint, other, login.namespace))
        if login not in logins:
            logins.append(login)
    return sorted(logins, key=lambda item: (item.namespace, item.blob))


def check_receiver_path(path: str) -> None:
    """Refuse a receiver path that could not stand in a forced command as it is (spaces, quotes, ``..``)."""
    if not isinstance(path, str) or not _RECEIVER_RE.match(path):
        raise LoginError("The receiver path %r is not an absolute path of letters, digits and _ . + - (it is written "
                         "into each forced command as it is). Choose a path such as "
                         "/usr/local/lib/gitops-rollback/receiver.py." % (path,))


# ------------------------------------------------------------------------------ the authorized_keys text
def split_block(text: str) -> Tuple[List[str], List[str], List[str]]:
    """The lines before the managed block, in it (markers excluded) and after it; no block: all lines before.

    Lines end at LF only and keep every other byte (a CR of a CRLF file, a form feed), so the lines the module
    does not manage are written back as they were."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    begins = [index for index, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [index for index, line in enumerate(lines) if line.strip() == END]
    if not begins and not ends:
        return lines, [], []
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise LoginError("The authorized_keys file holds the markers of the managed block %d and %d times, or out of "
                         "order: remove the lines '%s' and '%s' there, and run again." % (len(begins), len(ends), BEGIN, END))
    return lines[:begins[0]], lines[begins[0] + 1:ends[0]], lines[ends[0] + 1:]


def render(text: str, logins: Sequence[Login], receiver: str) -> str:
    """The file with its managed block holding ``logins`` (no block when there are none); other lines unchanged."""
    before, _block, after = split_block(text)
    _refuse_unmanaged_duplicates(before + after, logins)
    block = [BEGIN] + [login.line(receiver) for login in logins] + [END] if logins else []
    if after or not block:
        lines = before + block + after
    else:
        lines = before + block
    return "\n".join(lines) + "\n" if lines else ""


def _refuse_unmanaged_duplicates(lines: Sequence[str], logins: Sequence[Login]) -> None:
    """Refuse a managed key that a line outside the block holds too (sshd may use that line, unbound)."""
    blobs = {login.blob: login for login in logins}
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("#"):
            continue
        for word in line.split():
            if word in blobs:
                login = blobs[word]
                raise LoginError("The key %s of namespace %s is also in a line of authorized_keys that this role does "
                                 "not manage (line %d outside the block): sshd could log it in through that line, "
                                 "unbound. Remove that line and run again." % (login.fingerprint, login.namespace, number))


def block_text(text: str) -> str:
    """The managed block of a file's text (for diffs: other keys are not shown)."""
    _before, block, _after = split_block(text)
    return "\n".join(block) + "\n" if block else ""


# ------------------------------------------------------------------------------ files, reached through no link
@dataclass
class FileState:
    """A file as found: its bytes (None: missing), mode and owner."""

    data: Optional[bytes]
    mode: int = 0
    uid: int = -1
    gid: int = -1


def read_state(dir_fd: int, name: str, where: str) -> FileState:
    """Read ``name`` below ``dir_fd`` (a regular file, no link) or report it missing."""
    try:
        status = lstat_at(dir_fd, name)
    except FileNotFoundError:
        return FileState(None)
    data = read_small(dir_fd, name, FILE_LIMIT) if stat.S_ISREG(status.st_mode) else None
    if data is None:
        raise LoginError("%s is not a regular file of at most %d bytes (a link, or something else): refusing to read or "
                         "replace it. Remove it and run again." % (where, FILE_LIMIT))
    return FileState(data, stat.S_IMODE(status.st_mode), status.st_uid, status.st_gid)


def open_key_dir(path: str, home: str, owner: Tuple[int, int], create: bool) -> Optional[int]:
    """Open the directory of an authorized_keys file, following no link the account could have made.

    Links are resolved above the account's ``home`` (root's directories) and, for a file outside the home, above
    its directory; from there every directory is opened without following a link. The file's own directory is
    made (mode 0700, owned by ``owner``) when it is missing and ``create``; a missing one is None otherwise.
    """
    parent = os.path.normpath(path.rsplit("/", 1)[0] or "/")
    home = os.path.normpath(home)
    base = home if parent == home or parent.startswith(home.rstrip("/") + "/") else os.path.dirname(parent)
    parts = [part for part in parent[len(base):].split("/") if part]
    fd = open_root(os.path.realpath(base))
    try:
        for depth, name in enumerate(parts):
            last = depth == len(parts) - 1
            try:
                child = open_dir_at(fd, name, parent)
            except FileNotFoundError:
                if not (create and last):
                    return None
                os.mkdir(name, 0o700, dir_fd=fd)
                child = open_dir_at(fd, name, parent)
                os.fchown(child, owner[0], owner[1])
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_receiver_dir(path: str, check: bool) -> Optional[int]:
    """Open (or, unless ``check``, make) the receiver's directory; it must be root's and writable by nobody else."""
    parent = os.path.dirname(path)
    problem = private_dir_problem(parent) if os.geteuid() == 0 else "this module does not run as root"
    if problem:
        raise LoginError("The receiver's directory %s is not safe for a program that bound logins run: %s. Choose a "
                         "directory that belongs to root and that no other user can write." % (parent, problem))
    try:  # the links on the path were judged (root's), so they are followed; below them nothing is
        return open_root(os.path.realpath(parent), create=not check)
    except FileNotFoundError:
        return None  # check mode: it would be made


def write(dir_fd: int, name: str, data: bytes, mode: int, owner: Tuple[int, int]) -> None:
    """Replace ``name`` below ``dir_fd`` atomically (a new file renamed over it; a link there is replaced)."""
    write_file_at(dir_fd, name, data, mode, owner)


# ------------------------------------------------------------------------------ one run
_NAMESPACE_IN_LINE = re.compile(r'--namespace ([A-Za-z0-9._-]+)"')


@dataclass
class Request:
    """What a run makes true: the receiver installed, and the managed block holding exactly ``logins``."""

    user: str
    receiver: str
    logins: List[Login]
    authorized_keys: Optional[str] = None  # default: the account's ~/.ssh/authorized_keys
    diffs: List[dict] = field(default_factory=list)


def account(user: str) -> Tuple[int, int, str]:
    """The uid, gid and home of an account."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise LoginError("The account %s does not exist on the repository host. Create it (the role does with "
                         "repository_host_create_user: true) and run again." % user) from None
    return entry.pw_uid, entry.pw_gid, entry.pw_dir


def converge(request: Request, source: bytes, check: bool) -> dict:
    """Install the receiver ``source`` and write the managed block (unless ``check``); return what changed."""
    check_receiver_path(request.receiver)
    uid, gid, home = account(request.user)
    path = request.authorized_keys or os.path.join(home, ".ssh", "authorized_keys")
    if not os.path.isabs(path):
        raise LoginError("The authorized_keys path %r is not absolute." % path)
    receiver = _install_receiver(request, source, check)
    keys = _write_block(request, path, home, (uid, gid), check)
    return {"changed": receiver["changed"] or keys["changed"], "receiver": receiver, "authorized_keys": keys,
            "logins": [login.public() for login in request.logins]}


def _install_receiver(request: Request, source: bytes, check: bool) -> dict:
    dir_fd = open_receiver_dir(request.receiver, check)
    name = os.path.basename(request.receiver)
    try:
        found = read_state(dir_fd, name, request.receiver) if dir_fd is not None else FileState(None)
        changed = found.data != source or found.mode != 0o644 or (found.uid, found.gid) != (0, 0)
        if changed and not check:
            write(dir_fd, name, source, 0o644, (0, 0))
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    request.diffs.append({"before_header": request.receiver, "after_header": request.receiver,
                          "before": _describe(found), "after": _describe(FileState(source, 0o644, 0, 0))})
    return {"path": request.receiver, "changed": changed, "sha256": hashlib.sha256(source).hexdigest()}


def _describe(state: FileState) -> str:
    if state.data is None:
        return "(absent)\n"
    return "sha256 %s, mode %04o, owner %d:%d\n" % (hashlib.sha256(state.data).hexdigest(), state.mode, state.uid, state.gid)


def _write_block(request: Request, path: str, home: str, owner: Tuple[int, int], check: bool) -> dict:
    dir_fd = open_key_dir(path, home, owner, create=not check)  # None in check mode: the directory would be made
    if dir_fd is None and not check:
        raise LoginError("The directories above %s are missing (only the file's own directory is made). Make them, "
                         "or choose another authorized_keys path, and run again." % path)
    name = os.path.basename(path)
    try:
        found = read_state(dir_fd, name, path) if dir_fd is not None else FileState(None)
        text = (found.data or b"").decode("utf-8", "surrogateescape")
        new = render(text, request.logins, request.receiver)
        mode = found.mode & ~0o022 if found.data is not None else 0o600
        keep = (found.uid, found.gid) if found.data is not None else owner
        changed = new != text or mode != found.mode
        if changed and not check:
            write(dir_fd, name, new.encode("utf-8", "surrogateescape"), mode, keep)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    old_block, new_block = block_text(text), block_text(new)
    request.diffs.append({"before_header": path + " (managed block)", "after_header": path + " (managed block)",
                          "before": old_block, "after": new_block})
    old_lines, new_lines = set(old_block.splitlines()), set(new_block.splitlines())
    return {"path": path, "changed": changed,
            "added": sorted(_namespaces(new_lines - old_lines)), "removed": sorted(_namespaces(old_lines - new_lines))}


def _namespaces(lines: Iterable[str]) -> List[str]:
    return [found.group(1) for found in map(_NAMESPACE_IN_LINE.search, lines) if found]
