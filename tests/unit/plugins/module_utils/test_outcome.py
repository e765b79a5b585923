"""The rollback role's outcome decisions (plugins/module_utils/controller/outcome.py)."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.controller.outcome import (
    add_changed_layer, is_changed, layers_to_recover, preflight_problems, terraform_preview_lines,
    with_terraform_preview)


def test_a_layer_is_changed_when_what_it_registered_says_so():
    assert is_changed({"changed": True})
    assert not is_changed({"changed": False}) and not is_changed({"changed": True, "skipped": True})
    assert is_changed({"results": [{"changed": False}, {"changed": True}]})
    assert is_changed([{"results": []}, {"results": [{"changed": True}]}]), "several tasks of one layer"
    assert is_changed({"postgresql/app": "migrate"}), "the database layer's changed databases"
    assert not is_changed({}) and not is_changed(None) and not is_changed("")


def test_changed_layers_keep_their_order_and_a_migration_revert_alone_counts():
    results = {"release": {"changed": False}, "database": {"postgresql/app": "migrate"}}
    changed = add_changed_layer([], "release", results)
    changed = add_changed_layer(changed, "database", results)
    assert add_changed_layer(changed, "database", results) == ["database"]


def test_a_recovery_restores_the_layers_run_so_far_that_the_safety_checkpoint_holds():
    active = ["traffic", "release", "config", "database", "services"]
    assert layers_to_recover(active, "config", ["release", "config", "database"]) == ["traffic", "release", "config"]
    assert layers_to_recover(active, "services", ["config"]) == ["traffic", "config", "services"]
    assert layers_to_recover(active, "before the layers", ["config"]) == []


def test_the_terraform_preview_says_the_serials_and_drops_a_revert_that_is_a_no_op():
    changing = {"results": [{"changed": True, "revert": {"from_serial": 9, "to_serial": 10, "snapshot_serial": 7,
                                                         "lineage": "abc", "previous_lineage": "abc"}}]}
    same = {"results": [{"changed": False, "revert": {"to_serial": 9}}]}
    assert terraform_preview_lines(changing) == ["infrastructure: serial 9 -> 10 (snapshot serial 7), lineage abc"]
    assert "nothing would change" in terraform_preview_lines(same)[0]
    assert terraform_preview_lines({"skipped": True}) == []
    assert with_terraform_preview(["config", "infrastructure"], same) == ["config"]
    assert with_terraform_preview(["config", "infrastructure"], changing) == ["config", "infrastructure"]
    assert with_terraform_preview(["infrastructure"], {"skipped": True}) == ["infrastructure"]


def test_the_preflight_problems_name_the_hosts_with_problems_and_those_it_could_not_check():
    found = preflight_problems({"h1": [], "h2": [{"layer": "config", "problem": "object 12ab is corrupted"}]}, ["h3"])
    assert list(found) == ["h2", "h3"] and found["h3"][0]["layer"] == "host"
    assert found["h3"][0]["problem"].startswith("unreachable or failed during the pre-flight")
