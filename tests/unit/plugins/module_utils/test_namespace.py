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


def test_the_inventory_settings_of_every_layer_have_one_name_each():
    renamed = ns.renamed()
    assert renamed["checkpoint_paths"] == "gitops_rollback_paths"
    assert "rollback_paths" not in renamed  # the rollback role's own parameter: the paths of this run
    assert renamed["rollback_release_root"] == "gitops_rollback_release_root"
    assert renamed["checkpoint_keep"] == "gitops_rollback_keep"
    assert renamed["rollback_audit_log"] == "gitops_rollback_audit_log"
    assert ns.setting("audit_log").default == ns.DEFAULT_AUDIT_LOG and ns.setting("traffic").default is False


def _defined_names(paths):
    import yaml
    for path in paths:
        for name in yaml.safe_load(path.read_text(encoding="utf-8")) or {}:
            yield path, name


def _play_variable_names(paths):
    import yaml
    for path in paths:
        for play in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            for name in (play.get("vars") or {}) if isinstance(play, dict) else ():
                yield path, name


def test_no_role_or_playbook_defines_an_old_name():
    """A role default, a role variable or a playbook's play variable under an old name would always be 'set': the
    lookup would read it (with a deprecation warning) instead of the inventory's gitops_rollback_* setting."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[4]
    files = [*root.glob("roles/*/defaults/main.yml"), *root.glob("roles/*/vars/main.yml")]
    playbooks = sorted(root.glob("playbooks/*.yml"))
    assert files and playbooks
    renamed = ns.renamed()
    names = [*_defined_names(files), *_play_variable_names(playbooks)]
    assert any(path.name == "drill.yml" and name == "drill_rounds" for path, name in names), "the drill's settings"
    defined = ["%s: %s" % (path.relative_to(root), name) for path, name in names if name in renamed]
    assert not defined, defined
