"""The one variable namespace: which variable holds a shared setting, and the old names' deprecation."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.controller import namespace as ns


def test_the_new_name_wins_over_an_old_one():
    assert ns.source("gitops_rollback_store_path", {"gitops_rollback_store_path", "checkpoint_store_path"}.__contains__) \
        == ("gitops_rollback_store_path", None)


def test_an_old_name_is_read_with_a_deprecation_naming_the_new_one():
    variable, message = ns.source("store_path", {"rollback_host_store_path"}.__contains__)
    assert variable == "rollback_host_store_path"
    assert "rollback_host_store_path is deprecated: set gitops_rollback_store_path" in message and ns.REMOVED_IN in message


def test_nothing_set_means_the_default():
    assert ns.source("gitops_rollback_store_path", lambda name: False) == (None, None)
    assert ns.setting("store_path").default == "/var/lib/gitops-rollback"


def test_an_unknown_setting_is_an_error_naming_the_known_ones():
    with pytest.raises(ns.UnknownSetting, match="gitops_rollback_store_path"):
        ns.setting("stor_path")


def test_every_old_name_maps_to_one_new_name_in_the_namespace():
    renamed = ns.renamed()
    assert renamed["checkpoint_store_path"] == "gitops_rollback_store_path"
    assert all(new.startswith(ns.PREFIX) and not old.startswith(ns.PREFIX) for old, new in renamed.items())


def test_the_lookup_names_the_same_removal_version():
    from pathlib import Path
    lookup = Path(__file__).resolve().parents[4] / "plugins" / "lookup" / "setting.py"
    assert 'version="%s"' % ns.REMOVED_IN in lookup.read_text()
