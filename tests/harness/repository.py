"""A checkpoint repository host: a harness SSH host of its own, and the ``repository`` option that reaches it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hosts import Fleet, Host, start_hosts

REPOSITORY_MOUNT = "/srv/gr-repository"
"""Where the repository host keeps repositories: a directory of its own behind a bind mount, so a
path there is reached through that host's sshd only (the same path here is an empty mount point)."""


@dataclass
class RepositoryHost:
    """The repository host and what a sending host needs to reach it."""

    fleet: Fleet
    host: Host

    def options(self, path: str, name: str = "web1", **extra: Any) -> dict:
        """The ``repository`` option of the modules for a repository at ``path`` on this host."""
        public = (self.host.root / "ssh_host_ed25519_key.pub").read_text()
        fields = public.split()
        return dict({
            "host": self.host.address, "port": self.host.port, "user": "root", "path": path, "name": name,
            "private_key": self.fleet.client_key.read_text(),
            "known_hosts": "[%s]:%d %s %s" % (self.host.address, self.host.port, fields[0], fields[1]),
        }, **extra)

    def local(self, path: str) -> Path:
        """The directory behind a repository path on the repository host."""
        return self.host.local(path)

    def stop(self) -> None:
        """Stop the repository host."""
        self.fleet.stop()


def start_repository_host(workdir: Path) -> RepositoryHost:
    """Start one SSH host, with its own client key, whose ``/srv/gr-repository`` holds the repositories."""
    fleet = start_hosts(1, workdir, managed_dirs=(REPOSITORY_MOUNT,))
    return RepositoryHost(fleet, fleet.hosts[0])
