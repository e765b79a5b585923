"""The repository tests: a fresh repository path on the repository host (tests/integration/conftest.py) and the engine."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import REPOSITORY_MOUNT


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
