"""The rollback plan of a host (plugins/module_utils/controller/plan.py): resolved once, every problem at once."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.release.flags import FileFlags
from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import (
    LAYERS, HostSettings, layer_list, plan_host, problems_message, request_problems, resolve)
from ansible_collections.gitops.rollback.plugins.module_utils.controller.selection import component_name

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


def test_a_relative_release_root_is_a_problem_of_the_plan():
    plan = plan_host("web1", "v1", ["release", "config"], settings(release_root="srv/app"), [OLD, NEW])
    assert plan["problems"] == [{"layer": "release", "problem": (
        "Set gitops_rollback_release_root to the absolute release root on web1 (the directory holding releases/, "
        "shared/ and current), not 'srv/app'.")}]
    assert "release" not in plan["layers"]


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
        "rollback_layers may only name flags, traffic, release, config, database, infrastructure, services "
        "(got 'bogus').")}]
    assert layer_list(" config , database,") == ["config", "database"]


def test_a_request_without_target_or_with_unknown_layers_is_refused_before_anything_runs():
    assert request_problems("v1", "config,database") == []
    assert request_problems("", ["config"]) == [
        "Give the checkpoint id or Git tag to roll back to with -e rollback_to=<tag>."]
    problem, = request_problems("v1", "config,{{ x }}")
    assert problem.startswith("rollback_layers may only name flags, traffic, release,") and "{{" not in problem, problem


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


FLAGS_FILE = {"backend": "file", "path": "/etc/shop/flags.json"}
FLAGS_ETCD = {"backend": "etcd", "etcd_endpoints": ["http://etcd:2379"], "etcd_prefix": "/flags/shop/"}
WITH_FLAGS = {"id": "20261201T100000.000Z-111111", "label": "v1", "roots": ["/etc/app"],
              "components": [{"type": "flags", "name": "file:/etc/shop/flags.json"},
                             {"type": "flags", "name": "etcd:/flags/shop/"},
                             {"type": "release", "name": "/srv/app"}]}


def test_the_flags_layer_comes_first_and_puts_each_set_back_from_the_resolved_id():
    plan = plan_host("web1", "v1", list(LAYERS), settings(flags=[FLAGS_FILE, FLAGS_ETCD], databases=[], terraform=[],
                                                          services=[]), [WITH_FLAGS], run_id="rollback-1")
    assert plan["problems"] == []
    assert plan["layers"] == ["flags", "release", "config"]  # first in the default order
    assert plan["checkpoints"]["flags"] == WITH_FLAGS["id"]
    assert [s["name"] for s in plan["steps"]["flags"]["sets"]] == ["file:/etc/shop/flags.json", "etcd:/flags/shop/"]
    assert plan["safety"] == ["flags", "release", "config"]
    assert plan["lines"][0].startswith("flags: put the flags of file:/etc/shop/flags.json back as checkpoint "
                                       + WITH_FLAGS["id"])


def test_a_checkpoint_without_the_flags_is_a_problem_and_an_off_set_needs_none():
    plan = plan_host("web1", "v1", ["flags"], settings(flags=[FLAGS_FILE, dict(FLAGS_ETCD, etcd_prefix="/other/")]),
                     [WITH_FLAGS])
    assert plan["layers"] == []
    assert plan["problems"] == [{"layer": "flags", "problem": (
        "Checkpoint v1 (%s) holds no flags of etcd:/other/ in /var/lib/gitops-rollback on web1. Record them with "
        "gitops.rollback.feature_flags state=checkpointed when checkpointing (the checkpoint playbook does, for "
        "gitops_rollback_flags), or give the entry off: [flags] to turn flags off instead." % WITH_FLAGS["id"])}]
    off = plan_host("web1", "v1", ["flags"], settings(flags=[dict(FLAGS_ETCD, etcd_prefix="/other/", off=["beta"])]),
                    [V2])
    assert off["problems"] == [] and off["layers"] == ["flags"] and "flags" not in off["checkpoints"]
    assert off["steps"]["flags"]["sets"] == [{"name": "etcd:/other/", "method": "off", "names": ["beta"],
                                              "action": "turn beta off in etcd:/other/"}]


def test_the_flags_preview_says_which_flags_change_and_none_is_no_change():
    preview = {"changed": True, "sets": {"file:/etc/shop/flags.json": {"checkout_v2": {"before": True, "after": False}}}}
    plan = plan_host("web1", "v1", ["flags", "release"], settings(flags=[FLAGS_FILE]), [WITH_FLAGS],
                     previews={"flags": preview, "release": {"changed": False}})
    assert plan["changes"] == ["flags"]
    assert plan["lines"][0].endswith("; would change file:/etc/shop/flags.json: checkout_v2 true -> false")


def test_the_plan_names_a_flag_set_as_the_backend_stores_it():
    assert component_name("flags", {"path": "/etc/shop//flags.json"}) == FileFlags("/etc/shop//flags.json").component_name


def _listing(*labels):
    return [{"id": "2026120%dT100000.000Z-%06d" % (index + 1, index), "label": label, "roots": ["/etc/app"],
             "components": [{"type": "release", "name": "/srv/app"}]} for index, label in enumerate(labels)]


def test_a_relative_target_resolves_once_to_an_id_and_the_plan_says_which():
    listing = _listing("v2.2.0", "scheduled/20261203T0300Z", "v2.3.0", "safety/rollback-1", "v2.4.0", "v2.4.0")
    checks = {"previous": listing[2], "previous~2": listing[1], "previous:v*": listing[2],
              "previous~2:v*": listing[0], "latest:v2.3.*": listing[2], "latest:v*": listing[5]}
    for target, wanted in checks.items():
        plan = plan_host("web1", target, ["release"], settings(), listing)
        assert plan["problems"] == [], (target, plan["problems"])
        assert plan["checkpoints"] == {"release": wanted["id"]}, target
        assert plan["lines"][0] == "target %s is %s (%s) on this host, resolved once: every layer rolls back to " \
                                   "that id" % (target, wanted["label"], wanted["id"])


def test_a_relative_target_past_the_oldest_or_outside_the_grammar_is_a_problem_naming_the_way_out():
    listing = _listing("v1", "v2")
    plan = plan_host("web1", "previous~2:v*", ["release"], settings(), listing)
    assert plan["layers"] == [] and [p["layer"] for p in plan["problems"]] == ["release"]
    assert plan["problems"][0]["problem"].startswith(
        "Rollback target previous~2:v* names no checkpoint in /var/lib/gitops-rollback on web1: counting back from "
        "the newest, it has only v2 (%s), v1 (%s)." % (listing[1]["id"], listing[0]["id"]))
    for bad, why in (("previous~0", "it counts back 0 checkpoints (from 1 to 99)"),
                     ("previous:v 1", "its glob 'v 1' is empty, too long or holds a character outside"),
                     ("previous~", "it contains '~'")):
        refused = plan_host("web1", bad, ["release"], settings(), listing)
        assert refused["layers"] == [] and [p["layer"] for p in refused["problems"]] == ["request"], bad
        assert why in refused["problems"][0]["problem"], refused["problems"]
        assert refused["problems"][0]["problem"].startswith("rollback_to '%s' is refused: " % bad)
        assert "or a relative target (previous, previous~N" in refused["problems"][0]["problem"]


def test_a_relative_target_finds_the_terraform_snapshot_of_the_release_it_resolved_to():
    listing = _listing("v1", "v2")
    tf = {"/ctl": [dict(TF, label="v1"), dict(TF, id="20261209T100000.000Z-999999", label="v2")]}
    plan = plan_host("web1", "previous", ["release", "infrastructure"], settings(), listing, tf)
    assert plan["problems"] == [] and plan["checkpoints"] == {"release": listing[0]["id"], "infrastructure": TF["id"]}
    # verified against the tag it resolved to, not against a Git tag named "previous"
    assert plan["steps"]["infrastructure"]["projects"][0]["verify_tag"] == "v1"


def test_a_checkpoint_id_target_verifies_terraform_against_the_snapshots_label():
    by_id = plan_host("web1", TF["id"], ["infrastructure"], settings(), [], {"/ctl": [TF]})
    assert by_id["problems"] == [] and by_id["steps"]["infrastructure"]["projects"][0]["verify_tag"] == "v1"
    unlabelled = plan_host("web1", TF["id"], ["infrastructure"], settings(), [], {"/ctl": [dict(TF, label="")]})
    assert unlabelled["steps"]["infrastructure"]["projects"][0]["verify_tag"] == ""


TWO_DBS = [{"engine": "postgresql", "database": "app", "migrations_dir": "/srv/migrations"},
           {"engine": "postgresql", "database": "billing", "name": "billing"}]
TWO_TF = [{"project_path": "/srv/tf", "store_path": "/ctl"}, {"project_path": "/srv/dns", "name": "dns", "store_path": "/ctl"}]
EVERYTHING = {"id": "20261201T100000.000Z-222222", "label": "v1", "roots": ["/etc/app", "/etc/other"],
              "components": [{"type": "release", "name": "/srv/app"}, {"type": "database", "name": "postgresql/app"},
                             {"type": "database", "name": "postgresql/billing"},
                             {"type": "flags", "name": "file:/etc/shop/flags.json"}]}
TF_BOTH = dict(TF, components=TF["components"] + [{"type": "terraform_state", "name": "default@dns"}])


def test_rollback_components_keeps_one_database_of_several_and_nothing_else():
    wide = settings(paths=["/etc/app", "/etc/other"], databases=TWO_DBS, terraform=TWO_TF, flags=[FLAGS_FILE])
    plan = plan_host("web1", "v1", list(LAYERS), wide, [EVERYTHING], {"/ctl": [TF_BOTH]}, run_id="rollback-1",
                     components="billing")
    assert plan["problems"] == []
    assert plan["layers"] == ["database", "services"]
    assert [d["name"] for d in plan["steps"]["database"]["databases"]] == ["postgresql/billing"]
    assert plan["selection"] == {"flags": [], "config": [], "database": [1], "infrastructure": []}
    assert plan["safety"] == ["database"] and plan["safety_host"] == ["database"]


def test_rollback_components_names_a_terraform_project_a_release_a_flag_set_and_a_managed_path():
    wide = settings(paths=["/etc/app", "/etc/other"], databases=TWO_DBS, terraform=TWO_TF, flags=[FLAGS_FILE])
    plan = plan_host("web1", "v1", list(LAYERS), wide, [EVERYTHING], {"/ctl": [TF_BOTH]},
                     components=["default@dns", "/srv/app/", "/etc/shop/flags.json", "/etc/other", "nothing/here"])
    assert plan["problems"] == []
    assert plan["layers"] == ["flags", "release", "config", "infrastructure", "services"]
    assert [p["name"] for p in plan["steps"]["infrastructure"]["projects"]] == ["default@dns"]
    assert plan["steps"]["config"]["paths"] == ["/etc/other"]
    assert plan["selection"] == {"flags": [0], "config": [1], "database": [], "infrastructure": [1]}
    assert plan["notes"] == ["rollback_components: nothing named 'nothing/here' on this host"]


def test_without_rollback_components_every_entry_rolls_back():
    plan = plan_host("web1", "v1", ["database"], settings(databases=TWO_DBS), [EVERYTHING])
    assert plan["selection"]["database"] == [0, 1] and len(plan["steps"]["database"]["databases"]) == 2


def test_a_path_below_a_managed_root_is_planned_with_its_root_and_one_outside_is_a_problem():
    both = dict(NEW, roots=["/etc/app", "/srv/www"])
    plan = plan_host("web1", "v1", ["config"], settings(paths=["/etc/app/nginx.conf", "/srv/www/static"]), [both])
    assert plan["problems"] == []
    step = plan["steps"]["config"]
    assert step["roots"] == ["/etc/app", "/srv/www"] and step["paths"] == ["/etc/app/nginx.conf", "/srv/www/static"]
    assert "restore /etc/app/nginx.conf, /srv/www/static byte-exact" in step["action"]
    assert "nothing else of /etc/app, /srv/www" in step["action"]
    outside = plan_host("web1", "v1", ["config"], settings(paths=["/etc/apple/x.conf", "/etc/app/x"]), [both])
    assert [p["layer"] for p in outside["problems"]] == ["config"]
    assert "does not manage /etc/apple/x.conf" in outside["problems"][0]["problem"]
    assert "it manages: /etc/app, /srv/www" in outside["problems"][0]["problem"]


def test_a_safety_checkpoint_of_some_paths_restores_those_and_notes_the_others():
    safety = dict(SAFETY, roots=["/etc/app"])
    plan = plan_host("web1", SAFETY["label"], ["config"], settings(paths=["/srv/www", "/etc/app"]), [safety])
    assert plan["problems"] == [] and plan["layers"] == ["config"]
    assert plan["steps"]["config"]["paths"] == ["/etc/app"] and plan["selection"]["config"] == [1]
    assert any("does not manage /srv/www" in note for note in plan["notes"])


def test_a_strategy_that_runs_hosts_on_their_own_is_refused_with_the_way_out():
    from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import strategy_problem
    for strategy in ("linear", "ansible.builtin.linear", "debug", None, ""):
        assert strategy_problem(strategy) == "", strategy
    for strategy in ("free", "ansible.builtin.free", "host_pinned", "ansible.builtin.host_pinned"):
        problem = strategy_problem(strategy)
        assert problem.startswith("The %s strategy runs each host on its own" % strategy), problem
        assert "linear" in problem and problem.endswith("Nothing was changed."), problem


def test_a_flag_set_whose_off_key_yaml_read_as_false_is_refused_with_the_way_out():
    unquoted = {**FLAGS_ETCD, False: ["new_search"]}  # {off: [new_search]} as YAML 1.1 loads it
    plan = plan_host("web1", "v1", ["flags"], settings(flags=[unquoted], databases=[], terraform=[]), [OLD])
    assert plan["layers"] == [] and [p["layer"] for p in plan["problems"]] == ["flags"], plan
    assert 'has a key false: YAML reads an unquoted off' in plan["problems"][0]["problem"]
    assert 'Quote it: "off": [flags].' in plan["problems"][0]["problem"]
    as_json = {**FLAGS_ETCD, "false": ["new_search"]}  # the same entry after a JSON round trip
    assert [p["layer"] for p in plan_host("web1", "v1", ["flags"], settings(flags=[as_json], databases=[], terraform=[]),
                                          [OLD])["problems"]] == ["flags"]
