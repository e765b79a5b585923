# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Git side of Terraform rollback: a configuration's commit, and a worktree at a tag.

GitPython is used on the controller and imported lazily, so hosts without it can still
import this file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Iterator, Optional, Tuple

from ..common.errors import RollbackError

GITPYTHON_PACKAGE = "GitPython"


class GitError(RollbackError):
    """The configuration repository or the tag cannot be used."""


def _git_module() -> Any:
    try:
        # imported when used (documented exception): GitPython takes about a second to import, and the
        # runs that never read a Git tag (most Terraform snapshots and reverts) should not pay for it
        import git  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise GitError(
            "GitPython is not installed on the controller (%s). Install it with 'pip install %s' in "
            "the Python that runs Ansible." % (exc, GITPYTHON_PACKAGE)
        ) from exc
    return git


def config_commit(path: str) -> Optional[str]:
    """Return the commit checked out in the repository holding ``path``, or None (no repo, no GitPython)."""
    try:
        git = _git_module()
        return git.Repo(path, search_parent_directories=True).head.commit.hexsha
    except Exception:  # pylint: disable=broad-except  # a commit is a nice-to-have in the manifest
        return None


def open_repo(project_path: str, repo_path: Optional[str]) -> Tuple[Any, str]:
    """Open the configuration repository; return it and the configuration's path inside it."""
    git = _git_module()
    try:
        repo = git.Repo(repo_path or project_path, search_parent_directories=repo_path is None)
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError) as exc:
        raise GitError(
            "%s is not in a Git repository (%s). Give config_repo, the repository of the "
            "Terraform configuration." % (repo_path or project_path, exc.__class__.__name__)
        ) from exc
    top = os.path.realpath(repo.working_tree_dir)
    relative = os.path.relpath(os.path.realpath(project_path), top)
    if relative.startswith(".."):
        raise GitError("project_path %s is not inside the repository %s. Give config_repo of the repository that "
                       "holds the configuration." % (project_path, top))
    return repo, relative


def resolve_tag(repo: Any, tag: str) -> str:
    """Return the commit a tag (or any revision) names, or fail listing the tags there are."""
    git = _git_module()
    try:
        return repo.commit(tag).hexsha
    except (git.exc.BadName, ValueError) as exc:
        tags = sorted(t.name for t in repo.tags)
        raise GitError("Tag %r is not in %s (have: %s). Push the tag or give an existing one."
                       % (tag, repo.working_tree_dir, ", ".join(tags[-20:]) or "none")) from exc


def _config_commit(repo: Any, relative: str, tag: str) -> str:
    """Return the commit ``tag`` names, or fail: the tag is not there, or the configuration's directory was not
    there at that tag."""
    commit = resolve_tag(repo, tag)
    if relative not in ("", "."):
        try:
            present = (repo.commit(commit).tree / relative).type == "tree"
        except KeyError:
            present = False
        if not present:
            raise GitError("Tag %r of %s has no directory %s: the configuration was not there at that tag."
                           % (tag, repo.working_tree_dir, relative))
    return commit


def check_tag(project_path: str, repo_path: Optional[str], tag: str) -> str:
    """Fail as :func:`worktree_at` would, without checking anything out; return the tag's commit. Called
    before a change the tag verifies."""
    repo, relative = open_repo(project_path, repo_path)
    return _config_commit(repo, relative, tag)


@contextlib.contextmanager
def worktree_at(project_path: str, repo_path: Optional[str], tag: str) -> Iterator[Tuple[str, str]]:
    """Check the configuration out at ``tag`` into a temporary worktree; yield (config dir, commit).

    The worktree is removed afterwards, whatever happens.
    """
    repo, relative = open_repo(project_path, repo_path)
    commit = _config_commit(repo, relative, tag)
    parent = tempfile.mkdtemp(prefix="gitops-tf-worktree-")
    tree = os.path.join(parent, "tree")
    try:
        repo.git.worktree("add", "--detach", tree, commit)
        config_dir = os.path.normpath(os.path.join(tree, relative))
        yield config_dir, commit
    finally:
        try:
            repo.git.worktree("remove", "--force", tree)
        except Exception:  # pylint: disable=broad-except  # still remove the directory below
            pass
        shutil.rmtree(parent, ignore_errors=True)
        try:
            repo.git.worktree("prune")
        except Exception:  # pylint: disable=broad-except
            pass
