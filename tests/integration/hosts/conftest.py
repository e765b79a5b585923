"""Fixtures for the host checkpoint/restore end-to-end tests."""

from __future__ import annotations

import pytest

from hosts_support import MANAGED, populate


@pytest.fixture
def prepared_fleet(clean_fleet):
    """The fleet with distinct v1 content on every host."""
    for seed, host in enumerate(clean_fleet, start=1):
        populate(host, seed)
    return clean_fleet


@pytest.fixture
def fleet_vars() -> dict:
    """Extra vars that point the collection's playbooks at the managed paths."""
    return {"gitops_rollback_paths": MANAGED}
