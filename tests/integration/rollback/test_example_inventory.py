"""inventories/example: Ansible parses it, its layer entries use only the keys the roles read, and the
argument specs of the roles accept its variables as the collection's playbooks map them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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


def test_the_roles_argument_specs_accept_the_example_variables(run_playbook):
    specs = {role: str(REPO / "roles" / role / "meta" / "argument_specs.yml")
             for role in ("rollback", "checkpoint", "rollback_release")}
    result = run_playbook([{
        "name": "Validate the example's variables, read by the roles under the same names",
        "hosts": "all", "gather_facts": False, "connection": "local",
        "vars": {"rollback_to": "v2.3.0", "checkpoint_label": "v2.4.0"},
        "tasks": [{
            "name": "Validate against the argument spec of {{ item.key }}",
            "ansible.builtin.validate_argument_spec": {
                "argument_spec": "{{ (lookup('ansible.builtin.file', item.value) | from_yaml)"
                                 ".argument_specs.main.options }}"},
            "loop": "{{ specs | dict2items }}",
            "loop_control": {"label": "{{ item.key }}"},
            "vars": {"specs": specs}}]}], inventory=EXAMPLE)

    assert result.ok, result
    validated = [e for e in result.events if e["status"] == "ok"]
    assert len(validated) == 6, result
