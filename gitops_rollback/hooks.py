"""Git side of the command: the post-receive hook, tag listing for ``watch``, peeling tags to commits."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HOOK_MARK = "# gitops-rollback post-receive hook"
# Variables git sets for hooks that would point git commands run by the playbooks at this repository.
GIT_LOCATION_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_QUARANTINE_PATH",
                          "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_PREFIX",
                          "GIT_PUSH_OPTION_COUNT")


class HookError(RuntimeError):
    """The hook cannot be installed or the repository cannot be read."""


@dataclass(frozen=True)
class TagRef:
    """A tag as listed from a repository: its object and the commit it names."""

    name: str
    object: str
    commit: str


def scrub_git_environment() -> None:
    """Drop the repository-location variables a hook inherits (GIT_DIR=. and friends)."""
    for name in list(os.environ):
        if name in GIT_LOCATION_VARIABLES or name.startswith("GIT_PUSH_OPTION_"):
            del os.environ[name]


def _git(args: Sequence[str], what: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in GIT_LOCATION_VARIABLES}
    env["LC_ALL"] = "C"
    proc = subprocess.run(["git", *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise HookError(f"{what} failed (git {' '.join(args)}, rc {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def is_local(repo: str) -> bool:
    """True for a repository path on this machine (bare or not)."""
    return "://" not in repo and not (":" in repo.split("/")[0]) and Path(repo).exists()


def list_tags(repo: str) -> List[TagRef]:
    """Tags of a local repository (oldest first) or of a remote URL (``git ls-remote``)."""
    if is_local(repo):
        out = _git(["--git-dir", _git_dir(repo), "for-each-ref", "--sort=creatordate",
                    "--format=%(refname) %(objectname) %(*objectname)", "refs/tags"], f"Listing the tags of {repo}")
        tags = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                tags.append(TagRef(parts[0][len("refs/tags/"):], parts[1], parts[2] if len(parts) > 2 else parts[1]))
        return tags
    out = _git(["ls-remote", "--tags", repo], f"Listing the tags of {repo}")
    objects: Dict[str, str] = {}
    peeled: Dict[str, str] = {}
    for line in out.splitlines():
        sha, ref = line.split("\t", 1) if "\t" in line else (line, "")
        name = ref[len("refs/tags/"):]
        if name.endswith("^{}"):
            peeled[name[:-3]] = sha
        else:
            objects[name] = sha
    return [TagRef(name, sha, peeled.get(name, sha)) for name, sha in sorted(objects.items())]


def _git_dir(repo: str) -> str:
    path = Path(repo)
    return str(path / ".git") if (path / ".git").exists() else str(path)


def peel(repo: Optional[str], obj: str) -> str:
    """The commit an object (annotated tag or commit) names in a local repository; ``obj`` if unknown."""
    if not repo or not obj or not is_local(repo):
        return obj
    try:
        return _git(["--git-dir", _git_dir(repo), "rev-parse", "--verify", "--quiet", "--end-of-options",
                     f"{obj}^{{commit}}"],
                    "Resolving a tag").strip() or obj
    except HookError:
        return obj


def hook_source(trigger_args: Sequence[str]) -> str:
    """The post-receive hook: this Python runs ``gitops-rollback trigger --stdin-refs`` with ``trigger_args``.

    Git shows the hook's stdout and stderr to the pusher (``remote: ...``): progress, the decision
    per ref, and every failure, including a hook that cannot start.
    """
    package_parent = str(Path(__file__).resolve().parents[1])
    return (
        f"#!{sys.executable}\n"
        f"{HOOK_MARK} (written by 'gitops-rollback install-hook'; run that again to change it).\n"
        "# Reads '<old> <new> <ref>' lines on stdin; tags matching the patterns trigger a checkpoint or a\n"
        "# rollback through ansible-runner, everything else is ignored with a line saying why.\n"
        "import sys\n\n"
        f"sys.path.insert(0, {package_parent!r})\n"
        "try:\n"
        "    from gitops_rollback.cli import main\n"
        "except Exception as exc:  # pylint: disable=broad-except\n"
        "    sys.stderr.write('gitops-rollback: the post-receive hook %s cannot start (%s: %s); nothing ran for '\n"
        "                     'this push. Reinstall the command, then run gitops-rollback install-hook again.\\n'\n"
        "                     % (__file__, type(exc).__name__, exc))\n"
        "    sys.exit(1)\n\n"
        f"sys.exit(main({['trigger', '--stdin-refs', *trigger_args]!r}))\n"
    )


def install_hook(repo: str, trigger_args: Sequence[str], force: bool = False) -> Path:
    """Write ``hooks/post-receive`` in ``repo`` (mode 0755); refuse to replace a foreign hook unless forced."""
    git_dir = Path(_git_dir(repo))
    if not (git_dir / "objects").is_dir() or not (git_dir / "refs").is_dir():
        raise HookError(f"{repo} is not a Git repository (no objects/ and refs/). Give the path of the bare "
                        "repository the tags are pushed to.")
    hook = git_dir / "hooks" / "post-receive"
    if hook.exists() and HOOK_MARK not in hook.read_text(encoding="utf-8", errors="replace") and not force:
        raise HookError(f"{hook} exists and was not written by gitops-rollback. Move it away, or give --force "
                        "to replace it (call it from the new hook yourself if you still need it).")
    hook.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".post-receive.", dir=str(hook.parent))  # O_EXCL: never through a planted link
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(hook_source(trigger_args))
            os.fchmod(handle.fileno(), 0o755)
        os.replace(tmp, hook)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return hook
