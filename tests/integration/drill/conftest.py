"""The demo on the embedded default, run once per module in a private directory, for the demo
and drill tests."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness import Result, run_playbook

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "playbooks"
INVENTORY = REPO / "inventories" / "demo" / "hosts.yml"


@dataclass
class Demo:
    """A demo directory (every layer of the demo inventory) and how to run playbooks on it."""

    directory: Path
    collections: Path
    result: Result

    def run(self, playbook: str, **extra: Any) -> Result:
        """Run a playbook of the collection on the demo inventory, in this demo directory."""
        return run_playbook(PLAYBOOKS / playbook, INVENTORY, {"gitops_rollback_demo_dir": str(self.directory), **extra},
                            collections_dir=self.collections, cwd=self.directory.parent)

    def audit(self) -> list[dict]:
        """The audit log records, in order."""
        return [json.loads(line) for line in (self.directory / "audit.jsonl").read_text().splitlines()]

    def layers(self) -> dict[str, Any]:
        """Every layer as a user would look at it, read without the collection."""
        import sqlite3  # pylint: disable=import-outside-toplevel

        current = self.directory / "srv" / "app" / "current"
        config = self.directory / "etc" / "app"
        connection = sqlite3.connect(self.directory / "var" / "shop.sqlite")
        try:
            tables = sorted(r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
            products = connection.execute("SELECT * FROM products ORDER BY id").fetchall()
            columns = [r[1] for r in connection.execute("PRAGMA table_info(products)")]
            version = connection.execute(
                "SELECT max(version) FROM gitops_rollback_migrations WHERE state = 'applied'").fetchone()[0]
        finally:
            connection.close()
        state = json.loads((self.directory / "config-repo" / "infra" / "terraform.tfstate").read_text())
        return {
            "version": (current / "app" / "VERSION").read_text().strip(),
            "shop": (current / "app" / "shop.py").read_bytes(),
            "config": {p.name: p.read_bytes() for p in sorted(config.iterdir())},
            "tables": [t for t in tables if not t.startswith("gitops_rollback_")],
            "products": products, "product_columns": columns, "schema_version": version,
            "tf_release": state["outputs"]["release"]["value"],
            "tf_resources": sorted(r["name"] for r in state["resources"]),
        }


V1 = PLAYBOOKS / "files" / "demo" / "v1"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, collections_path: Path) -> Iterator[Demo]:
    """The demo playbook, run end to end in a private directory (the way ./dev.sh demo runs it)."""
    directory = tmp_path_factory.mktemp("demo") / "gitops-rollback-demo"
    result = run_playbook(PLAYBOOKS / "demo.yml", INVENTORY, {"gitops_rollback_demo_dir": str(directory)},
                          collections_dir=collections_path, cwd=directory.parent,
                          env={"HOME": os.environ.get("HOME", "/root")})
    yield Demo(directory, collections_path, result)
