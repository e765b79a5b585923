"""The rollback plan of a host (plugins/module_utils/controller/plan.py): resolved once, every problem at once."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import (
    HostSettings, layer_list, plan_host, problems_message, request_problems, resolve)

OLD = {"id": "20261201T100000.000Z-aaaaaa", "label": "v1", "roots": ["/etc/app"],
       "components": [{"type": "release", "name": "/srv/app"}, {"type": "database", "name": "postgresql/app"}]}
NEW = {"id": "20261202T100000.000Z-bbbbbb", "label": "v1", "roots": ["/etc/app"],
       "components": [{"type": "release", "name": "/srv/app"}, {"type": "database", "name": "postgresql/app"}]}
V2 = {"id": "20261203T100000.000Z-cccccc", "label": "v2", "roots": ["/etc/app"], "components": []}
TF = {"id": "20261201T100000.000Z-dddddd", "label": "v1", "roots": [],
      "components": [{"type": "terraform_state", "name": "default@/srv/tf"}]}
SAFETY = {"id": "20261204T100000.000Z-eeeeee", "label": "safety/rollback-1", "roots": ["/etc/app"],
          "components": [{"type": "database", "name": "postgresql/app"}]}


def settings(**changes) -> HostSettings:
    base = dict(paths=["/etc/app"], release_root="/srv/app", store_path="/var/lib/gitops-rollback",
                databases=[{"engine": "postgresql", "database": "app", "migrations_dir": "/srv/migrations"}],
                terraform=[{"project_path": "/srv/tf", "store_path": "/ctl"}],
                services=[{"name": "app", "layers": ["release"]}])
    base.update(changes)
    return HostSettings(**base)


def test_a_label_resolves_once_to_its_newest_checkpoint_and_every_layer_gets_that_id():
    plan = plan_host("web1", "v1", "release, config,database,infrastructure,services", settings(),
                     [OLD, NEW, V2], {"/ctl": [TF]}, run_id="rollback-1")
    assert plan["problems"] == []
    assert plan["layers"] == ["release", "config", "database", "infrastructure", "services"]
    assert plan["checkpoints"] == {"release": NEW["id"], "config": NEW["id"], "database": NEW["id"],
                                   "infrastructure": TF["id"]}
    assert plan["safety"] == ["release", "config", "database", "infrastructure"]
    assert plan["safety_label"] == "safety/rollback-1"
    assert plan["steps"]["database"]["methods"] == {"postgresql/app": "auto"}
    assert "else restore the dump in checkpoint " + NEW["id"] in plan["steps"]["database"]["action"]


def test_an_id_or_a_unique_prefix_names_one_checkpoint():
    assert resolve([OLD, NEW], OLD["id"]) is OLD
    assert resolve([OLD, NEW], OLD["id"][:24]) is OLD
    assert resolve([OLD, NEW], "2026120") is None  # too short to be a prefix
    assert resolve([OLD, NEW], "v9") is None


def test_every_problem_of_every_layer_is_reported_at_once():
    broken = {"id": "20261201T100000.000Z-ffffff", "label": "v1", "roots": ["/etc/other"], "components": []}
    plan = plan_host("web1", "v1", ["release", "config", "database", "infrastructure"],
                     settings(databases=[{"engine": "postgresql", "database": "app"}]), [broken], {"/ctl": []})
    layers = [p["layer"] for p in plan["problems"]]
    assert layers == ["release", "config", "database", "infrastructure"], plan["problems"]
    text = " ".join(p["problem"] for p in plan["problems"])
    assert "records no release of /srv/app" in text and "does not manage /etc/app" in text
    assert "holds no backup of postgresql/app" in text and "Terraform snapshot 'v1' of default@/srv/tf" in text
    assert plan["layers"] == [] and plan["safety"] == []
    message = problems_message({"web1": plan["problems"]})
    assert message.startswith("Pre-flight failed, so nothing was changed on any host.")
    assert "[web1 / config]" in message


def test_an_unknown_target_names_the_checkpoints_there_are():
    plan = plan_host("web1", "v9", ["config"], settings(), [OLD, V2])
    assert plan["problems"] == [{"layer": "config", "problem": (
        "Checkpoint 'v9' is not in /var/lib/gitops-rollback on web1 (have: v2 (%s), v1 (%s)). Run "
        "gitops.rollback.checkpoint_info to list checkpoints, or roll back to one of those." % (V2["id"], OLD["id"]))}]


def test_a_safety_checkpoint_restores_the_dump_and_skips_what_its_run_did_not_touch():
    plan = plan_host("web1", "safety/rollback-1", ["release", "config", "database", "infrastructure"],
                     settings(), [OLD, SAFETY], {"/ctl": [TF]})
    assert plan["problems"] == [], plan["problems"]
    # the release layer is configured, but the run that made the safety checkpoint did not touch it
    assert "release" not in plan["layers"] and "infrastructure" not in plan["layers"]
    assert plan["steps"]["database"]["methods"] == {"postgresql/app": "restore"}
    assert plan["checkpoints"]["database"] == SAFETY["id"]
    elsewhere = plan_host("web2", "safety/rollback-1", ["config"], settings(), [OLD])
    assert elsewhere["layers"] == [] and elsewhere["problems"] == [] and elsewhere["notes"]


def test_layers_the_host_does_not_have_are_left_out_and_unknown_ones_refused():
    plan = plan_host("web2", "v1", ["traffic", "config", "database", "bogus"],
                     settings(databases=[], terraform=[]), [OLD])
    assert plan["layers"] == ["config"]
    assert plan["problems"] == [{"layer": "request", "problem": (
        "rollback_layers may only name traffic, release, config, database, infrastructure, services "
        "(got 'bogus').")}]
    assert layer_list(" config , database,") == ["config", "database"]


def test_a_request_without_target_or_with_unknown_layers_is_refused_before_anything_runs():
    assert request_problems("v1", "config,database") == []
    assert request_problems("", ["config"]) == [
        "Give the checkpoint id or Git tag to roll back to with -e rollback_to=<tag>."]
    problem, = request_problems("v1", "config,{{ x }}")
    assert problem.startswith("rollback_layers may only name traffic, release,") and "{{" not in problem, problem


def test_a_database_without_migrations_needs_its_dump():
    plan = plan_host("db1", "v2", ["database"], settings(databases=[{"engine": "sqlite", "database": "/d.db"}]),
                     [V2])
    assert "and it has no migrations_dir to revert" in plan["problems"][0]["problem"]
    method = plan_host("db1", "v1", ["database"], settings(databases=[
        {"engine": "postgresql", "database": "app", "migrations_dir": "/m", "method": "migrate"}]), [OLD])
    assert method["steps"]["database"]["databases"][0]["method"] == "migrate"


def test_terraform_verifies_against_the_entry_tag_else_the_target_and_never_a_safety_label():
    entry = {"project_path": "/srv/tf", "store_path": "/ctl"}
    plan = plan_host("web1", "v1", ["infrastructure"], settings(terraform=[entry]), [], {"/ctl": [TF]})
    assert plan["steps"]["infrastructure"]["projects"][0]["verify_tag"] == "v1"
    assert plan["steps"]["infrastructure"]["projects"][0]["store_path"] == "/ctl"
    pinned = plan_host("web1", "v1", ["infrastructure"], settings(terraform=[dict(entry, verify_tag="")]), [],
                       {"/ctl": [TF]})
    assert pinned["steps"]["infrastructure"]["projects"][0]["verify_tag"] == ""
    undo = dict(TF, label="safety/rollback-1")
    safety = plan_host("web1", "safety/rollback-1", ["infrastructure"], settings(terraform=[entry]), [], {"/ctl": [undo]})
    assert safety["steps"]["infrastructure"]["projects"][0]["verify_tag"] == ""


PREVIEWS = {
    "config": {"changed": True, "verified": True, "summary": {"/etc/app": {"delete": 1, "update": 1}},
               "paths": {"/etc/app": ["update app.conf", "delete debug.env"]}},
    "release": {"changed": True, "current": "r1", "label": "v1", "from": "r2", "from_label": "v2"},
    "database": {"changed": True, "databases": [{"name": "postgresql/app", "method": "migrate", "changed": True,
                                                 "version_before": 4, "target_version": 3,
                                                 "reverted": ["V0004__coupons"]}]},
}
TF_LISTED = dict(TF, components=[{"type": "terraform_state", "name": "default@/srv/tf", "serial": 7,
                                  "lineage": "abc", "resources": 2}])


def test_the_plan_says_per_layer_what_would_change_what_it_needs_and_what_the_safety_checkpoint_covers():
    plan = plan_host("web1", "v1", "release,config,database,infrastructure,services", settings(),
                     [OLD, NEW], {"/ctl": [TF_LISTED]}, "rollback-1", PREVIEWS, [])
    lines = {line.split(":", 1)[0]: line for line in plan["lines"]}
    assert "current would go from v2 to v1 (r1)" in lines["release"] and "needs the release checkpoint" in lines["release"]
    assert "/etc/app: update app.conf, delete debug.env (1 delete, 1 update)" in lines["config"]
    assert "needs every object of checkpoint %s intact" % NEW["id"] in lines["config"]
    assert "postgresql/app: version 4 -> 3, reverting V0004__coupons" in lines["database"]
    assert "serial 7, lineage abc, 2 resources" in lines["infrastructure"]
    assert lines["services"].endswith("would restart app")
    assert "safety checkpoint safety/rollback-1 first, of release, config, database, infrastructure" in plan["lines"]
    assert plan["changes"] == ["release", "config", "database", "infrastructure", "services"]


def test_a_layer_already_there_changes_nothing_and_its_services_stay_up():
    previews = dict(PREVIEWS, release={"changed": False, "current": "r1", "label": "v1"})
    plan = plan_host("web1", "v1", "release,services", settings(), [NEW], {}, "rollback-1", previews, [])
    assert plan["changes"] == [] and plan["steps"]["services"]["restart"] == []
    assert "release: " in plan["lines"][0] and "nothing would change" in plan["lines"][0]
    assert not any(line.startswith("safety checkpoint") for line in plan["lines"])


def test_a_preview_problem_is_reported_for_a_layer_the_plan_runs_only():
    problems = [{"layer": "config", "problem": "object 1234 is corrupted"},
                {"layer": "release", "problem": "no release recorded"}]
    safety = plan_host("web1", "safety/rollback-1", "release,config", settings(), [SAFETY], {}, "", {}, problems)
    assert [p["layer"] for p in safety["problems"]] == ["config"], "the safety checkpoint holds no release: a note"
    assert "PROBLEM [config] object 1234 is corrupted" in safety["lines"]
