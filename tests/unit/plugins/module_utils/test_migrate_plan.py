# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_migrate's plan: reading the directory, versions, revert targets, the checkpoint a revert goes to."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate_plan as plan
from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import component_name, database_key
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrations import State
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.migration_files import write, write_chain


@pytest.fixture
def chain(tmp_path):
    return write_chain(tmp_path)


def test_load_migrations_sorts_and_pairs(chain):
    found = plan.load_migrations(str(chain))
    assert [m.version for m in found] == [1, 2, 3, 4, 5]
    assert found[0].down_sql == "DROP TABLE t1;\n" and len(found[0].checksum) == 64 and not found[0].irreversible


@pytest.mark.parametrize("name, problem", [
    ("V1_bad.up.sql", "is not named"),
    ("V0001__other.down.sql", "no matching up file"),
    ("V01__t1.up.sql", "appears twice"),
])
def test_load_migrations_refuses_malformed_directories(chain, name, problem):
    (chain / name).write_text("SELECT 1;")
    with pytest.raises(RollbackError, match=problem):
        plan.load_migrations(str(chain))


def test_irreversible_by_marker_or_missing_down(tmp_path):
    write(tmp_path, 1, "a", "-- gitops-rollback: irreversible\nDROP TABLE x;", "SELECT 1;")
    write(tmp_path, 2, "b", "SELECT 1;")
    first, second = plan.load_migrations(str(tmp_path))
    assert first.marked_irreversible and first.irreversible and second.irreversible


@pytest.mark.parametrize("text, version", [("12", 12), ("0012", 12), ("V0012", 12)])
def test_parse_version(text, version):
    assert plan.parse_version(text) == version


def test_revert_target_by_date_label_and_count():
    state = State(history=[
        {"version": 1, "state": "applied", "applied_at": "2026-01-01T00:00:00.000Z"},
        {"version": 2, "state": "applied", "applied_at": "2026-01-02T00:00:00.000Z"},
        {"version": 3, "state": "applied", "applied_at": "2026-01-03T00:00:00.000Z"},
    ], labels=[{"label": "v1", "version": 1}])
    conn = DbConnection(engine="sqlite", database="x")
    assert plan.revert_target(state, plan.Params("revert", conn, date="2026-01-02T12:00:00Z")) == 2
    assert plan.revert_target(state, plan.Params("revert", conn, label="v1")) == 1
    assert plan.revert_target(state, plan.Params("revert", conn, count=3)) == 0
    with pytest.raises(RollbackError, match="Label 'v9' is not recorded"):
        plan.revert_target(state, plan.Params("revert", conn, label="v9"))


def test_the_revert_target_of_a_checkpoint_is_the_version_its_backup_recorded(tmp_path):
    conn = DbConnection(engine="sqlite", database=str(tmp_path / "db.sqlite"))
    store = Store(str(tmp_path / "store"))
    store.init()
    recorded = store.new_manifest(label="v1")
    store.attach_component(recorded, {"type": "database", "name": component_name("sqlite", database_key(conn)),
                                      "blobs": [], "migration_version": 3})
    other = store.new_manifest(label="v2")
    store.attach_component(other, {"type": "database", "name": "sqlite/elsewhere.db", "blobs": [],
                                   "migration_version": 7})
    params = plan.Params("revert", conn, store_path=store.root, checkpoint=recorded["id"])
    assert plan.checkpoint_version(params) == 3
    with pytest.raises(RollbackError, match="records no migration version of sqlite/"):
        plan.checkpoint_version(plan.Params("revert", conn, store_path=store.root, checkpoint=other["id"]))
