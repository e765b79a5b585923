"""Helpers of the GitOps tests: releases, deploy stand-in, host inspection, the CLI, a config repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from harness.collection import callback_env

REPO_ROOT = Path(__file__).resolve().parents[3]
MANAGED = ["/srv/app", "/etc/app"]

RELEASES: Dict[str, Dict[str, str]] = {
    "v1": {"srv/app/app.py": "print('release 1')\n", "etc/app/app.yml": "workers: 2\nfeature_x: false\n"},
    "v2": {"srv/app/app.py": "print('release 2')\n", "etc/app/app.yml": "workers: 8\nfeature_x: true\n",
           "srv/app/new_in_v2.txt": "only in v2\n"},
}


def git(cwd: Path, *args: str, env: Dict[str, str] | None = None, check: bool = True,
        inherit: bool = True) -> subprocess.CompletedProcess:
    """Run git; return the completed process (text). ``inherit=False``: ``env`` is the whole environment."""
    full_env = {**(os.environ if inherit else {}), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
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
    """Environment in which `python -m gitops_rollback` and its hook find this checkout and ansible; the Ansible
    runs they start load the test harness's callback (the same runs, less CPU: harness/collection.py)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "ANSIBLE_COLLECTIONS_PATH": str(collections_path), "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_SSH_RETRIES": "0", **callback_env(collections_path)}


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
    inherit: bool = True  # False: pushes run with ``env`` only (a user's shell, not the test's environment)

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
        return git(self.work, "push", "origin", *refspecs, env=self.env, inherit=self.inherit)


@dataclass
class InstalledCli:
    """gitops.rollback installed from its tarball, and the command pip-installed from it into a fresh virtualenv."""

    collections: Path  # holds ansible_collections/gitops/rollback
    venv: Path
    home: Path  # an empty home: no ~/.ansible/collections, no ansible.cfg

    @property
    def command(self) -> str:
        return str(self.venv / "bin" / "gitops-rollback")

    def env(self, **extra: str) -> Dict[str, str]:
        """A user's plain environment: no collections path, no virtualenv on PATH, HOME of its own."""
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8",
                "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid", **extra}

    def run(self, args: List[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.command, *args], cwd=cwd, env=self.env(**extra), capture_output=True, text=True,
                              timeout=600, check=False)


def _tracked_copy(target: Path) -> Path:
    """The tracked (and untracked, not ignored) files of this checkout, copied to ``target``."""
    files = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def install_cli(base: Path) -> InstalledCli:
    """Build the collection, install it with ansible-galaxy, pip-install the command from the installed copy.

    The fresh virtualenv sees this virtualenv's packages through a .pth line (ansible-core, ansible-runner:
    no download), not its source: the command runs from what pip installed out of the collection.
    """
    bin_dir = Path(sys.executable).parent
    source = _tracked_copy(base / "src" / "ansible_collections" / "gitops" / "rollback")
    built = base / "built"
    subprocess.run([str(bin_dir / "ansible-galaxy"), "collection", "build", "--output-path", str(built)],
                   cwd=source, capture_output=True, check=True)
    (tarball,) = built.glob("gitops-rollback-*.tar.gz")
    collections = base / "collections"
    galaxy_env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}  # no "already installed"
    subprocess.run([str(bin_dir / "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p",
                    str(collections), str(tarball)], capture_output=True, check=True, env={**galaxy_env, "HOME": str(base)})
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "dev-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for tool in bin_dir.glob("ansible*"):  # the commands pip puts beside python with ansible-core and ansible-runner
        (venv / "bin" / tool.name).symlink_to(tool)
    installed = collections / "ansible_collections" / "gitops" / "rollback"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                           "--disable-pip-version-check", "-q", "--no-deps", str(installed)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"pip install {installed} failed:\n{proc.stdout}\n{proc.stderr}")
    home = base / "home"
    home.mkdir()
    return InstalledCli(collections=collections, venv=venv, home=home)
