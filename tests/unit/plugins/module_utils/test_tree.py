# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tree walking order, selection and the validation of stored trees."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import IntegrityError, UnsafePathError
from ansible_collections.gitops.rollback.plugins.module_utils.common.fsutil import temp_name
from ansible_collections.gitops.rollback.plugins.module_utils.store.tree import (
    DIR, FILE, LINK, Selection, TreeValidator, check_relative, describe_entry, encode_entry, kind_of,
    path_key, walk,
)


def _make(root, paths):
    for rel in paths:
        full = root / rel
        if rel.endswith("/"):
            full.mkdir(parents=True, exist_ok=True)
        else:
            full.parent.mkdir(parents=True, exist_ok=True)
            full.write_text(rel)


def _walked(root, selection=None, **kwargs):
    return [rel for rel, _st in walk(str(root), selection or Selection(), **kwargs)]


def test_walk_is_depth_first_pre_order_with_sorted_names(tmp_path):
    _make(tmp_path, ["b.txt", "a/z", "a/b/c", "a.txt", "a-b", "A", "empty/"])
    walked = _walked(tmp_path)
    assert walked == ["A", "a", "a/b", "a/b/c", "a/z", "a-b", "a.txt", "b.txt", "empty"]
    keys = [path_key(rel) for rel in walked]
    assert keys == sorted(keys), "the walk order is the order of path keys, so merges work in one pass"


def test_walk_does_not_follow_symlinks(tmp_path):
    _make(tmp_path, ["real/inside"])
    os.symlink("real", str(tmp_path / "link"))
    walked = dict(walk(str(tmp_path), Selection()))
    assert list(walked) == ["link", "real", "real/inside"]
    assert kind_of(walked["link"]) == LINK


def test_walk_skips_our_temporary_files_unless_asked(tmp_path):
    _make(tmp_path, ["keep"])
    leftover = temp_name(str(tmp_path / "keep"))
    open(leftover, "w").close()
    assert _walked(tmp_path) == ["keep"]
    assert _walked(tmp_path, keep_temp=True) == sorted(["keep", os.path.basename(leftover)])


def test_selection_include_exclude_and_base_names(tmp_path):
    _make(tmp_path, ["app.conf", "app.log", "logs/old.log", "logs/keep.conf", "cache/x.conf", "sub/deep/a.conf"])
    selection = Selection(include=["*.conf"], exclude=["cache", "*.log"])
    assert _walked(tmp_path, selection) == ["app.conf", "logs", "logs/keep.conf", "sub", "sub/deep", "sub/deep/a.conf"]


def test_selection_glob_with_slash_matches_the_relative_path(tmp_path):
    _make(tmp_path, ["etc/a.conf", "other/a.conf"])
    assert _walked(tmp_path, Selection(include=["etc/*"])) == ["etc", "etc/a.conf", "other"]


def test_describe_and_encode_entry(tmp_path):
    _make(tmp_path, ["file"])
    os.chmod(str(tmp_path / "file"), 0o640)
    st = os.lstat(str(tmp_path / "file"))
    entry = describe_entry("file", st, FILE)
    assert entry["mode"] == 0o640 and entry["size"] == 4 and entry["type"] == FILE
    line = encode_entry(entry)
    assert line.endswith(b"\n") and b" " not in line
    assert json.loads(line) == entry
    assert list(json.loads(line)) == sorted(entry), "keys are sorted so equal trees hash equally"


@pytest.mark.parametrize("rel", ["..", "../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/.", "", "a/\x00b", None, 3])
def test_check_relative_refuses_escaping_paths(rel):
    with pytest.raises(UnsafePathError):
        check_relative(rel)


@pytest.mark.parametrize("rel", ["a", "a/b/c", "..hidden", "a/...", "with space/x"])
def test_check_relative_accepts_plain_paths(rel):
    assert check_relative(rel) == rel


def _entry(path, kind=FILE, **extra):
    entry = {"path": path, "type": kind, "sha256": "0" * 64 if kind == FILE else None}
    entry.update(extra)
    return entry


def test_validator_accepts_a_well_formed_tree():
    validator = TreeValidator("/root")
    for entry in [_entry("a", DIR), _entry("a/f"), _entry("a/l", LINK), _entry("a.txt"), _entry("b", DIR)]:
        validator.check(entry)


def test_validator_refuses_out_of_order_and_duplicate_entries():
    validator = TreeValidator("/root")
    validator.check(_entry("b"))
    with pytest.raises(IntegrityError, match="out of order"):
        validator.check(_entry("a"))
    validator = TreeValidator("/root")
    validator.check(_entry("a"))
    with pytest.raises(IntegrityError, match="out of order"):
        validator.check(_entry("a"))


def test_validator_refuses_an_entry_below_a_symlink():
    validator = TreeValidator("/srv/app")
    validator.check(_entry("etc", LINK, target="/etc"))
    with pytest.raises(UnsafePathError) as caught:
        validator.check(_entry("etc/passwd"))
    assert "symlink" in str(caught.value) and "'etc'" in str(caught.value)


def test_validator_refuses_escapes_unknown_types_and_files_without_hash():
    with pytest.raises(UnsafePathError):
        TreeValidator("/root").check(_entry("../outside"))
    with pytest.raises(UnsafePathError):
        TreeValidator("/root").check(_entry("/etc/shadow"))
    with pytest.raises(IntegrityError, match="unknown type"):
        TreeValidator("/root").check(_entry("dev", "chardev"))
    with pytest.raises(IntegrityError, match="no sha256"):
        TreeValidator("/root").check({"path": "f", "type": FILE})
