# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The packed restore plan: every entry and action comes back exactly as planned."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.files.plantable import (
    Action, ActionList, DirEntries, Entries,
)

SHA = "0123456789abcdef" * 4


def _entry(rel, **changes):
    entry = {"gid": 0, "group": "root", "mode": 0o644, "mtime_ns": 1_700_000_000_123_456_789, "owner": "root",
             "path": rel, "sha256": SHA, "size": 12, "target": None, "type": "file", "uid": 0}
    entry.update(changes)
    return entry


ENTRIES = [
    _entry("etc/app.conf"),
    _entry("bin", type="dir", sha256=None, size=0, mode=0o755, owner=None, group=None, uid=4242, gid=4243),
    _entry("current", type="symlink", sha256=None, size=0, target="releases/v1"),
    _entry("run/pipe", type="fifo", sha256=None, size=0, mtime_ns=-5),
    _entry("d\u00e9j\u00e0/\u65e5\u672c", mode=0o4755, uid=(1 << 32) - 1, size=(1 << 63) - 1),
    _entry("bad\udcff-name", owner="w\u00e9b"),  # a file name that was not UTF-8 (surrogateescape)
    # kept as read, though no row holds them:
    _entry("extra-key", comment="x"),
    _entry("float-mode", mode=420.0),
    _entry("bool-uid", uid=True),
    _entry("upper-sha", sha256=SHA.upper()),
    _entry("huge-mtime", mtime_ns=1 << 70),
    _entry("negative-size", size=-1),
    _entry("other-path", path="not-other-path"),
    _entry("list-target", type="symlink", target=["a"]),
    {"path": "minimal", "type": "dir"},
]


def _typed(value):
    """A value with the types of everything in it, so True and 1 or 420.0 and 420 differ."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


def test_every_entry_comes_back_exactly_as_read():
    entries = Entries()
    rels = [entry["path"] if entry["path"] != "not-other-path" else "other-path" for entry in ENTRIES]
    numbers = [entries.add(rel, entry) for rel, entry in zip(rels, ENTRIES)]
    numbers.append(entries.add("deleted/path", None))
    assert numbers == list(range(len(ENTRIES) + 1))
    for number, entry in enumerate(ENTRIES):
        assert _typed(entries.entry(number)) == _typed(entry)
        assert entries.path(number) == rels[number]
    assert entries.entry(len(ENTRIES)) is None and entries.path(len(ENTRIES)) == "deleted/path"


def test_actions_come_back_with_their_reasons_kinds_and_inodes():
    actions = ActionList()
    planned = [
        Action("create", "a", _entry("a")),
        Action("update", "b", _entry("b"), "file", ["content", "mode", "mtime"]),
        Action("meta", "c", _entry("c"), "file", ["owner", "mtime"], live_ino=(1 << 64) - 1),
        Action("meta", "d", _entry("d"), "file", ["mode"], live_ino=0),
        Action("delete", "e", None, "special", ["extra"]),
        Action("retype", "f", _entry("f", type="dir", sha256=None), "symlink", ["type"]),
        Action("update", "g", _entry("g"), "file", ["mtime", "content"]),  # not in the usual order: kept so
        Action("meta", "h", _entry("h"), "fifo", ["something new"]),
    ]
    for action in planned:
        actions.append(action)
    assert len(actions) == len(planned) and actions
    seen = list(actions)
    assert [(a.op, a.rel, a.live_kind, a.reasons, a.live_ino, a.entry) for a in seen] == \
        [(a.op, a.rel, a.live_kind, a.reasons, a.live_ino, a.entry) for a in planned]
    assert [a.rel for a in reversed(actions)] == list("hgfedcba")
    assert actions[-1].rel == "h" and [a.rel for a in actions.head(2)] == ["a", "b"]
    assert actions.counts() == {"create": 1, "update": 2, "meta": 3, "delete": 1, "retype": 1}
    assert seen[4].as_dict() == {"op": "delete", "path": "e", "reasons": ["extra"], "type": "special"}
    with pytest.raises(IndexError):
        actions[len(planned)]


def test_directories_keep_one_entry_per_key():
    dirs = DirEntries()
    dirs.add(("a",), _entry("a", type="dir", sha256=None))
    dirs.add(("a", "b"), _entry("a/b", type="dir", sha256=None))
    dirs.add(("a",), _entry("a", type="dir", sha256=None))
    assert len(dirs) == 2 and ("a", "b") in dirs
    assert sorted(dirs, key=len, reverse=True) == [("a", "b"), ("a",)]
    assert dict(dirs.items()) == {("a",): _entry("a", type="dir", sha256=None),
                                  ("a", "b"): _entry("a/b", type="dir", sha256=None)}


def test_type_size_and_object_of_every_entry_are_read_without_decoding_it_whole():
    entries = Entries()
    for entry in ENTRIES:
        entries.add(entry["path"], entry)
    entries.add("removed", None)
    for number, entry in enumerate(ENTRIES):
        assert entries.blob(number) == (entry.get("type"), entry.get("size"), entry.get("sha256"))
    assert entries.blob(len(ENTRIES)) == (None, 0, None)
