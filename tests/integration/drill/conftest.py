"""The demo on the embedded default, run once per module in a private directory, for the demo
and drill tests: with the stores' key only in a Vault-encrypted variable, as an inventory keeps it,
the way a user runs it (the drills run the same modules and roles at -vvv, what a user sees when
debugging, which must not show the key either). Every test starts from the
directory as the demo left it (its layers, stores, SQLite database, Terraform state, Git repository,
audit log and report), copied once after the demo and put back before each test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import Result, run_playbook
from harness.collection import ansible_bin, ansible_env

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "playbooks"
INVENTORY = REPO / "inventories" / "demo" / "hosts.yml"
VAULTED_KEY = "vaulted-store-key-7f3a9c21e4b8d605"
"""The stores' key, in a Vault-encrypted vars file only."""


def vault_args(directory: Path) -> list[str]:
    """A vars file encrypted with ansible-vault holding gitops_rollback_encryption_key; the CLI arguments to use it."""
    password = directory / "vault-password"
    password.write_text("vault password of the test\n")
    secrets_file = directory / "secrets.yml"
    secrets_file.write_text("gitops_rollback_encryption_key: %s\n" % VAULTED_KEY)
    subprocess.run([ansible_bin("ansible-vault"), "encrypt", "--vault-password-file", str(password), str(secrets_file)],
                   check=True, capture_output=True, env=ansible_env())
    assert VAULTED_KEY.encode() not in secrets_file.read_bytes()
    return ["-e", "@%s" % secrets_file, "--vault-password-file", str(password)]


@dataclass
class Demo:
    """A demo directory (every layer of the demo inventory) and how to run playbooks on it."""

    directory: Path
    collections: Path
    result: Result
    vault: list[str] = field(default_factory=list)
    """The arguments that give ansible-playbook the Vault-encrypted key."""
    key: str = VAULTED_KEY
    """The stores' key, which no output may show."""

    def run(self, playbook: str, verbosity: int = 0, key: bool = True, **extra: Any) -> Result:
        """Run a playbook of the collection on the demo inventory, in this demo directory (``key``: with the
        Vault-encrypted store key)."""
        return run_playbook(PLAYBOOKS / playbook, INVENTORY, {"gitops_rollback_demo_dir": str(self.directory), **extra},
                            collections_dir=self.collections, cwd=self.directory.parent, verbosity=verbosity,
                            extra_args=self.vault if key else [], env={"HOME": os.environ.get("HOME", "/root")},
                            timeout=1800)

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
def demo_run(tmp_path_factory: pytest.TempPathFactory, collections_path: Path) -> tuple[Demo, Path]:
    """The demo playbook, run end to end in a private directory (the way ./dev.sh demo runs it), with
    the key of its stores in a Vault-encrypted variable; and a copy of the directory it left."""
    directory = tmp_path_factory.mktemp("demo") / "gitops-rollback-demo"
    vault = vault_args(directory.parent)
    result = run_playbook(PLAYBOOKS / "demo.yml", INVENTORY, {"gitops_rollback_demo_dir": str(directory)},
                          collections_dir=collections_path, cwd=directory.parent,
                          env={"HOME": os.environ.get("HOME", "/root")}, extra_args=vault, timeout=1800)
    snapshot = directory.parent / "as-the-demo-left-it"
    if directory.is_dir():
        shutil.copytree(directory, snapshot, symlinks=True)
    return Demo(directory, collections_path, result, vault), snapshot


@pytest.fixture
def demo(demo_run: tuple[Demo, Path]) -> Demo:
    """The demo's directory as the demo left it, whatever an earlier test ran on it."""
    built, snapshot = demo_run
    if snapshot.is_dir():
        shutil.rmtree(built.directory, ignore_errors=True)
        shutil.copytree(snapshot, built.directory, symlinks=True)
    return built
