# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback_plan action with a checkpoint repository: the fetch of the target is part of the host's one
rollback_preview run (no checkpoint_sync run of its own), a failed fetch fails the host as the fetch task did, and
a host whose layers read no store fetches with checkpoint_sync alone."""

from __future__ import annotations

from typing import Any, Dict, List
from unittest import mock

from ansible_collections.gitops.rollback.plugins.action import rollback_plan as _action

REPOSITORY = {"host": "backup.example.com", "path": "/srv/repository", "private_key": "KEY"}
FETCHED = {"changed": True, "checkpoints": ["20261202T190000.123Z-a1b2c3"], "fetched": {"objects": 3, "bytes": 10},
           "recovery": {"rpo_seconds": 5.0, "rto_seconds": 0.1, "newest_replicated": None}}


def _run(args: Dict[str, Any], replies: List[Dict[str, Any]], check_mode: bool = False):
    """Run the action on host h1 with ``args``; each module call gets the next of ``replies``."""
    task = mock.MagicMock(args=args, async_val=0, check_mode=check_mode, action="gitops.rollback.rollback_plan")
    action = _action.ActionModule(task, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), mock.MagicMock(),
                                  mock.MagicMock())
    calls: List[Dict[str, Any]] = []

    def module(module_name, module_args, task_vars):
        calls.append({"module": module_name, "args": module_args})
        return replies.pop(0)

    with mock.patch.object(action, "_execute_module", side_effect=module):
        result = action.run(task_vars={"inventory_hostname": "h1"})
    return result, calls


def test_the_fetch_rides_in_the_preview_run_under_the_host_name():
    preview = {"checkpoints": [], "previews": {}, "problems": [], "fetched": FETCHED, "changed": True}
    result, calls = _run({"target": "v1", "paths": ["/etc/app"], "repository": REPOSITORY,
                          "allowed_paths": ["/etc/app"]}, [preview])
    assert [call["module"] for call in calls] == ["gitops.rollback.rollback_preview"], "one module run per host"
    assert calls[0]["args"]["repository"] == dict(REPOSITORY, name="h1")
    assert calls[0]["args"]["allowed_paths"] == ["/etc/app"]
    assert result["fetched"] == FETCHED and result["changed"] is True
    assert "failed" not in result


def test_a_repository_names_its_own_namespace():
    assert _action.repository_ask(dict(REPOSITORY, name="web1"), "h1")["name"] == "web1"
    assert _action.repository_ask({}, "h1") is None


def test_without_a_repository_the_preview_fetches_nothing():
    # the rollback role passes the managed paths as allowed_paths always: they count with a repository alone
    preview = {"checkpoints": [], "previews": {}, "problems": []}
    result, calls = _run({"target": "v1", "paths": ["/etc/app"], "allowed_paths": ["/etc/app"]}, [preview])
    assert "repository" not in calls[0]["args"] and "allowed_paths" not in calls[0]["args"]
    assert "fetched" not in result


def test_a_failed_fetch_fails_the_host_and_is_no_plan_problem():
    failed = {"failed": True, "fetch_failed": True, "msg": "The repository backup.example.com is unreachable"}
    result, _calls = _run({"target": "v1", "paths": ["/etc/app"], "repository": REPOSITORY}, [failed])
    assert result["failed"] is True and "unreachable" in result["msg"]
    assert "plan" not in result


def test_a_failed_preview_is_a_plan_problem():
    result, _calls = _run({"target": "v1", "paths": ["/etc/app"]}, [{"failed": True, "msg": "store damaged"}])
    assert "failed" not in result
    assert {"layer": "store", "problem": "store damaged"} in result["plan"]["problems"]


def test_a_host_without_store_layers_fetches_with_checkpoint_sync_alone():
    result, calls = _run({"target": "v1", "layers": ["traffic"], "traffic": True, "repository": REPOSITORY},
                         [dict(FETCHED, invocation={"module_args": {}})])
    assert [call["module"] for call in calls] == ["gitops.rollback.checkpoint_sync"]
    assert calls[0]["args"]["state"] == "fetched" and calls[0]["args"]["checkpoints"] == ["v1"]
    assert calls[0]["args"]["repository"]["name"] == "h1"
    assert result["fetched"] == FETCHED and result["changed"] is True


def test_in_check_mode_a_fetch_that_would_fetch_changes_nothing():
    result, _calls = _run({"target": "v1", "layers": ["traffic"], "traffic": True, "repository": REPOSITORY},
                          [dict(FETCHED)], check_mode=True)
    assert result["changed"] is False and result["fetched"]["changed"] is True
