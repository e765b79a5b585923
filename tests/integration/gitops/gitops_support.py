"""Helpers of the GitOps tests: releases, deploy stand-in, host inspection, the CLI, a config repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

REPO_ROOT = Path(__file__).resolve().parents[3]
MANAGED = ["/srv/app", "/etc/app"]

RELEASES: Dict[str, Dict[str, str]] = {
    "v1": {"srv/app/app.py": "print('release 1')\n", "etc/app/app.yml": "workers: 2\nfeature_x: false\n"},
    "v2": {"srv/app/app.py": "print('release 2')\n", "etc/app/app.yml": "workers: 8\nfeature_x: true\n",
           "srv/app/new_in_v2.txt": "only in v2\n"},
}


def git(cwd: Path, *args: str, env: Dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run git; return the completed process (text)."""
    full_env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid", **(env or {})}
    proc = subprocess.run(["git", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def deploy(fleet: Any, release: str) -> None:
    """Stand-in for the deploy pipeline: write a release's files on every host."""
    for host in fleet:
        for managed in MANAGED:
            local = host.local(managed)
            for entry in local.iterdir():
                entry.unlink()
        for rel, text in RELEASES[release].items():
            host.write_text("/" + rel, text)


def host_files(host: Any) -> Dict[str, str]:
    """{path: text} of the managed files of a host."""
    out = {}
    for managed in MANAGED:
        local = host.local(managed)
        for entry in sorted(local.rglob("*")):
            if entry.is_file():
                out[managed.strip("/") + "/" + str(entry.relative_to(local))] = entry.read_text()
    return out


def checkpoints(host: Any) -> List[Dict[str, Any]]:
    """Manifests in a host's store, oldest first."""
    folder = host.store / "checkpoints"
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def cli_env(collections_path: Path) -> Dict[str, str]:
    """Environment in which `python -m gitops_rollback` and its hook find this checkout and ansible."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "ANSIBLE_COLLECTIONS_PATH": str(collections_path), "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_SSH_RETRIES": "0"}


def run_cli(args: List[str], env: Dict[str, str], cwd: Path, stdin: str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m gitops_rollback ARGS`."""
    return subprocess.run([sys.executable, "-m", "gitops_rollback", *args], env=env, cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class ConfigRepo:
    """A working clone (tags are made here) and the bare repository it pushes to."""

    work: Path
    bare: Path
    env: Dict[str, str] = field(default_factory=dict)
    commits: Dict[str, str] = field(default_factory=dict)

    def commit_release(self, release: str) -> str:
        for rel, text in RELEASES[release].items():
            target = self.work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", f"release {release}")
        git(self.work, "tag", "-a", release, "-m", f"release {release}")
        self.commits[release] = git(self.work, "rev-parse", f"{release}^{{commit}}").stdout.strip()
        return self.commits[release]

    def push(self, *refspecs: str) -> subprocess.CompletedProcess:
        """git push to the bare repo; the hook's output comes back as 'remote:' lines on stderr."""
        return git(self.work, "push", "origin", *refspecs, env=self.env)
