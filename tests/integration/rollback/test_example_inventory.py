"""inventories/example: Ansible parses it, its layer entries use only the keys the roles read, and the
argument specs of the roles accept its variables as the collection's playbooks map them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from unittest import mock

import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.action.validate_argument_spec import ActionModule as ValidateArgumentSpec
from ansible.template import Templar
from ansible.vars.manager import VariableManager

from harness.collection import ansible_bin, ansible_env

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "inventories" / "example"

#: The keys of a database entry the checkpoint and rollback_database roles pass on.
DATABASE_KEYS = {"engine", "database", "login_host", "login_port", "login_user", "login_password", "login_unix_socket",
                 "client_charset", "client_bin_dir", "migrations_dir", "method", "mode", "terminate_sessions", "jobs",
                 "format", "compression", "dump_extra_args", "restore_extra_args", "source_database", "name"}
#: The keys of a Terraform entry the checkpoint and rollback roles pass on.
TERRAFORM_KEYS = {"project_path", "workspace", "name", "backend_config", "backend_config_secrets", "variables",
                  "variables_files", "binary_path", "store_path", "verify_tag"}


def hostvars(collections_path: Path) -> dict:
    proc = subprocess.run([ansible_bin("ansible-inventory"), "-i", str(EXAMPLE), "--list"], capture_output=True,
                          text=True, env=ansible_env(collections_path), check=False)
    assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)["_meta"]["hostvars"]


def test_the_example_inventory_parses_and_shows_every_layer(collections_path: Path):
    hosts = hostvars(collections_path)

    assert set(hosts) == {"web1.example.com", "web2.example.com", "web3.example.com", "db1.example.com",
                          "db2.example.com", "worker1.example.com"}
    engines = {db["engine"] for h in hosts.values() for db in h.get("gitops_rollback_databases", [])}
    assert engines == {"postgresql", "mariadb", "sqlite"}
    for name, variables in hosts.items():
        assert variables["gitops_rollback_store_path"] == "/var/lib/gitops-rollback", name
        for db in variables.get("gitops_rollback_databases", []):
            assert set(db) <= DATABASE_KEYS, (name, set(db) - DATABASE_KEYS)
            assert db.get("migrations_dir"), (name, "every example database has migrations")
        for tf in variables["gitops_rollback_terraform"]:
            assert set(tf) <= TERRAFORM_KEYS, (name, set(tf) - TERRAFORM_KEYS)
            assert tf["project_path"].startswith("/") and tf["store_path"].startswith("/")
    assert hosts["web1.example.com"]["gitops_rollback_release_root"] == "/srv/app"


def test_the_example_database_entries_show_every_key_the_roles_pass_on():
    """Each key of a database entry shows in the example, set or commented out (an optional one)."""
    text = "\n".join(path.read_text() for path in sorted(EXAMPLE.rglob("*.yml")))
    entries = re.findall(r"^gitops_rollback_databases:\n((?:[ #].*\n|\n)*)", text + "\n", re.M)
    shown = set(re.findall(r"^\s*(?:#\s*)?(?:- )?(\w+):", "".join(entries), re.M))
    assert DATABASE_KEYS <= shown, sorted(DATABASE_KEYS - shown)


def test_the_roles_argument_specs_accept_the_example_variables():
    """Ansible's validate_argument_spec action, in-process, on each host's variables as Ansible's inventory and
    variable manager give them to a play (templated; the vault file's values): what the roles check on entry."""
    specs = {role: yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
             ["argument_specs"]["main"]["options"] for role in ("rollback", "checkpoint", "rollback_release")}
    loader = DataLoader()
    inventory = InventoryManager(loader, sources=[str(EXAMPLE)])
    variables = VariableManager(loader=loader, inventory=inventory)

    validated = []
    for host in inventory.get_hosts():
        task_vars = {**variables.get_vars(host=host), "rollback_to": "v2.3.0", "checkpoint_label": "v2.4.0"}
        for role, spec in specs.items():
            task = Task.load({"action": "ansible.builtin.validate_argument_spec", "args": {"argument_spec": spec}})
            action = ValidateArgumentSpec(task, mock.Mock(), PlayContext(), loader, Templar(loader, variables=task_vars),
                                          None)
            result = action.run(task_vars=task_vars)
            assert not result.get("failed"), (host.name, role, result.get("argument_errors"))
            validated.append((host.name, role))

    assert len(validated) == 18, validated
