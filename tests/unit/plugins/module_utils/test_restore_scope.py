# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring a path below a managed root: only that path goes back, every other entry of the root stays as it
is now, the safety checkpoint holds exactly what changes, and no link on the way is followed."""

from __future__ import annotations

import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError, UnsafePathError
from ansible_collections.gitops.rollback.plugins.module_utils.files.capture import (
    CheckpointRequest, RootSpec, create_checkpoint,
)
from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import (
    CheckpointParams, make_checkpoint,
)
from ansible_collections.gitops.rollback.plugins.module_utils.files.restore import RestoreOptions, restore_checkpoint
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.tree_state import tree_state


def _state(root):
    return tree_state(root, times=True)


@pytest.fixture
def app(tmp_path):
    """/srv/app and /etc/app of a host, checkpointed as v1, then changed everywhere (the live state)."""
    srv, etc = tmp_path / "srv" / "app", tmp_path / "etc" / "app"
    (srv / "static" / "css").mkdir(parents=True)
    (srv / "lib").mkdir()
    (srv / "static" / "css" / "site.css").write_text("body { color: black }\n")
    (srv / "static" / "logo.svg").write_bytes(b"<svg v1/>")
    os.symlink("css/site.css", str(srv / "static" / "main.css"))
    (srv / "lib" / "app.py").write_text("VERSION = 1\n")
    (etc / "conf.d").mkdir(parents=True)
    (etc / "nginx.conf").write_text("worker_processes 1;\n")
    os.chmod(str(etc / "nginx.conf"), 0o640)
    (etc / "conf.d" / "site.conf").write_text("listen 80;\n")
    store = Store(str(tmp_path / "store"))
    store.init()
    manifest = create_checkpoint(store, CheckpointRequest(roots=[RootSpec(str(srv)), RootSpec(str(etc))],
                                                          label="v1"))[0]
    # v2 and some hand edits: every part of both roots differs from v1 now
    (srv / "static" / "css" / "site.css").write_text("body { color: red }\n")
    (srv / "static" / "logo.svg").write_bytes(b"<svg v2/>")
    os.chmod(str(srv / "static" / "logo.svg"), 0o600)
    os.unlink(str(srv / "static" / "main.css"))
    os.symlink("/etc/shadow", str(srv / "static" / "main.css"))
    (srv / "static" / "new.js").write_text("new\n")
    (srv / "lib" / "app.py").write_text("VERSION = 2\n")
    (srv / "lib" / "extra.py").write_text("extra\n")
    (etc / "nginx.conf").write_text("worker_processes 4;\n")
    os.chmod(str(etc / "nginx.conf"), 0o644)
    (etc / "conf.d" / "site.conf").write_text("listen 8080;\n")
    (etc / "conf.d" / "added.conf").write_text("added\n")
    os.utime(str(srv / "static"), ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return {"store": store, "manifest": manifest, "srv": srv, "etc": etc}


def _restore(app, paths, **options):
    return restore_checkpoint(app["store"], app["manifest"], RestoreOptions(only_paths=paths, **options))


def test_a_file_below_a_root_goes_back_and_nothing_else_changes(app):
    srv_before, etc_before = _state(app["srv"]), _state(app["etc"])

    outcome = _restore(app, [str(app["etc"] / "nginx.conf")])

    assert outcome["verified"] and outcome["summary"] == {str(app["etc"]): {"update": 1}}
    assert (app["etc"] / "nginx.conf").read_text() == "worker_processes 1;\n"
    assert os.stat(str(app["etc"] / "nginx.conf")).st_mode & 0o777 == 0o640
    etc_after = _state(app["etc"])
    assert {rel: value for rel, value in etc_after.items() if rel != "nginx.conf"} == \
        {rel: value for rel, value in etc_before.items() if rel != "nginx.conf"}
    assert _state(app["srv"]) == srv_before


def test_a_directory_below_a_root_goes_back_whole_and_its_siblings_stay(app):
    srv, before = app["srv"], _state(app["srv"])

    outcome = _restore(app, [str(srv / "static")])

    changes = {change["path"]: change["op"] for change in outcome["changes"][str(srv)]}
    assert changes == {"static": "meta", "static/css/site.css": "update", "static/logo.svg": "update",
                       "static/main.css": "update", "static/new.js": "delete"}
    assert (srv / "static" / "css" / "site.css").read_text() == "body { color: black }\n"
    assert (srv / "static" / "logo.svg").read_bytes() == b"<svg v1/>"
    assert os.readlink(str(srv / "static" / "main.css")) == "css/site.css"
    assert not (srv / "static" / "new.js").exists()
    after = _state(srv)
    assert {rel: v for rel, v in after.items() if not rel.startswith("static")} == \
        {rel: v for rel, v in before.items() if not rel.startswith("static")}
    assert (srv / "lib" / "extra.py").read_text() == "extra\n" and (srv / "lib" / "app.py").read_text() == "VERSION = 2\n"
    assert after["static"][0] == "dir"


def test_the_safety_checkpoint_holds_exactly_the_chosen_path_and_undoes_only_it(app):
    srv, store = app["srv"], app["store"]
    before = _state(srv)

    outcome = _restore(app, [str(srv / "static" / "css")])

    safety = store.find(outcome["safety_checkpoint"]["id"])
    assert safety["format_version"] == 2  # an earlier reader refuses it rather than restore the whole root
    assert [(root["path"], root["scope"]) for root in safety["roots"]] == [(str(srv), ["static/css"])]
    assert sorted(entry["path"] for entry in store.iter_tree(safety["roots"][0]["tree"])) == \
        ["static", "static/css", "static/css/site.css"]
    (srv / "lib" / "later.py").write_text("written after the rollback\n")

    restore_checkpoint(store, safety, RestoreOptions())  # the undo: the whole safety checkpoint

    assert (srv / "static" / "css" / "site.css").read_text() == "body { color: red }\n"
    assert (srv / "lib" / "later.py").read_text() == "written after the rollback\n"
    after = _state(srv)
    del after["lib/later.py"]
    assert after == {**before, "lib": after["lib"]}


def test_check_mode_plans_exactly_the_chosen_paths_and_changes_nothing(app):
    before = (_state(app["srv"]), _state(app["etc"]))

    outcome = _restore(app, [str(app["etc"] / "conf.d"), str(app["srv"] / "lib" / "app.py")], dry_run=True)

    assert outcome["summary"] == {str(app["srv"]): {"update": 1}, str(app["etc"]): {"update": 1, "meta": 1, "delete": 1}}
    assert (_state(app["srv"]), _state(app["etc"])) == before


def test_a_link_on_the_way_to_the_chosen_path_is_refused_and_never_followed(app, tmp_path):
    srv, outside = app["srv"], tmp_path / "outside"
    (outside / "css").mkdir(parents=True)
    (outside / "css" / "site.css").write_text("not ours\n")
    os.rename(str(srv / "static"), str(tmp_path / "moved"))
    os.symlink(str(outside), str(srv / "static"))
    before = _state(outside), _state(srv)

    with pytest.raises(UnsafePathError, match="static is a symlink now, where the checkpoint has a directory"):
        _restore(app, [str(srv / "static" / "css")])

    assert (_state(outside), _state(srv)) == before
    assert app["store"].find_optional("safety/v1") is None


def test_a_missing_directory_on_the_way_is_made_as_the_checkpoint_has_it(app, tmp_path):
    srv = app["srv"]
    os.rename(str(srv / "static"), str(tmp_path / "moved"))

    _restore(app, [str(srv / "static" / "css" / "site.css")])

    assert (srv / "static" / "css" / "site.css").read_text() == "body { color: black }\n"
    assert sorted(os.listdir(str(srv / "static"))) == ["css"]


@pytest.mark.parametrize("rel,message", [
    ("static/nothing.js", "holds nothing at {srv}/static/nothing.js: there is nothing to restore it from"),
    ("static/../../other", "is not a managed path of checkpoint v1"),
])
def test_a_path_the_checkpoint_does_not_hold_is_refused_before_any_change(app, rel, message):
    before, store_before = _state(app["srv"]), _state(app["store"].root)

    with pytest.raises(RollbackError) as caught:
        _restore(app, [str(app["srv"] / "static" / "logo.svg"), "%s/%s" % (app["srv"], rel)])

    assert message.format(srv=app["srv"]) in str(caught.value)
    assert "%s, %s" % (app["srv"], app["etc"]) in str(caught.value)  # the managed roots are listed
    assert _state(app["srv"]) == before and _state(app["store"].root) == store_before  # not even an object


def test_the_rollback_safety_capture_narrows_a_root_to_the_paths_below_it(app):
    params = CheckpointParams(store_path=app["store"].root, owner="test", label="safety/r1",
                              paths=[str(app["etc"] / "nginx.conf"), str(app["srv"])],
                              roots=[str(app["srv"]), str(app["etc"])])

    taken = app["store"].find(make_checkpoint(params)["checkpoint"]["id"])

    roots = {root["path"]: root.get("scope") for root in taken["roots"]}
    assert roots == {str(app["etc"]): ["nginx.conf"], str(app["srv"]): None}
    etc_tree = [e["path"] for e in app["store"].iter_tree(next(r for r in taken["roots"] if r.get("scope"))["tree"])]
    assert etc_tree == ["nginx.conf"]
    with pytest.raises(RollbackError, match="/elsewhere is not a managed path nor below one"):
        make_checkpoint(CheckpointParams(store_path=app["store"].root, owner="test", label="safety/r2",
                                         paths=["/elsewhere"], roots=[str(app["srv"])]))
