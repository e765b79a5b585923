"""Fixtures for the release tests: per-host builds of v1..v5 and plays that drive the release role."""

from __future__ import annotations

from pathlib import Path

import pytest


def write_build(top: Path, host: str, version: str) -> Path:
    """A build directory with content that differs per host and per version."""
    build = top / host / version
    (build / "config").mkdir(parents=True, exist_ok=True)
    (build / "static").mkdir(exist_ok=True)
    (build / "VERSION").write_text(f"{version}\n")
    (build / "index.html").write_text(f"<h1>{host} {version}</h1>\n")
    (build / "static" / "app.js").write_text(f"console.log('{version}')\n" * (len(version) + 3))
    (build / "config" / "app.yml").write_text(f"seeded_by: {version}\n")
    return build


@pytest.fixture
def builds(clean_fleet, tmp_path: Path) -> Path:
    """``<builds>/<host>/<version>/`` for v1..v5 on every host (the hosts see this directory)."""
    top = tmp_path / "builds"
    for host in clean_fleet:
        for version in ("v1", "v2", "v3", "v4", "v5"):
            write_build(top, host.name, version)
    return top
