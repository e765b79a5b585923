# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Configuration templates from a Git repository as of a tag (controller side, GitPython).

The tree of the tag is written into a temporary directory straight from the object database:
a checkout that works on bare repositories, never touches the repository itself (no
``.git/worktrees`` entry, no index) and so is safe while pushes and hooks run, and when several
hosts render at the same time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from typing import Any, Iterator, List, Tuple

from ..common.errors import RollbackError


class GitConfigError(RollbackError):
    """The configuration repository, the tag or the template directory cannot be used."""


def _git_module() -> Any:
    try:
        # imported when used (documented exception): GitPython takes about a second to import, and the
        # runs that never read a Git tag (most Terraform snapshots and reverts) should not pay for it
        import git  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise GitConfigError("GitPython is not installed on the controller (%s). Install it with "
                             "'pip install GitPython' in the Python that runs Ansible." % exc) from exc
    return git


def open_repo(path: str) -> Any:
    """Open a local repository (bare or with a working tree)."""
    git = _git_module()
    try:
        return git.Repo(path)
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError) as exc:
        raise GitConfigError("%s is not a Git repository (%s). Give the path of the config repository on the "
                             "controller." % (path, exc.__class__.__name__)) from exc


def resolve(repo: Any, version: str) -> Any:
    """The commit a tag, branch or SHA names; fail listing the newest tags."""
    git = _git_module()
    try:
        return repo.commit(version)
    except (git.exc.BadName, ValueError) as exc:
        tags = sorted(t.name for t in repo.tags)
        raise GitConfigError("Version %r is not in %s (tags: %s). Push the tag or give an existing one."
                             % (version, repo.git_dir, ", ".join(tags[-20:]) or "none")) from exc


_UNSAFE_NAMES = {"", ".", "..", ".git"}


def _entries(tree: Any, version: str) -> List[Any]:
    """Return a tree's entries; refuse a name that is no plain file name (a crafted tree can hold '..')."""
    try:
        items = list(tree)
    except ValueError as exc:  # GitPython refuses some unsafe names itself
        raise GitConfigError("The tree of %s holds a path that is not a safe path (%s); nothing was rendered. Its "
                             "commit was crafted (git fsck reports it): push a clean one." % (version, exc)) from exc
    for item in items:
        if item.name.lower() in _UNSAFE_NAMES or "/" in item.name or "\0" in item.name:
            raise GitConfigError("The tree of %s holds an entry named %r, which is not a safe path; nothing was "
                                 "rendered. Its commit was crafted (git fsck reports it): push a clean one."
                                 % (version, item.name))
    return items


def _export(tree: Any, target: str, version: str) -> None:
    os.makedirs(target, exist_ok=True)
    for item in _entries(tree, version):
        path = os.path.join(target, item.name)
        if item.type == "tree":
            _export(item, path, version)
        elif item.type == "blob" and not stat.S_ISLNK(item.mode):
            with open(path, "wb") as handle:
                item.stream_data(handle)
            os.chmod(path, 0o755 if item.mode & 0o111 else 0o644)


@contextlib.contextmanager
def checkout_at(repo_path: str, version: str, subdir: str = "") -> Iterator[Tuple[str, str]]:
    """Write the tree of ``version`` (only ``subdir``) to a temporary directory; yield (dir, commit sha)."""
    repo = open_repo(repo_path)
    commit = resolve(repo, version)
    tree = commit.tree
    if subdir.strip("/"):
        try:
            tree = tree / subdir.strip("/")
        except KeyError as exc:
            raise GitConfigError("%s has no directory %r at %s (%s)."
                                 % (repo_path, subdir, version, commit.hexsha[:12])) from exc
    parent = tempfile.mkdtemp(prefix="gitops-config-")
    try:
        _export(tree, os.path.join(parent, "tree"), version)
        yield os.path.join(parent, "tree"), commit.hexsha
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def templates_in(root: str, suffix: str) -> List[str]:
    """Relative paths of the files ending in ``suffix`` under ``root`` (sorted)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(suffix):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return found


def destination(relative: str, suffix: str) -> str:
    """Destination path of a template relative to dest: the suffix dropped."""
    return relative[: -len(suffix)] if suffix and relative.endswith(suffix) else relative
