"""Checking a verification tag before a change (terraform/worktree.py): the tag, and the configuration at it."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.terraform.worktree import GitError, check_tag


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "main.tf").write_text("# v1\n")
    (tmp_path / "notes").write_text("a file, not the configuration's directory\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "v1")
    git(tmp_path, "tag", "v1")
    return tmp_path


def test_a_tag_holding_the_configuration_passes_and_names_its_commit(repo):
    assert len(check_tag(str(repo / "infra"), None, "v1")) == 40


def test_a_missing_tag_names_the_tags_there_are(repo):
    with pytest.raises(GitError, match=r"Tag 'previous' is not in .* \(have: v1\)"):
        check_tag(str(repo / "infra"), None, "previous")


def test_a_tag_without_the_configurations_directory_is_refused(repo):
    (repo / "later").mkdir()
    for path in ("later", "notes"):
        with pytest.raises(GitError, match="Tag 'v1' of .* has no directory %s" % path):
            check_tag(str(repo / path), None, "v1")
