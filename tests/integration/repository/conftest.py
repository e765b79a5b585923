"""A repository host (a harness SSH host of its own) and the engine, for the repository tests."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from harness import Fleet, Host, start_hosts

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


@pytest.fixture(scope="session")
def repository_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RepositoryHost]:
    """One SSH host, with its own client key, whose ``/srv/gr-repository`` holds the repositories."""
    fleet = start_hosts(1, tmp_path_factory.mktemp("repository-host"), managed_dirs=(REPOSITORY_MOUNT,))
    try:
        yield RepositoryHost(fleet, fleet.hosts[0])
    finally:
        fleet.stop()


@pytest.fixture
def repo_path(request: pytest.FixtureRequest) -> str:
    """A fresh repository path on the repository host (one per test)."""
    return "%s/%s" % (REPOSITORY_MOUNT, request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:80])


@pytest.fixture
def eng(collections_path: Path) -> SimpleNamespace:
    """The engine, imported from this checkout."""
    if str(collections_path) not in sys.path:
        sys.path.insert(0, str(collections_path))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.common import errors
    from ansible_collections.gitops.rollback.plugins.module_utils.files import capture, restore
    from ansible_collections.gitops.rollback.plugins.module_utils.replication import client, fetch, repository, sync
    from ansible_collections.gitops.rollback.plugins.module_utils.store import store
    return SimpleNamespace(checkpoint=capture, client=client, errors=errors, fetch=fetch, repository=repository,
                           restore=restore, store=store, sync=sync)
