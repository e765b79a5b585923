"""Restore paths=[...] naming a path the checkpoint does not manage or hold fails, listing the managed paths; a path
below a managed path restores only that path."""

from __future__ import annotations

import pytest

from badinput_support import checkpoint_v1, run_tasks, tree_state


@pytest.mark.parametrize("paths,message", [
    (["/srv/other"], "/srv/other is not a managed path of checkpoint v1 ("),
    (["/etc/app/"], "/etc/app/ is not a managed path of checkpoint v1 ("),
    (["/srv/app/gone.html"], "holds nothing at /srv/app/gone.html"),
])
def test_restore_refuses_paths_the_checkpoint_does_not_manage_or_hold(clean_fleet, paths, message):
    h1 = clean_fleet["h1"]
    checkpoint_v1(h1)
    h1.write_text("/srv/app/index.html", "v2\n")
    h1.write_text("/srv/app/gone.html", "added since\n")
    before = {"store": tree_state(h1.store), "app": tree_state(h1.local("/srv/app"))}

    by_task = run_tasks(h1, [
        {"name": "restore", "gitops.rollback.restore": {"checkpoint": "v1", "paths": paths}},
        {"name": "restore check mode", "check_mode": True,
         "gitops.rollback.restore": {"checkpoint": "v1", "paths": paths}},
    ])

    for name in ("restore", "restore check mode"):
        outcome = by_task[name]
        assert outcome["status"] == "ignored", (name, outcome)
        assert message in outcome["msg"], outcome["msg"]
        assert "manages: /srv/app. Nothing was changed." in outcome["msg"] or \
            "Nothing was changed. It manages /srv/app;" in outcome["msg"], outcome["msg"]
    assert {"store": tree_state(h1.store), "app": tree_state(h1.local("/srv/app"))} == before
    assert h1.read_text("/srv/app/index.html") == "v2\n"


def test_restore_of_a_path_below_the_managed_path_leaves_the_rest_as_it_is(clean_fleet):
    h1 = clean_fleet["h1"]
    checkpoint_v1(h1)
    h1.write_text("/srv/app/index.html", "v2\n")
    h1.write_text("/srv/app/other.html", "added since\n")

    by_task = run_tasks(h1, [{"name": "restore", "gitops.rollback.restore": {
        "checkpoint": "v1", "paths": ["/srv/app/index.html"]}}])

    assert by_task["restore"]["status"] == "ok" and by_task["restore"]["summary"] == {"/srv/app": {"update": 1}}
    assert h1.read_text("/srv/app/index.html") == "v1\n" and h1.read_text("/srv/app/other.html") == "added since\n"
