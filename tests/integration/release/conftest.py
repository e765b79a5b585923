"""Fixtures for the release tests: per-host builds of v1..v5 and plays that drive the release role."""

from __future__ import annotations

from pathlib import Path

import pytest
from release_helpers import write_build


@pytest.fixture
def builds(clean_fleet, tmp_path: Path) -> Path:
    """``<builds>/<host>/<version>/`` for v1..v5 on every host (the hosts see this directory)."""
    top = tmp_path / "builds"
    for host in clean_fleet:
        for version in ("v1", "v2", "v3", "v4", "v5"):
            write_build(top, host.name, version)
    return top
