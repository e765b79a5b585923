"""Real Git repositories with one commit and one annotated tag per release."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

Files = Mapping[str, bytes | str]
"""Release contents: path relative to the repository root -> file contents."""

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "gitops-rollback harness",
    "GIT_AUTHOR_EMAIL": "harness@example.invalid",
    "GIT_COMMITTER_NAME": "gitops-rollback harness",
    "GIT_COMMITTER_EMAIL": "harness@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


@dataclass
class RepoInfo:
    """A repository made by :func:`make_repo`."""

    path: Path
    tags: dict[str, str] = field(default_factory=dict)
    """Tag name -> commit SHA, in release order."""
    branch: str = "main"

    @property
    def url(self) -> str:
        """``file://`` URL usable by ``git clone`` / ``ansible.builtin.git``."""
        return self.path.as_uri()

    @property
    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")

    def git(self, *args: str) -> str:
        """Run ``git`` in this repository; return stripped stdout."""
        return git(self.path, *args)

    def show(self, rev: str, relpath: str) -> bytes:
        """Contents of ``relpath`` at ``rev`` (tag, branch or SHA)."""
        return subprocess.run(["git", "-C", str(self.path), "show", f"{rev}:{relpath}"], check=True,
                              capture_output=True, env={**os.environ, **_GIT_ENV}).stdout


def git(repo: str | os.PathLike[str], *args: str) -> str:
    """Run ``git -C repo ARGS`` with an isolated config; raise with stderr on failure."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env={**os.environ, **_GIT_ENV}, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _replace_tree(path: Path, files: Files) -> None:
    for entry in path.iterdir():
        if entry.name == ".git":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for rel, content in files.items():
        target = path / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ValueError(f"release path must be relative and inside the repo: {rel}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)


def add_release(repo: RepoInfo, tag: str, files: Files, message: str | None = None) -> str:
    """Commit ``files`` as the complete tree of a new release, tag it (annotated); return the SHA.

    Files of earlier releases not listed in ``files`` are removed.
    """
    _replace_tree(repo.path, files)
    git(repo.path, "add", "--all", "--", ".")
    git(repo.path, "-c", "commit.gpgsign=false", "commit", "--quiet", "--allow-empty",
        "-m", message or f"release {tag}")
    git(repo.path, "-c", "tag.gpgsign=false", "tag", "-a", tag, "-m", f"release {tag}")
    sha = git(repo.path, "rev-parse", f"{tag}^{{commit}}")
    repo.tags[tag] = sha
    return sha


def make_repo(path: str | os.PathLike[str], releases: Mapping[str, Files], branch: str = "main") -> RepoInfo:
    """Create a Git repository at ``path`` with one commit + annotated tag per release.

    ``releases`` maps tag (``v1``, ``v2`` ...) to the full file tree of that
    release, applied in insertion order.  Returns a :class:`RepoInfo` whose
    ``tags`` maps tag -> commit SHA.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", "-b", branch)
    repo = RepoInfo(path.resolve(), branch=branch)
    for tag, files in releases.items():
        add_release(repo, tag, files)
    return repo
