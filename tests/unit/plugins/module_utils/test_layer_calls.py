"""How the rollback role's layer tasks call their modules (plugins/module_utils/controller/layer_calls.py)."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.controller.layer_calls import (
    flags_call, services_to_restart)
from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import LAYERS

KNOWN = ["flags", "traffic", "release", "config", "database", "infrastructure", "services"]
APP = {"name": "app", "layers": ["release", "config"], "command": ["systemctl", "restart", "app"]}
WORKER = {"name": "worker", "layers": ["database"], "state": "reloaded"}
NGINX = {"name": "nginx"}


def names(split):
    return {how: [s["name"] for s in entries] for how, entries in split.items()}


def test_a_service_restarts_when_one_of_its_layers_changed():
    split = services_to_restart([APP, WORKER], ["config"], KNOWN)
    assert names(split) == {"command": ["app"], "manager": []}
    assert names(services_to_restart([APP, WORKER], ["database", "release"], KNOWN)) == \
        {"command": ["app"], "manager": ["worker"]}


def test_nothing_restarts_when_none_of_its_layers_changed():
    assert names(services_to_restart([APP, WORKER], ["flags", "infrastructure"], KNOWN)) == \
        {"command": [], "manager": []}
    assert names(services_to_restart([APP, NGINX], [], KNOWN)) == {"command": [], "manager": []}, "no change"
    assert services_to_restart([], ["config"], KNOWN) == {"command": [], "manager": []}


def test_a_service_without_layers_depends_on_every_known_layer():
    for layer in KNOWN:
        assert names(services_to_restart([NGINX], [layer], KNOWN))["manager"] == ["nginx"], layer
    assert names(services_to_restart([dict(NGINX, layers=None)], ["flags"], KNOWN))["manager"] == ["nginx"]
    assert names(services_to_restart([NGINX], ["config"], ["release"]))["manager"] == [], "known layers given"
    assert names(services_to_restart([NGINX], ["traffic"]))["manager"] == ["nginx"], "default: the role's layers"
    assert list(LAYERS) == KNOWN


def test_a_service_with_an_empty_list_of_layers_never_restarts():
    assert names(services_to_restart([dict(NGINX, layers=[])], KNOWN, KNOWN))["manager"] == []


def test_one_layer_name_counts_as_a_list_of_one():
    assert names(services_to_restart([dict(NGINX, layers="config")], ["config"], KNOWN))["manager"] == ["nginx"]
    assert names(services_to_restart([dict(NGINX, layers="config")], ["co"], KNOWN))["manager"] == []


def test_services_split_by_command_or_service_manager_in_their_order():
    db = {"name": "db", "command": ["pg_ctl", "reload"]}
    split = services_to_restart([NGINX, APP, WORKER, db], KNOWN, KNOWN)
    assert names(split) == {"command": ["app", "db"], "manager": ["nginx", "worker"]}
    assert split["command"] == [APP, db], "a command entry is passed as given"
    assert names(services_to_restart([dict(NGINX, command=None)], ["config"], KNOWN))["command"] == ["nginx"], \
        "a command key, even null, means by command (as selectattr('command', 'defined') did)"


def test_the_service_manager_restarts_unless_the_service_says_otherwise():
    split = services_to_restart([NGINX, WORKER], ["database"], KNOWN)
    assert split["manager"] == [{"name": "nginx", "state": "restarted"},
                                {"name": "worker", "layers": ["database"], "state": "reloaded"}]
    assert NGINX == {"name": "nginx"}, "the setting is not changed"


SET = {"backend": "file", "path": "/etc/app/flags.json", "off": ["checkout_v2"]}
PLAIN = {"backend": "file", "path": "/etc/app/flags.json"}


def test_a_set_with_off_flags_turns_them_off_and_reads_no_checkpoint():
    assert flags_call(SET, None, None, "v1") == {"state": "off", "names": ["checkout_v2"]}
    assert flags_call(SET, None, "v1", "v0") == {"state": "off", "names": ["checkout_v2"]}, "a target tag too"


def test_a_set_without_off_flags_is_restored_from_the_target_else_the_plans_checkpoint():
    assert flags_call(PLAIN, None, None, "v1") == {"state": "restored", "names": [], "checkpoint": "v1"}
    assert flags_call(PLAIN, None, "v2", "v1") == {"state": "restored", "names": [], "checkpoint": "v2"}
    assert flags_call(dict(PLAIN, off=[]), None, None, "v1")["state"] == "restored"
    assert flags_call(dict(PLAIN, off=None), None, None, "v1")["state"] == "restored"
    assert "checkpoint" not in flags_call(PLAIN, None, None, None), "none to read: the module's own check says so"


def test_back_to_a_safety_checkpoint_the_off_flags_are_restored_too():
    assert flags_call(SET, None, "safety/20260101T000000Z-ab12", "v1") == \
        {"state": "restored", "names": [], "checkpoint": "safety/20260101T000000Z-ab12"}
    assert flags_call(SET, None, "not-safety/x", "v1")["state"] == "off", "the prefix, not a substring"
    assert flags_call(SET, None, "safety", "v1")["state"] == "off"


def test_a_given_state_is_used_as_is_and_stores_under_the_target():
    assert flags_call(SET, "checkpointed", "v3", None) == {"state": "checkpointed", "names": [], "checkpoint": "v3"}
    assert flags_call(PLAIN, "checkpointed", "safety/run", "v1") == \
        {"state": "checkpointed", "names": [], "checkpoint": "safety/run"}
