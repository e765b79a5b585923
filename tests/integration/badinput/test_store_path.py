"""A store_path that is not a checkpoint store is refused by every module that opens one."""

from __future__ import annotations

import os

import pytest

from badinput_support import run_tasks, tree_state


def _module_tasks(store_path: str) -> list[dict]:
    common = {"store_path": store_path}
    return [
        {"name": "checkpoint", "gitops.rollback.checkpoint": {**common, "paths": ["/srv/app"], "label": "v1"}},
        {"name": "checkpoint check mode", "check_mode": True,
         "gitops.rollback.checkpoint": {**common, "paths": ["/srv/app"], "label": "v1"}},
        {"name": "checkpoint_info", "gitops.rollback.checkpoint_info": common},
        {"name": "verify", "gitops.rollback.checkpoint": {**common, "state": "verified"}},
        {"name": "prune", "gitops.rollback.checkpoint": {**common, "state": "pruned", "keep": 1}},
        {"name": "restore", "gitops.rollback.restore": {**common, "checkpoint": "v1"}},
        {"name": "db_backup_info", "gitops.rollback.db_backup_info": common},
        {"name": "terraform_state list", "gitops.rollback.terraform_state": {**common, "operation": "list"}},
    ]


def _regular_file(path):
    path.write_bytes(b"some file that is not a store\n")
    return "is a regular file"


def _symlink(path):
    os.symlink("/srv/app", path)
    return "is a symbolic link (to '/srv/app')"


def _foreign_directory(path):
    path.mkdir()
    (path / "notes.txt").write_text("not a store")
    return "is a directory that is not a checkpoint store (it has no format file and holds 'notes.txt')"


@pytest.mark.parametrize("make", [_regular_file, _symlink, _foreign_directory], ids=lambda m: m.__name__.strip("_"))
def test_every_module_refuses_a_store_path_that_is_not_a_store(clean_fleet, tmp_path, make):
    h1 = clean_fleet["h1"]
    h1.write_text("/srv/app/index.html", "v1\n")
    store_path = tmp_path / "store"
    problem = make(store_path)
    tasks = _module_tasks(str(store_path))
    before = {"store": tree_state(store_path), "app": tree_state(h1.local("/srv/app")),
              "default store": tree_state(h1.store)}

    by_task = run_tasks(h1, tasks)

    for task in tasks:
        outcome = by_task[task["name"]]
        assert outcome["status"] == "ignored", (task["name"], outcome)
        expected = ("not a checkpoint store: %s %s. Nothing was read or changed. Point store_path at a checkpoint "
                    "store" % (store_path, problem))
        assert expected in outcome["msg"], outcome["msg"]
    assert {"store": tree_state(store_path), "app": tree_state(h1.local("/srv/app")),
            "default store": tree_state(h1.store)} == before
