"""The rollback role's outcome decisions (plugins/module_utils/controller/outcome.py)."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.controller.outcome import (
    add_changed_layer, deadline, deadline_problem, is_changed, layers_to_recover, preflight_problems, run_report, run_summary,
    terraform_preview_lines, with_terraform_preview)


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


def test_the_summary_of_a_run_names_completed_and_failed_hosts_and_the_safety_layers_of_each():
    facts = {"h1": {"timings": {"release": 0.5}, "changed_layers": ["release"], "safety_taken": ["release", "config"]},
             "h2": {"timings": {"release": 0.7}, "changed_layers": [], "safety_taken": ["release"]},
             "h3": {"timings": None, "changed_layers": None, "safety_taken": None}}

    summary = run_summary("run-1", "v1", False, ["h1", "h2", "h3"], ["h1", "h3"], facts, "safety/run-1", 3.14159)

    assert summary["completed"] == ["h1", "h3"] and summary["failed"] == ["h2"]
    assert summary["seconds"] == 3.142 and summary["check_mode"] is False
    assert summary["layers"] == {"h1": {"release": 0.5}, "h3": {}}
    assert summary["changed_layers"] == {"h1": ["release"], "h3": []}
    assert summary["safety_checkpoint"] == {"label": "safety/run-1",
                                            "layers": {"h1": ["release", "config"], "h2": ["release"]}}
    texts = run_report(summary)
    assert texts["audit"] == "rolled back; safety checkpoint safety/run-1"
    assert texts["report"].startswith("Rolled back to v1 in 3.142 s (run run-1)")
    assert texts["report"].endswith("undo this rollback with -e rollback_to=safety/run-1")


def test_a_dry_run_reports_the_plan_only_and_no_safety_checkpoint():
    summary = run_summary("run-2", "v1", True, ["h1"], ["h1"], {"h1": {}}, "safety/run-2", 0.5)
    texts = run_report(summary)
    assert texts["audit"] == "dry run: plan only, nothing changed"
    assert texts["report"].startswith("Dry run - plan only, nothing changed - for v1")
    assert "No safety checkpoint was taken" in texts["report"]


def test_the_deadline_is_the_start_plus_the_limit_and_none_without_one():
    assert deadline(1000.0, 30) == 1030.0
    assert deadline(1000.0, 0) == 0.0 and deadline(1000.0, -5) == 0.0


def test_past_the_deadline_the_run_stops_before_the_next_layer_naming_the_limit():
    assert deadline_problem(0, 5000.0, "database", 0) is None, "no limit"
    assert deadline_problem(1000.0, 999.0, "database", 60) is None
    problem = deadline_problem(1000.0, 1000.5, "database", 60)
    assert "exceeded max_rollback_seconds (60 s)" in problem and "before database" in problem
