"""The database layer's decisions: the method of each database and the arguments of the modules that run."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.controller.database_layer import (
    LayerSettings, choose_method, database_name, restore_args, revert_args)
from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import HostSettings
from ansible_collections.gitops.rollback.plugins.module_utils.controller.selection import (
    database_name as selected_name, select_components)

MIGRATED = {"engine": "postgresql", "database": "app", "migrations_dir": "/srv/app/migrations", "login_host": "db1"}
PLAIN = {"engine": "mysql", "database": "shop", "jobs": 4, "mode": "replace", "source_database": "shop_v1"}


def test_the_method_comes_from_the_role_then_the_plan_then_the_entry():
    plan = LayerSettings(checkpoint="c1", methods={"postgresql/app": "restore"})
    assert choose_method(MIGRATED, LayerSettings(checkpoint="c1")) == "auto"
    assert choose_method(dict(MIGRATED, method="migrate"), LayerSettings(checkpoint="c1")) == "migrate"
    assert choose_method(MIGRATED, plan) == "restore"
    assert choose_method(MIGRATED, LayerSettings(checkpoint="c1", method="skip", methods=plan.methods)) == "skip"
    assert choose_method(PLAIN, LayerSettings(checkpoint="c1")) == "restore"


def test_a_revert_goes_to_the_label_else_to_the_checkpoints_version():
    store = {"store_path": "/var/lib/s", "lock_timeout": 5.0, "encryption_key": None}
    by_checkpoint = revert_args(MIGRATED, "pw", LayerSettings(checkpoint="c1", store=store))
    assert by_checkpoint == {"engine": "postgresql", "database": "app", "login_host": "db1", "login_password": "pw",
                             "store_path": "/var/lib/s", "lock_timeout": 5.0, "operation": "revert",
                             "migrations_dir": "/srv/app/migrations", "checkpoint": "c1"}
    by_label = revert_args(MIGRATED, "", LayerSettings(checkpoint="c1", label="v1"))
    assert by_label["label"] == "v1" and "checkpoint" not in by_label and "login_password" not in by_label


def test_a_restore_takes_the_entrys_own_options_before_the_roles():
    args = restore_args(PLAIN, "", LayerSettings(checkpoint="c1", mode="swap", jobs=1, safety_backup=False))
    assert (args["jobs"], args["mode"], args["source_database"], args["safety_backup"]) == (4, "replace", "shop_v1", False)
    defaults = restore_args(MIGRATED, "", LayerSettings(checkpoint="c1", mode="swap", jobs=2))
    assert (defaults["jobs"], defaults["mode"], defaults["checkpoint"]) == (2, "swap", "c1")
    assert "migrations_dir" not in defaults


def test_a_mariadb_entry_is_named_and_run_as_the_mysql_engine():
    """The plan, the layer and the checkpoint's component agree on ``mysql/<database>`` for ``engine: mariadb``."""
    entry = {"engine": "mariadb", "database": "shop", "login_host": "db1"}
    assert database_name(entry) == selected_name(entry) == "mysql/shop"
    assert restore_args(entry, "", LayerSettings(checkpoint="v1"))["engine"] == "mysql"


def test_an_entry_restored_from_another_database_takes_the_method_the_plan_chose_for_it():
    """The plan names an entry by the database its dump was made of (``source_database``); the layer must
    look its method up by that same name, or a database the plan leaves alone ("skip") would be restored."""
    assert database_name(PLAIN) == selected_name(PLAIN) == "mysql/shop_v1"
    assert choose_method(PLAIN, LayerSettings(checkpoint="c1", methods={selected_name(PLAIN): "skip"})) == "skip"


def test_a_selector_naming_the_mariadb_engine_selects_the_mysql_component():
    settings = HostSettings(databases=[{"engine": "mariadb", "database": "shop"}, {"engine": "sqlite", "database": "/d/app.db"}])
    for selector in ("mariadb/shop", "mysql/shop", "shop"):
        chosen = select_components(settings, [selector])
        assert [entry["database"] for entry in chosen.settings.databases] == ["shop"] and not chosen.unmatched, selector
    assert select_components(settings, ["postgresql/shop"]).unmatched == ["postgresql/shop"]
