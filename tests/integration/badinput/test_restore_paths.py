"""Restore paths=[...] naming a path the checkpoint does not manage fails, listing the managed paths."""

from __future__ import annotations

import pytest

from badinput_support import checkpoint_v1, run_tasks, tree_state


@pytest.mark.parametrize("paths", [["/srv/other"], ["/srv/app", "/srv/app/index.html"], ["/etc/app/"]])
def test_restore_refuses_paths_the_checkpoint_does_not_manage(clean_fleet, paths):
    h1 = clean_fleet["h1"]
    checkpoint_v1(h1)
    h1.write_text("/srv/app/index.html", "v2\n")
    before = {"store": tree_state(h1.store), "app": tree_state(h1.local("/srv/app"))}

    by_task = run_tasks(h1, [
        {"name": "restore", "gitops.rollback.restore": {"checkpoint": "v1", "paths": paths}},
        {"name": "restore check mode", "check_mode": True,
         "gitops.rollback.restore": {"checkpoint": "v1", "paths": paths}},
    ])

    unmanaged = [path for path in paths if path != "/srv/app"]
    for name in ("restore", "restore check mode"):
        outcome = by_task[name]
        assert outcome["status"] == "ignored", (name, outcome)
        assert "%s is not a managed path of checkpoint v1 (" % unmanaged[0] in outcome["msg"], outcome["msg"]
        assert "it manages: /srv/app. Nothing was changed." in outcome["msg"], outcome["msg"]
    assert {"store": tree_state(h1.store), "app": tree_state(h1.local("/srv/app"))} == before
    assert h1.read_text("/srv/app/index.html") == "v2\n"
