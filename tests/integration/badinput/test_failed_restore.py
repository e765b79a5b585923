"""A restore refused for a damaged object reports that object (name, checkpoint) and the path apart,
never the live file's metadata as if it were the object."""

from __future__ import annotations

import json

from harness.objects import replace_object

from badinput_support import checkpoint_v1, run_tasks, tree_state

LIVE_METADATA = ("mode", "owner", "group", "uid", "gid", "size", "state", "secontext")


def test_a_failed_restore_reports_the_damaged_object_and_the_path_separately(clean_fleet):
    h1 = clean_fleet["h1"]
    _manifest_path, manifest = checkpoint_v1(h1)
    tree_sha = manifest["roots"][0]["tree"]
    tree = [json.loads(line) for line in (h1.store / "objects" / tree_sha[:2] / tree_sha).read_text().splitlines()]
    victim = next(entry for entry in tree if entry["path"] == "index.html")
    replace_object(h1.store, victim["sha256"], b"tampered")
    h1.write_text("/srv/app/index.html", "v2 live\n")
    # the plan walk may leave unreferenced objects and a refreshed stat cache; no checkpoint and no managed file changes
    before = {"checkpoints": tree_state(h1.store / "checkpoints"), "app": tree_state(h1.local("/srv/app"))}

    by_task = run_tasks(h1, [
        {"name": "restore", "gitops.rollback.restore": {"checkpoint": "v1"}},
        {"name": "restore verified", "gitops.rollback.restore": {"checkpoint": "v1", "verify_checkpoint": True}},
    ])

    failed = by_task["restore"]
    assert failed["status"] == "ignored", failed
    assert not set(LIVE_METADATA) & set(failed), "the live file's metadata reads as the damaged object's: %s" % failed
    assert "path" not in failed
    assert failed["damaged"] == [{"object": victim["sha256"], "checkpoint": manifest["id"], "label": "v1",
                                  "problem": "corrupted", "actual": failed["damaged"][0]["actual"],
                                  "restore_path": "/srv/app/index.html"}]
    assert failed["damaged"][0]["actual"] not in (None, victim["sha256"])
    assert "/srv/app/index.html" in failed["msg"] and victim["sha256"] in failed["msg"], failed["msg"]
    assert "hashes" in failed["msg"] or "found" in failed["msg"], failed["msg"]
    verified = by_task["restore verified"]
    assert verified["status"] == "ignored" and not set(LIVE_METADATA) & set(verified)
    assert [(d["object"], d["checkpoint"], d["restore_path"]) for d in verified["damaged"]] == [
        (victim["sha256"], manifest["id"], "/srv/app/index.html")]
    assert {"checkpoints": tree_state(h1.store / "checkpoints"), "app": tree_state(h1.local("/srv/app"))} == before
