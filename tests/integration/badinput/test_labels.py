"""Every module option that names a new label refuses one outside the grammar, escaped, changing nothing;
an old checkpoint with such a label is still listed and restored."""

from __future__ import annotations

import json
import sqlite3

import pytest

from badinput_support import checkpoint_v1, run_tasks, tree_state

BAD = {
    "empty": ("", "it is empty"),
    "spaces": ("   ", "it contains ' '"),
    "newline": ("v1\nv2", "it contains '\\x0a'"),
    "nul": ("v1\x00", "it contains '\\x00'"),
    "escape": ("\x1b[2Jv1", "it contains '\\x1b'"),
    "dotdot": ("v1/../x", "a path component starts with '.'"),
}


def _tasks(label: str, tmp) -> list[dict]:
    sqlite = {"engine": "sqlite", "database": str(tmp / "app.db")}
    return [
        ("label", {"name": "checkpoint", "gitops.rollback.checkpoint": {"paths": ["/srv/app"], "label": label}}),
        ("checkpoint", {"name": "db_backup", "gitops.rollback.db_backup": {**sqlite, "checkpoint": label}}),
        ("checkpoint", {"name": "db_backup check mode", "check_mode": True,
                        "gitops.rollback.db_backup": {**sqlite, "label": label}}),
        ("label", {"name": "db_migrate label", "gitops.rollback.db_migrate": {
            **sqlite, "operation": "label", "label": label}}),
        ("label", {"name": "release", "gitops.rollback.release": {
            "root": str(tmp / "releases"), "src": str(tmp / "build"), "label": label}}),
        ("label", {"name": "terraform_state snapshot", "gitops.rollback.terraform_state": {
            "operation": "snapshot", "project_path": str(tmp / "infra"), "label": label}}),
        ("safety_label", {"name": "terraform_state revert", "gitops.rollback.terraform_state": {
            "operation": "revert", "project_path": str(tmp / "infra"), "snapshot": "v1", "safety_label": label}}),
    ]


@pytest.mark.parametrize("case", list(BAD))
def test_every_label_option_refuses_a_label_outside_the_grammar(clean_fleet, tmp_path, case):
    label, problem = BAD[case]
    h1 = clean_fleet["h1"]
    h1.write_text("/srv/app/index.html", "v1\n")
    with sqlite3.connect(str(tmp_path / "app.db")) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "index.html").write_text("build\n")
    (tmp_path / "infra").mkdir()
    tasks = _tasks(label, tmp_path)
    watched = [h1.store, h1.local("/srv/app")] + [tmp_path / name for name in ("app.db", "build", "infra", "releases")]
    before = [tree_state(path) for path in watched]

    by_task = run_tasks(h1, [task for _option, task in tasks])

    for option, task in tasks:
        outcome = by_task[task["name"]]
        assert outcome["status"] == "ignored", (task["name"], outcome)
        message = outcome["msg"]
        assert "%s=" % option in message and problem in message and "is refused" in message, (task["name"], message)
        assert "A label is 1 to 128 characters" in message and "Nothing was changed" in message
        assert not any(ord(char) < 0x20 for char in message), (task["name"], message)
    assert [tree_state(path) for path in watched] == before


def test_an_old_checkpoint_with_a_label_outside_the_grammar_is_listed_and_restored(clean_fleet):
    h1 = clean_fleet["h1"]
    manifest_path, manifest = checkpoint_v1(h1)
    old_label = "old release\x1b[2J"
    manifest["label"] = old_label
    manifest_path.write_text(json.dumps(manifest))  # as a collection that did not check labels wrote it
    h1.write_text("/srv/app/index.html", "v2\n")

    by_task = run_tasks(h1, [
        {"name": "list", "gitops.rollback.checkpoint_info": {}},
        {"name": "restore", "gitops.rollback.restore": {"checkpoint": old_label}},
        {"name": "unknown", "gitops.rollback.restore": {"checkpoint": "v9\x1b]0;owned\x07"}},
    ])

    assert [c["label"] for c in by_task["list"]["checkpoints"]] == [old_label]
    assert by_task["restore"]["status"] != "ignored", by_task["restore"]
    assert h1.read_text("/srv/app/index.html") == "v1\n"
    assert by_task["restore"]["safety_checkpoint"]["label"] == "safety/" + manifest["id"]
    message = by_task["unknown"]["msg"]
    assert "'v9\\x1b]0;owned\\x07' is not in" in message and "'old release\\x1b[2J' (%s)" % manifest["id"] in message
    assert "\x1b" not in message and "\x07" not in message
