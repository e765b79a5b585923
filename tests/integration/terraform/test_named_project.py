"""checkpoint.yml and rollback.yml on one host with two layers that each need something given by name:

- a Terraform entry with a name (its snapshots' component <workspace>@<name>): the checkpoint playbook
  snapshots it under that name and the rollback playbook finds and reverts it;
- a database whose login needs a password given only in rollback_database_passwords (by the entry's name):
  the checkpoint playbook backs the database up with it and the rollback playbook restores that backup.
  The layer loops of the rollback role print their item at -v: the password must not be in the output or
  the audit log.

(One checkpoint and one rollback for both: formerly two tests, this one and
database/test_role.py::test_a_password_given_only_by_name_backs_up_and_restores_and_stays_out_of_a_verbose_rollback.)
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from harness import PgServer

pytestmark = pytest.mark.e2e  # runs ansible-playbook through the tf_local fixture
TfSetup = Any  # the fixture object of conftest.py

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


def test_a_named_project_and_a_database_whose_password_is_given_by_name_are_checkpointed_and_rolled_back(
        tf_local: TfSetup, postgres: PgServer, tmp_path: Path) -> None:
    tf = tf_local
    v1 = tf.deploy("v1")
    db, user, secret = "rolepw_" + secrets.token_hex(4), postgres.app_user, postgres.app_password
    postgres.create_database(db, owner=user)
    postgres.psql("CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'v' || g "
                  "FROM generate_series(1, 10) g", db=db, user=user, password=secret)
    entry = tf.module_args(name="infra-prod")  # verified against the configuration at the tag v1
    entry.pop("state_lock_timeout")
    audit = tmp_path / "audit.jsonl"
    variables = {"gitops_rollback_terraform": [entry], "gitops_rollback_audit_log": str(audit),
                 "rollback_lock_dir": str(tmp_path / "locks"), "gitops_rollback_store_path": str(tmp_path / "host-store"),
                 "gitops_rollback_paths": [],
                 "gitops_rollback_databases": [{"engine": "postgresql", "database": db, "name": "orders",
                                                "login_host": postgres.host, "login_port": postgres.port,
                                                "login_user": user, "mode": "replace"}],
                 "rollback_database_passwords": {"orders": secret}}

    try:
        checkpoint = tf.run(PLAYBOOKS / "checkpoint.yml", inventory=tf.inventory, env=tf.env,
                            extra_vars={**variables, "checkpoint_label": "v1"}, verbosity=2)
        assert checkpoint.ok, [(e["task"], e["result"].get("msg")) for e in checkpoint.events
                               if e["status"] == "failed"]
        tf.deploy("v2")
        postgres.psql("DELETE FROM t", db=db)

        rollback = tf.run(PLAYBOOKS / "rollback.yml", inventory=tf.inventory, env=tf.env, verbosity=2,
                          extra_vars={**variables, "rollback_to": "v1",
                                      "rollback_layers": ["infrastructure", "database"]})

        assert rollback.ok, [(e["task"], e["result"].get("msg")) for e in rollback.events if e["status"] == "failed"]
        after = tf.state()
        assert after["outputs"] == v1["outputs"] and after["lineage"] == v1["lineage"]
        assert postgres.psql("SELECT count(*) FROM t", db=db) == "10"
        assert secret not in rollback.stdout + rollback.stderr
        assert secret not in audit.read_text()
    finally:
        postgres.drop_database(db)
