# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Templates from Git at a tag (controller/git_templates.py), on real repositories made with the git command."""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.controller.git_templates import (
    GitConfigError, checkout_at, destination, templates_in,
)


def git(repo, *args, stdin=None) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@x")
    return subprocess.run(["git", "-C", str(repo), *args], input=stdin, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(name="repo")
def repo_with_two_tags(tmp_path):
    repo = tmp_path / "config"
    git(tmp_path, "init", "-q", str(repo))
    (repo / "etc").mkdir()
    (repo / "etc" / "app.conf.j2").write_text("port={{ port }}\n")
    (repo / "etc" / "run.sh.j2").write_text("#!/bin/sh\n")
    os.chmod(repo / "etc" / "run.sh.j2", 0o755)
    os.symlink("/etc/shadow", repo / "etc" / "leak.j2")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    git(repo, "tag", "v1.0.0")
    (repo / "etc" / "app.conf.j2").write_text("port={{ port }}\nworkers=4\n")
    git(repo, "commit", "-qam", "v2")
    git(repo, "tag", "v2.0.0")
    return repo


def test_the_tree_of_a_tag_is_written_without_touching_the_repository(repo):
    before = git(repo, "status", "--porcelain"), sorted(os.listdir(repo / ".git"))
    with checkout_at(str(repo), "v1.0.0", "etc") as (folder, sha):
        assert sha == git(repo, "rev-parse", "v1.0.0^{commit}")
        assert (open(os.path.join(folder, "app.conf.j2")).read()) == "port={{ port }}\n"
        assert os.stat(os.path.join(folder, "run.sh.j2")).st_mode & 0o777 == 0o755
        assert not os.path.lexists(os.path.join(folder, "leak.j2")), "a symlink in the repository was written"
        assert templates_in(folder, ".j2") == ["app.conf.j2", "run.sh.j2"]
    assert not os.path.exists(folder), "the temporary tree was left behind"
    assert (git(repo, "status", "--porcelain"), sorted(os.listdir(repo / ".git"))) == before


def test_an_unknown_version_names_the_tags_there_are(repo):
    with pytest.raises(GitConfigError, match=r"'v9' is not in .*tags: v1.0.0, v2.0.0"):
        with checkout_at(str(repo), "v9"):
            pass


def test_a_missing_directory_and_a_missing_repository_are_named(repo, tmp_path):
    with pytest.raises(GitConfigError, match="has no directory 'nginx'"):
        with checkout_at(str(repo), "v1.0.0", "nginx"):
            pass
    with pytest.raises(GitConfigError, match="is not a Git repository"):
        with checkout_at(str(tmp_path / "nowhere"), "v1.0.0"):
            pass


def test_a_crafted_tree_that_climbs_out_is_refused_and_writes_nothing(repo):
    """A pushed tag whose tree has an entry named '..' (git mktree accepts it; fsck does not)."""
    blob = git(repo, "hash-object", "-w", "--stdin", stdin="owned\n")
    inner = git(repo, "mktree", stdin="100644 blob %s\tplanted.txt\n" % blob)
    tree = git(repo, "mktree", stdin="040000 tree %s\t..\n100644 blob %s\tok.j2\n" % (inner, blob))
    git(repo, "tag", "evil", git(repo, "commit-tree", tree, "-m", "evil"))
    with pytest.raises(GitConfigError, match=r"The tree of evil holds .*not a safe path"):
        with checkout_at(str(repo), "evil"):
            pass
    assert not os.path.exists(os.path.join(tempfile.gettempdir(), "planted.txt"))


def test_the_destination_drops_the_suffix():
    assert destination("etc/app.conf.j2", ".j2") == "etc/app.conf"
    assert destination("etc/app.conf", ".j2") == "etc/app.conf"
