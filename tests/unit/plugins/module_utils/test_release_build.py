# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Building a release: relative shared paths only, a content digest, shared paths linked in, leftovers."""

from __future__ import annotations

import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.fsutil import temp_name
from ansible_collections.gitops.rollback.plugins.module_utils.release.build import (
    check_relative, leftovers, link_shared, tree_digest,
)
from ansible_collections.gitops.rollback.plugins.module_utils.common import nofollow
from ansible_collections.gitops.rollback.plugins.module_utils.release.root import ReleaseError, ReleaseRoot


@pytest.mark.parametrize("path", ["/etc/app.yml", "..", "../x", "a/../../x", "."])
def test_shared_paths_must_stay_inside_the_release(path):
    with pytest.raises(ReleaseError, match="relative path"):
        check_relative(path, "shared")


def test_digest_changes_with_content_mode_and_links_but_not_with_git(tmp_path):
    tree = tmp_path / "build"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "run").write_text("v1")
    first = tree_digest(str(tree))
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD").write_text("ref")
    assert tree_digest(str(tree)) == first
    (tree / "bin" / "run").chmod(0o755)
    moded = tree_digest(str(tree))
    assert moded != first
    os.symlink("bin/run", str(tree / "run"))
    assert tree_digest(str(tree)) != moded


def test_digest_reads_no_file_swapped_for_a_link_after_it_was_listed(tmp_path, monkeypatch):
    """A source file replaced by a link to a root-only file between listing and reading is digested as
    the link it now is; the file it points at is never read."""
    secret = tmp_path / "secret"
    secret.write_text("root only")
    tree = tmp_path / "build"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "run").write_text("v1")

    swapped = []

    def swap(point, where):
        if point == "walk.listed" and where["rel"] == "bin/run":
            os.unlink(str(tree / "bin" / "run"))
            os.symlink(str(secret), str(tree / "bin" / "run"))
            swapped.append(where["rel"])

    monkeypatch.setattr(nofollow, "race_hook", swap)
    raced = tree_digest(str(tree))
    monkeypatch.setattr(nofollow, "race_hook", None)
    assert swapped == ["bin/run"]  # listed, then swapped before it was read
    assert raced == tree_digest(str(tree))  # the link, as a link
    os.unlink(str(tree / "bin" / "run"))
    (tree / "bin" / "run").write_text("root only")
    assert raced != tree_digest(str(tree))


def test_the_first_release_seeds_shared_paths_and_later_ones_link_them(tmp_path):
    root = ReleaseRoot.open(str(tmp_path / "app"))
    for rid, text in (("r1", "first"), ("r2", "second")):
        directory = root.release_dir(rid)
        os.makedirs(os.path.join(directory, "config"))
        with open(os.path.join(directory, "config", "app.yml"), "w") as handle:
            handle.write(text)
        link_shared(root, directory, ["config/app.yml", "log"])
        with open(os.path.join(directory, "config", "app.yml")) as handle:
            assert handle.read() == "first"
        assert os.path.islink(os.path.join(directory, "log")) and os.path.isdir(root.join("shared", "log"))


def test_leftovers_are_the_temporary_release_directories(tmp_path):
    root = ReleaseRoot.open(str(tmp_path / "app"))
    os.makedirs(root.release_dir("r1"))
    unfinished = temp_name(root.release_dir("r2"))
    os.makedirs(unfinished)
    assert leftovers(root) == [unfinished]
