# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Building a release directory: its content from a directory or a Git tag, shared paths linked in, a digest
that says whether two builds hold the same content."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from typing import List, Optional, Tuple

from ..common.fsutil import is_temp_name
from ..common import nofollow
from ..common.nofollow import lstat_at, open_dir_at, open_listed, open_root, race_point, remove_at, remove_path
from ..common.process import run
from .root import ReleaseError, ReleaseRoot

_HEX_RE = re.compile(r"^[0-9a-f]{7,40}\Z")


def check_relative(path: str, what: str) -> str:
    """Return a normalised relative path; refuse absolute ones and ``..``."""
    norm = os.path.normpath(path)
    if os.path.isabs(path) or norm == "." or norm.split(os.sep)[0] == "..":
        raise ReleaseError("%s %r must be a relative path inside the release (no leading / or ..)." % (what, path))
    return norm


def tree_digest(top: str) -> str:
    """Return a SHA-256 over a tree: every relative path, type, mode, content or link target.

    Directories are walked top-down, names sorted, ``.git`` left out; each entry but a directory goes in
    as ``path NUL mode NUL content-or-target NUL``. The tree is reached through directory descriptors
    and no link below ``top`` is followed: a file is read only when the descriptor opened (``O_NOFOLLOW``,
    never blocking) is the regular file that was listed; one replaced meanwhile is described as what is
    there now (a link as a link).
    """
    digest = hashlib.sha256()
    top_fd = open_root(os.path.realpath(top))
    try:
        _digest_dir(top_fd, "", digest)
    finally:
        os.close(top_fd)
    return digest.hexdigest()


def _digest_dir(dir_fd: int, prefix: str, digest) -> None:
    listed = {}
    for name in os.listdir(dir_fd):
        try:
            listed[name] = lstat_at(dir_fd, name)
        except FileNotFoundError:
            continue
    subdirs = sorted(name for name, st in listed.items() if stat.S_ISDIR(st.st_mode) and name != ".git")
    for name in sorted(name for name, st in listed.items() if not stat.S_ISDIR(st.st_mode)):
        if name != ".git" or not _links_to_directory(dir_fd, name, listed[name]):
            _digest_entry(dir_fd, name, prefix + name, listed[name], digest)
    for name in subdirs:
        child = open_dir_at(dir_fd, name, prefix + name)
        try:
            _digest_dir(child, prefix + name + "/", digest)
        finally:
            os.close(child)


def _links_to_directory(dir_fd: int, name: str, st: os.stat_result) -> bool:
    """Tell whether a link points at a directory (a ``.git`` link to one is left out like a ``.git`` directory)."""
    try:
        return stat.S_ISLNK(st.st_mode) and stat.S_ISDIR(os.stat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _digest_entry(dir_fd: int, name: str, rel: str, st: os.stat_result, digest) -> None:
    """Add one entry that is not a directory: its path, mode and content (a file) or target (a link)."""
    if nofollow.race_hook is not None:
        race_point("walk.listed", rel=rel)
    content = None
    if stat.S_ISREG(st.st_mode):
        content = open_listed(dir_fd, name, st.st_dev, st.st_ino)
        if content is None:  # replaced since it was listed: describe what is there now
            try:
                st = lstat_at(dir_fd, name)
            except FileNotFoundError:
                st = None
            content = open_listed(dir_fd, name, st.st_dev, st.st_ino) if st and stat.S_ISREG(st.st_mode) else None
            if st is None or (content is None and stat.S_ISREG(st.st_mode)):
                raise ReleaseError("%s in the release source changed while it was read; run again." % rel)
    digest.update(("%s\0%o\0" % (rel, st.st_mode)).encode("utf-8", "surrogateescape"))
    if stat.S_ISLNK(st.st_mode):
        digest.update(os.readlink(name, dir_fd=dir_fd).encode("utf-8", "surrogateescape"))
    elif content is not None:
        try:
            for chunk in iter(lambda: os.read(content, 1 << 20), b""):
                digest.update(chunk)
        finally:
            os.close(content)
    digest.update(b"\0")


def ls_remote_argv(repo: str, version: str) -> List[str]:
    """Return the git command that asks a repository which commit ``version`` names."""
    return ["git", "ls-remote", "--", repo, version, "refs/tags/%s^{}" % version]


def remote_commit(repo: str, version: str) -> Tuple[Optional[str], bool]:
    """Ask the repository (git ls-remote) which commit ``version`` names; return (commit, is_tag)."""
    out = run(ls_remote_argv(repo, version), "git ls-remote of %s" % repo,
              env={"GIT_TERMINAL_PROMPT": "0"}).stdout.decode()
    refs = dict(reversed(line.split("\t", 1)) for line in out.splitlines() if "\t" in line)
    for ref in ("refs/tags/%s^{}" % version, "refs/tags/%s" % version, "refs/heads/%s" % version, version):
        if ref in refs:
            return refs[ref], ref.startswith("refs/tags/")
    if _HEX_RE.match(version):
        return version, False
    raise ReleaseError("Version %r is neither a branch, a tag nor a commit of %s. Push it, or name an "
                       "existing tag or branch." % (version, repo))


def checkout(repo: str, version: str, into: str) -> Tuple[str, List[List[str]]]:
    """Clone ``repo`` into ``into`` at ``version`` (without .git); return (commit, commands run)."""
    env = {"GIT_TERMINAL_PROMPT": "0"}
    commands = [["git", "clone", "--quiet", "--no-checkout", "--", repo, into]]
    run(commands[-1], "git clone of %s" % repo, env=env)
    commit = None
    for candidate in (version, "origin/%s" % version):
        argv = ["git", "-C", into, "rev-parse", "--verify", "--quiet", "%s^{commit}" % candidate]
        done = run(argv, "git rev-parse", env=env, check=False)
        if done.rc == 0:
            commit = done.stdout.decode().strip()
            break
    if commit is None:
        raise ReleaseError("Version %r is not in %s. Name an existing tag, branch or commit." % (version, repo))
    commands.append(["git", "-C", into, "checkout", "--quiet", "--detach", commit])
    run(commands[-1], "git checkout of %s" % version, env=env)
    shutil.rmtree(os.path.join(into, ".git"))
    return commit, commands


def link_shared(root: ReleaseRoot, release_dir: str, shared: List[str]) -> None:
    """Link each shared path into a release; a path missing under shared/ is seeded from the release.

    The application writes below ``shared/`` and a release's content may hold links, so both sides are
    reached from their directories' descriptors, following no link (common/nofollow.py).
    """
    for rel_path in shared:
        name = os.path.basename(rel_path)
        in_release = os.path.join(release_dir, rel_path)
        in_shared = root.join("shared", rel_path)
        shared_fd = open_root(os.path.dirname(in_shared), create=True)
        try:
            release_fd = open_root(os.path.dirname(in_release), create=True)
            try:
                _link_one(shared_fd, release_fd, name, os.path.relpath(in_shared, os.path.dirname(in_release)),
                          in_release)
            finally:
                os.close(release_fd)
        finally:
            os.close(shared_fd)


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        lstat_at(dir_fd, name)
    except FileNotFoundError:
        return False
    return True


def _link_one(shared_fd: int, release_fd: int, name: str, target: str, where: str) -> None:
    if not _exists_at(shared_fd, name):
        if _exists_at(release_fd, name):
            os.rename(name, name, src_dir_fd=release_fd, dst_dir_fd=shared_fd)  # the first release seeds it
        else:
            os.mkdir(name, 0o755, dir_fd=shared_fd)
    remove_at(release_fd, name, where)
    os.symlink(target, name, dir_fd=release_fd)


def remove_tree(path: str) -> None:
    """Remove a release directory (or a leftover temporary one), following no link."""
    remove_path(path)


def leftovers(root: ReleaseRoot) -> List[str]:
    """Return the incomplete (temporary) release directories left by interrupted deploys."""
    releases = root.join("releases")
    if not os.path.isdir(releases):
        return []
    return sorted(os.path.join(releases, name) for name in os.listdir(releases) if is_temp_name(name))
