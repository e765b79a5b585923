# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A release root's index: ids, lookup, marks as shown, the atomic switch and its refusals."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.release.root import (
    HISTORY_LIMIT, INDEX, INDEX_FORMAT, ReleaseError, ReleaseRoot, new_release_id, previous_release, release_summary,
)


def listed(tmp_path, *records):
    root = ReleaseRoot.open(str(tmp_path / "app"))
    for rid, label, marks in records:
        os.makedirs(root.release_dir(rid))
        root.releases.append({"id": rid, "label": label, "marks": list(marks)})
    return root


def test_new_release_ids_sort_by_time_and_never_repeat():
    first = new_release_id([])
    assert new_release_id([first]) != first
    assert new_release_id([first, first + "-2"]) not in (first, first + "-2")


def test_index_round_trips_and_keeps_a_bounded_history(tmp_path):
    root = listed(tmp_path, ("r1", "v1", ()))
    for number in range(HISTORY_LIMIT + 5):
        root.note("deploy", release="r%d" % number)
    root.save()
    with open(os.path.join(root.path, INDEX)) as handle:
        saved = json.load(handle)
    assert saved["format_version"] == INDEX_FORMAT and len(saved["history"]) == HISTORY_LIMIT
    assert ReleaseRoot.open(root.path).find("v1")["id"] == "r1"


def test_an_index_of_another_format_is_refused(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / INDEX).write_text(json.dumps({"format_version": INDEX_FORMAT + 1}))
    with pytest.raises(ReleaseError, match="format_version 2"):
        ReleaseRoot.open(str(tmp_path / "app"))


def test_find_prefers_an_id_then_the_newest_label(tmp_path):
    root = listed(tmp_path, ("r1", "v1", ()), ("r2", "v1", ()), ("r3", "r1", ()))
    assert root.find("r1")["id"] == "r1" and root.find("v1")["id"] == "r2"
    with pytest.raises(ReleaseError, match="not in") as caught:
        root.find("v9")
    assert caught.value.details["available"] == ["r1", "r2", "r3"]


def test_switch_points_current_at_the_release_and_previous_skips_bad_ones(tmp_path):
    root = listed(tmp_path, ("r1", "v1", ()), ("r2", "v2", ("bad",)), ("r3", "v3", ()))
    root.switch("r3")
    assert os.readlink(root.join("current")) == os.path.join("releases", "r3") and root.current_id() == "r3"
    assert previous_release(root, "r3")["id"] == "r1"
    shown = {rid: release_summary(root, root.record(rid), "r3")["state"] for rid in root.ids()}
    assert shown == {"r1": "previous", "r2": "bad", "r3": "active"}


def test_current_that_points_outside_releases_is_refused(tmp_path):
    root = listed(tmp_path, ("r1", "v1", ()))
    os.symlink("elsewhere", root.join("current"))
    with pytest.raises(ReleaseError, match="not a release under"):
        root.current_id()


def test_a_listed_release_without_its_directory_is_refused(tmp_path):
    root = listed(tmp_path, ("r1", "v1", ()))
    os.rmdir(root.release_dir("r1"))
    with pytest.raises(ReleaseError, match="is missing"):
        root.check_complete(root.record("r1"))
