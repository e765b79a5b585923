# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release engine: deploy, reuse, roll back, marks, prune plan, checkpoint component, bad input."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.release import operations as release
from ansible_collections.gitops.rollback.plugins.module_utils.release.build import ls_remote_argv
from ansible_collections.gitops.rollback.plugins.module_utils.release.root import INDEX, INDEX_FORMAT, ReleaseError, ReleaseRoot, current_release
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "app")


@pytest.fixture
def builds(tmp_path):
    made = {}
    for version in ("v1", "v2", "v3", "v4"):
        build = tmp_path / "builds" / version
        (build / "config").mkdir(parents=True)
        (build / "VERSION").write_text(version)
        (build / "config" / "app.yml").write_text("seeded by %s\n" % version)
        made[version] = str(build)
    return made


def params(root, **fields):
    return release.ReleaseParams(root=root, owner="tester", **fields)


def deploy(root, builds, *versions, **fields):
    for version in versions:
        release.apply("present", params(root, src=builds[version], label=version, shared=["log", "config/app.yml"],
                                        **fields))


def live(root):
    with open(os.path.join(root, "current", "VERSION")) as handle:
        return handle.read()


def labels(root):
    return {rel["label"]: rel for rel in ReleaseRoot.open(root).releases}


def test_deploy_links_shared_paths_and_switches_current(root, builds):
    deploy(root, builds, "v1", "v2")

    assert live(root) == "v2"
    assert os.readlink(os.path.join(root, "current")) == os.path.join("releases", labels(root)["v2"]["id"])
    assert os.readlink(os.path.join(root, "current", "config", "app.yml")) == "../../../shared/config/app.yml"
    with open(os.path.join(root, "shared", "config", "app.yml")) as handle:
        assert handle.read() == "seeded by v1\n", "the first release seeds a missing shared file"
    assert os.path.isdir(os.path.join(root, "shared", "log"))


def test_same_label_and_content_is_not_deployed_twice(root, builds):
    deploy(root, builds, "v1")
    again = release.apply("present", params(root, src=builds["v1"], label="v1"))

    assert not again["changed"] and not again["created"]
    assert len(labels(root)) == 1


def test_same_label_with_other_content_is_refused(root, builds):
    deploy(root, builds, "v1")
    with pytest.raises(ReleaseError, match="holds other content"):
        release.apply("present", params(root, src=builds["v2"], label="v1"))


def test_activate_false_stages_without_switching(root, builds):
    deploy(root, builds, "v1")
    staged = release.apply("present", params(root, src=builds["v2"], label="v2", activate=False))

    assert staged["changed"] and staged["staged"] == labels(root)["v2"]["id"]
    assert live(root) == "v1"


def test_rollback_marks_bad_and_skips_bad_releases_next_time(root, builds):
    deploy(root, builds, "v1", "v2", "v3")

    first = release.apply("rolled_back", params(root, reason="5xx"))
    second = release.apply("rolled_back", params(root))

    assert first["release"]["label"] == "v2" and second["release"]["label"] == "v1"
    assert labels(root)["v3"]["marks"] == ["bad"] and labels(root)["v3"]["reason"] == "5xx"
    assert live(root) == "v1"
    with pytest.raises(ReleaseError, match="no release before"):
        release.apply("rolled_back", params(root))


def test_rollback_to_current_changes_nothing(root, builds):
    deploy(root, builds, "v1", "v2")
    with open(os.path.join(root, INDEX), "rb") as handle:
        before = handle.read()

    result = release.apply("rolled_back", params(root, to="v2"))

    assert not result["changed"]
    with open(os.path.join(root, INDEX), "rb") as handle:
        assert handle.read() == before


def test_rollback_without_keep_bad_removes_the_abandoned_release(root, builds):
    deploy(root, builds, "v1", "v2")
    v2 = labels(root)["v2"]["id"]

    result = release.apply("rolled_back", params(root, keep_bad=False))

    assert result["removed"] == [v2] and "v2" not in labels(root)
    assert not os.path.exists(os.path.join(root, "releases", v2))


def test_check_mode_plans_and_changes_nothing(root, builds):
    deploy(root, builds, "v1", "v2")
    snapshot = sorted(os.listdir(os.path.join(root, "releases"))), os.readlink(os.path.join(root, "current"))

    plan = release.apply("rolled_back", params(root, check_mode=True, diff=True))
    new = release.apply("present", params(root, src=builds["v3"], label="v3", check_mode=True))

    assert plan["changed"] and plan["release"]["label"] == "v1"
    assert plan["diff"]["before"].endswith("(v2)\n") and plan["diff"]["after"].endswith("(v1)\n")
    assert new["changed"] and new["release"]["state"] == "new"
    assert (sorted(os.listdir(os.path.join(root, "releases"))), os.readlink(os.path.join(root, "current"))) == snapshot
    assert labels(root)["v2"]["marks"] == []


def test_unknown_release_lists_the_available_ones(root, builds):
    deploy(root, builds, "v1", "v2")
    with pytest.raises(ReleaseError) as caught:
        release.apply("rolled_back", params(root, to="v9"))
    assert "'v9' is not in" in str(caught.value) and "v2 (" in str(caught.value) and "v1 (" in str(caught.value)
    assert caught.value.details["labels"] == ["v1", "v2"]


def test_current_that_is_a_directory_is_refused(root, builds):
    os.makedirs(os.path.join(root, "current"))
    with pytest.raises(ReleaseError, match="not a symlink"):
        deploy(root, builds, "v1")


def test_missing_release_directory_is_refused(root, builds):
    deploy(root, builds, "v1", "v2")
    os.rename(os.path.join(root, "releases", labels(root)["v1"]["id"]), os.path.join(root, "elsewhere"))
    with pytest.raises(ReleaseError, match="is missing"):
        release.apply("rolled_back", params(root))
    assert live(root) == "v2"


def test_prune_plan_protects_current_good_and_bad(root, builds):
    deploy(root, builds, "v1")
    release.apply("good", params(root))
    deploy(root, builds, "v2", "v3", "v4")
    release.apply("rolled_back", params(root))  # v4 bad, v3 current
    tree = ReleaseRoot.open(root)

    doomed = release.prune_plan(tree, tree.current_id(), keep=1, prune_bad=False)
    with_bad = release.prune_plan(tree, tree.current_id(), keep=1, prune_bad=True)

    assert [rel["label"] for rel in doomed] == ["v2"]
    assert [rel["label"] for rel in with_bad] == ["v2"], "v4 is the newest, kept by keep=1"


def test_prune_removes_interrupted_deploys(root, builds):
    deploy(root, builds, "v1")
    leftover = os.path.join(root, "releases", ".x.grtmp-abcd")
    os.makedirs(leftover)

    result = release.apply("pruned", params(root, keep=5))

    assert result["changed"] and result["leftovers_removed"] == [leftover]
    assert not os.path.exists(leftover)


def test_relative_shared_paths_only(root, builds):
    for bad in ("/etc/passwd", "../escape", "."):
        with pytest.raises(ReleaseError, match="relative path"):
            release.apply("present", params(root, src=builds["v1"], shared=[bad]))


def test_recorded_component_attaches_to_checkpoint_and_drives_rollback(root, builds, tmp_path):
    store_path = str(tmp_path / "store")
    deploy(root, builds, "v1")
    recorded = release.apply("recorded", params(root, checkpoint="pre-v2", store_path=store_path))
    again = release.apply("recorded", params(root, checkpoint="pre-v2", store_path=store_path))
    deploy(root, builds, "v2")

    back = release.apply("rolled_back", params(root, checkpoint="pre-v2", store_path=store_path))

    assert recorded["changed"] and not again["changed"]
    manifest = Store(store_path).find("pre-v2")
    assert manifest["components"] == [recorded["component"]]
    assert recorded["component"]["release"] == labels(root)["v1"]["id"]
    assert back["release"]["label"] == "v1" and live(root) == "v1"


def test_current_release_for_the_orchestrator(root, builds):
    assert current_release(root) is None
    deploy(root, builds, "v1")

    current = current_release(root)

    assert current["label"] == "v1" and current["state"] == "active" and current["path"].startswith(root)
    with open(os.path.join(root, INDEX)) as handle:
        assert json.load(handle)["format_version"] == INDEX_FORMAT


def test_git_deploy_runs_argument_lists_and_records_the_tag_commit(root, tmp_path):
    repo = tmp_path / "repo"
    env = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True,
                              text=True).stdout.strip()

    repo.mkdir()
    git("init", "-q", "-b", "main")
    (repo / "VERSION").write_text("v1")
    git("add", "VERSION")
    git("commit", "-qm", "v1")
    git("tag", "-a", "v1", "-m", "v1")
    commit = git("rev-parse", "HEAD")

    result = release.apply("present", params(root, repo=str(repo), version="v1"))

    assert result["release"]["label"] == "v1" and result["release"]["commit"] == commit
    assert result["commands"][0] == ls_remote_argv(str(repo), "v1")
    assert all(isinstance(argv, list) for argv in result["commands"])
    assert live(root) == "v1" and not os.path.exists(os.path.join(root, "current", ".git"))
    assert not release.apply("present", params(root, repo=str(repo), version="v1"))["changed"]


def test_rollback_reads_current_back_and_refuses_when_it_moved(root, builds, monkeypatch):
    deploy(root, builds, "v1", "v2")
    assert release.apply("rolled_back", params(root))["verified"] is True
    deploy(root, builds, "v3")
    real_switch = ReleaseRoot.switch

    def switch_then_lose_a_race(self, release_id):
        real_switch(self, release_id)
        real_switch(self, labels(root)["v3"]["id"])  # another deploy switched right after us

    monkeypatch.setattr(ReleaseRoot, "switch", switch_then_lose_a_race)
    with pytest.raises(ReleaseError, match="After the switch, current .* points to"):
        release.apply("rolled_back", params(root, to="v1"))
