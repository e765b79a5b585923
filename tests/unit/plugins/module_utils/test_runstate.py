"""A run's controller state (plugins/module_utils/controller/runstate.py): records, the run lock and its name."""

from __future__ import annotations

import json

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.controller import audit as _audit
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import LockHeldError, RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.controller.runstate import (
    append_record, audit_argument_spec, lock_name, record_event, run_lock, send_webhook, take_run_lock)


def test_the_lock_is_named_as_given_else_after_the_awx_inventory_else_the_inventory_sources():
    sources = {"ansible_inventory_sources": ["/inv/prod/hosts.yml", "/inv/prod/extra.yml"]}
    assert lock_name("shop", dict(sources, awx_inventory_name="Prod")) == "shop"
    assert lock_name("", dict(sources, awx_inventory_name="Prod")) == "Prod"
    assert lock_name("", dict(sources, awx_inventory_name="", tower_inventory_name="Legacy")) == "Legacy"
    assert lock_name("", sources) == "/inv/prod/hosts.yml,/inv/prod/extra.yml"


def test_a_second_run_is_refused_naming_the_holder_and_check_mode_leaves_no_trace(tmp_path):
    locks = tmp_path / "locks"
    assert not take_run_lock(run_lock("prod", str(locks), "alice", "rollback to v1", 3600, "", True),
                             "prod", "rollback to v1", 0, True)["changed"]
    assert not locks.exists(), "check mode creates nothing"

    first = take_run_lock(run_lock("prod", str(locks), "alice", "rollback to v1", 3600, "", False),
                          "prod", "rollback to v1", 0, False)
    with pytest.raises(LockHeldError, match="Refusing a second rollback to v2 of prod: alice has been running"):
        take_run_lock(run_lock("prod", str(locks), "bob", "rollback to v1", 3600, "", False),
                      "prod", "rollback to v2", 0, False)
    with pytest.raises(LockHeldError, match="already running: alice"):
        take_run_lock(run_lock("prod", str(locks), "bob", "rollback to v1", 3600, "", True),
                      "prod", "rollback to v2", 0, True)
    assert run_lock("prod", str(locks), "alice", "rollback", 0, "", False).release(first["token"])
    assert not list(locks.iterdir())


def test_records_are_chained_in_the_log_and_a_drill_is_not_sent(tmp_path):
    log = tmp_path / "audit.jsonl"
    first = append_record("", str(log), _audit.make_record("started", "rollback", "r1"))
    second = append_record("", str(log), _audit.make_record("completed", "rollback", "r1"))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["event"] for r in lines] == ["started", "completed"] and second["prev_hash"] == first["hash"]
    warnings = []
    assert send_webhook("", None, second, warnings.append) is None
    drill = _audit.make_record("started", "drill", "r2", trigger="drill")
    assert send_webhook("http://127.0.0.1:9/hook", None, drill, warnings.append)["skipped"] and not warnings


def audit_params(log_path, **given):
    """The audit module's parameters as its argument spec fills them (defaults, None for the rest)."""
    params = {name: spec.get("default") for name, spec in audit_argument_spec().items()}
    params.update(log_path=str(log_path), **given)
    return params


def test_an_audit_event_is_chained_into_the_log_and_check_mode_writes_nothing(tmp_path):
    log = tmp_path / "state" / "audit.jsonl"
    params = audit_params(log, event="alert", operation="guard", run_id="g-1", target="v1", level="critical",
                          measurements={"verdict": "fail"}, hosts=["web1"])
    planned = record_event(params, True, print)
    assert not planned["changed"] and planned["record"]["measurements"] == {"verdict": "fail"}
    assert not log.exists(), "check mode writes no record"

    first = record_event(params, False, print)
    second = record_event(dict(params, event="started", operation="rollback"), False, print)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert first["changed"] and [r["event"] for r in lines] == ["alert", "started"]
    assert lines == [first["record"], second["record"]], "what the task returns is what the log holds"
    assert lines[1]["prev_hash"] == lines[0]["hash"] and lines[1]["seq"] == 2, "chained"


def test_an_audit_record_that_cannot_be_written_names_the_log(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RollbackError, match="could not be written to %s" % (blocker / "audit.jsonl")):
        record_event(audit_params(blocker / "audit.jsonl", event="alert", operation="guard", run_id="g"), False, print)
