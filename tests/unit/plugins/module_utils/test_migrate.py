# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of db_migrate's planning, refusals and SQLite engine (no server needed)."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate as mig
from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate_plan as plan
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import LockHeldError, RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.db.sqlite_migrations import SqliteMigrations
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.migration_files import write, write_chain


@pytest.fixture
def chain(tmp_path):
    return write_chain(tmp_path)


def params(tmp_path, directory, **kwargs):
    conn = DbConnection(engine="sqlite", database=str(tmp_path / "db.sqlite"))
    return plan.Params(operation=kwargs.pop("operation", "status"), conn=conn, migrations_dir=str(directory),
                       store_path=str(tmp_path / "store"), **kwargs)


def test_sqlite_apply_revert_and_preview_equals_run(tmp_path, chain):
    assert mig.run_operation(params(tmp_path, chain, operation="apply", label="v1"))["version"] == 5
    preview = mig.run_operation(params(tmp_path, chain, operation="revert", count=2, check_mode=True))
    done = mig.run_operation(params(tmp_path, chain, operation="revert", count=2))
    assert preview["sql"] == done["sql"] and done["version"] == 3
    assert preview["sql"][0].startswith("BEGIN IMMEDIATE;\nDROP TABLE t5;")


def test_drift_refuses_revert_unless_forced(tmp_path, chain):
    mig.run_operation(params(tmp_path, chain, operation="apply"))
    (chain / "V0005__t5.up.sql").write_text("CREATE TABLE t5 (id INTEGER, x INTEGER)")
    with pytest.raises(plan.DriftError, match="V0005__t5.up.sql"):
        mig.run_operation(params(tmp_path, chain, operation="revert", count=1))
    assert mig.run_operation(params(tmp_path, chain, operation="revert", count=1, force=True))["version"] == 4


def test_irreversible_names_a_matching_checkpoint_backup(tmp_path, chain):
    write(chain, 6, "drop", "-- gitops-rollback: irreversible\nDROP TABLE t1;", "SELECT 1;")
    mig.run_operation(params(tmp_path, chain, operation="apply"))
    store = Store(str(tmp_path / "store"))
    store.init()
    manifest = store.new_manifest(label="v1")
    store.attach_component(manifest, {"type": "database", "name": "sqlite/db.sqlite",
                                      "database": str(tmp_path / "db.sqlite"), "blobs": [], "migration_version": 5})
    with pytest.raises(plan.IrreversibleError) as caught:
        mig.run_operation(params(tmp_path, chain, operation="revert", version="5"))
    assert manifest["id"] in str(caught.value) and "V0006__drop" in str(caught.value)


@pytest.mark.parametrize("key,found", [("unit-test-key-0123456789", True), (None, False)])
def test_irreversible_in_an_encrypted_store_names_the_backup_or_why_none_can_be_named(tmp_path, chain, key, found):
    write(chain, 6, "drop", "-- gitops-rollback: irreversible\nDROP TABLE t1;", "SELECT 1;")
    mig.run_operation(params(tmp_path, chain, operation="apply"))
    store = Store(str(tmp_path / "store"), "unit-test-key-0123456789")
    store.init()
    manifest = store.new_manifest(label="v1")
    store.attach_component(manifest, {"type": "database", "name": "sqlite/db.sqlite",
                                      "database": str(tmp_path / "db.sqlite"), "blobs": [], "migration_version": 5})
    with pytest.raises(plan.IrreversibleError) as caught:
        mig.run_operation(params(tmp_path, chain, operation="revert", version="5", encryption_key=key))
    message = str(caught.value)
    assert "V0006__drop" in message and "Nothing was run" in message
    if found:
        assert manifest["id"] in message
    else:  # not "there is no checkpoint backup": the store could not be read, and the message says why
        assert "cannot be read" in message and "encryption_key" in message and "no checkpoint backup" not in message


def test_out_of_order_apply_is_refused(tmp_path, chain):
    (chain / "V0003__t3.up.sql").rename(chain / "V0009__t3.up.sql")
    (chain / "V0003__t3.down.sql").rename(chain / "V0009__t3.down.sql")
    mig.run_operation(params(tmp_path, chain, operation="apply"))
    write(chain, 3, "late", "SELECT 1;", "SELECT 1;")
    with pytest.raises(RollbackError, match="out of order"):
        mig.run_operation(params(tmp_path, chain, operation="apply"))


def test_sqlite_lock_held_by_live_owner_refuses(tmp_path, chain):
    holder = SqliteMigrations(DbConnection(engine="sqlite", database=str(tmp_path / "db.sqlite")))
    holder.acquire_lock("other@host", 3600, 0)
    try:
        with pytest.raises(LockHeldError, match="other@host"):
            mig.run_operation(params(tmp_path, chain, operation="apply"))
    finally:
        holder.release_lock()
    assert mig.run_operation(params(tmp_path, chain, operation="apply"))["version"] == 5


def test_verify_reversible_catches_an_incomplete_down(tmp_path):
    directory = tmp_path / "m"
    directory.mkdir()
    write(directory, 1, "a", "CREATE TABLE a (id INTEGER);\nCREATE INDEX a_id ON a (id);", "SELECT 1;")
    with pytest.raises(plan.NotReversibleError, match="a_id"):
        mig.run_operation(params(tmp_path, directory, operation="verify"))
