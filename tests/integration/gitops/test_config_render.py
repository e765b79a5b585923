"""Config from Git: templates rendered as of a tag on the SSH hosts; check + diff shows and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from gitops_support import git

pytestmark = pytest.mark.slow

TEMPLATES = {
    "v1": "# rendered from {{ config_render_version }} ({{ config_render_commit[:7] }})\n"
          "host: {{ inventory_hostname }}\nworkers: {{ app_workers }}\n",
    "v2": "# rendered from {{ config_render_version }} ({{ config_render_commit[:7] }})\n"
          "host: {{ inventory_hostname }}\nworkers: {{ app_workers * 4 }}\nfeature_x: true\n",
}


@pytest.fixture
def tagged_config(tmp_path: Path) -> dict:
    """A bare config repository with templates/app.yml.j2 at tags v1 and v2; tag -> commit."""
    work, bare = tmp_path / "cfg", tmp_path / "cfg.git"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    commits = {}
    for tag, text in TEMPLATES.items():
        (work / "templates" / "nested").mkdir(parents=True, exist_ok=True)
        (work / "templates" / "app.yml.j2").write_text(text)
        (work / "templates" / "nested" / "limits.conf.j2").write_text(f"# {tag}\nnofile={{{{ 1024 * 2 }}}}\n")
        (work / "README.md").write_text("not a template\n")
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", tag)
        git(work, "tag", "-a", tag, "-m", tag)
        commits[tag] = git(work, "rev-parse", f"{tag}^{{commit}}").stdout.strip()
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return {"repo": str(bare), "commits": commits}


TASK = "gitops.rollback.rollback_config : Render the configuration as of "


def play(repo: str, version: str) -> list:
    return [{"name": "Config from Git", "hosts": "fleet", "gather_facts": False,
             "vars": {"app_workers": 2},
             "tasks": [{"name": "Prepare the nested directory", "ansible.builtin.file":
                        {"path": "/etc/app/nested", "state": "directory", "mode": "0755"}},
                       {"name": "Roll the config", "ansible.builtin.include_role": {
                           "name": "gitops.rollback.rollback_config"},
                        "vars": {"rollback_config_repo": repo, "rollback_config_version": version,
                                 "rollback_config_src": "templates", "rollback_config_dest": "/etc/app"}}]}]


def expected(host: str, version: str, commit: str) -> str:
    workers = "2" if version == "v1" else "8\nfeature_x: true"
    return f"# rendered from {version} ({commit[:7]})\nhost: {host}\nworkers: {workers}\n"


def test_render_as_of_tag_then_check_diff_then_apply_and_an_unknown_tag_changes_nothing(
        clean_fleet, run_playbook, tagged_config: dict) -> None:
    """Four ansible-playbook runs: v1 rendered then rendered again (two plays), v2 in check and diff mode,
    v2 applied then v9 (unknown) refused (two plays)."""
    repo, commits = tagged_config["repo"], tagged_config["commits"]
    again = play(repo, "v1")
    again[0]["name"] = "Config from Git again"
    first = run_playbook(play(repo, "v1") + again)
    assert first.ok, first
    for host in clean_fleet:
        assert host.read_text("/etc/app/app.yml") == expected(host.name, "v1", commits["v1"])
        assert host.read_text("/etc/app/nested/limits.conf") == "# v1\nnofile=2048\n"
        assert not host.local("/etc/app/README.md").exists()
    rendered = [e for e in first.results(TASK + "v1") if e["play"] == "Config from Git"]
    rerun = [e for e in first.results(TASK + "v1") if e["play"] == "Config from Git again"]
    assert len(rendered) == 3 and all(r["changed"] for r in rendered), rendered
    assert len(rerun) == 3 and not any(r["changed"] for r in rerun), rerun

    planned = run_playbook(play(repo, "v2"), check=True, diff=True)
    assert planned.ok, planned
    for host in clean_fleet:
        result = planned.result(TASK + "v2", host.name)
        assert result["changed"] and result["commit"] == commits["v2"]
        changed = {f["path"]: f["changed"] for f in result["files"]}
        assert changed == {"/etc/app/app.yml": True, "/etc/app/nested/limits.conf": True}
        after = "".join(d.get("after", "") for d in result["diff"])
        assert "feature_x: true" in after and "workers: 8" in after
        assert host.read_text("/etc/app/app.yml") == expected(host.name, "v1", commits["v1"])  # unchanged
    assert "+feature_x: true" in planned.stdout  # the diff is printed, headed by the host path
    assert "+++ after: /etc/app/app.yml (app.yml.j2 at v2)" in planned.stdout

    unknown = play(repo, "v9")
    unknown[0]["name"] = "Config from Git at an unknown tag"
    applied = run_playbook(play(repo, "v2") + unknown)
    assert [e for e in applied.results(TASK + "v2") if e["status"] == "ok"] == applied.results(TASK + "v2"), applied
    assert len(applied.results(TASK + "v2")) == 3, applied
    assert not applied.ok  # the unknown tag
    assert "Version 'v9' is not in" in applied.stdout and "tags: v1, v2" in applied.stdout, applied.stdout
    for host in clean_fleet:  # v2 applied, and v9 changed nothing
        assert host.read_text("/etc/app/app.yml") == expected(host.name, "v2", commits["v2"])
