# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files the engine keeps beside what it manages follow no planted link, and directories it keeps for itself
are refused when another user could plant one there.

Each test plants a symlink where the application user could (a release's shared directory, the
database's directory, a store or repository that user can write) and checks that root neither read
nor wrote what the link names: the directory outside stays byte- and mode-identical.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import UnsafePathError
from ansible_collections.gitops.rollback.plugins.module_utils.common.nofollow import (
    private_dir_problem, read_file, write_file,
)
from ansible_collections.gitops.rollback.plugins.module_utils.db.sqlite import SqliteEngine
from ansible_collections.gitops.rollback.plugins.module_utils.release.build import link_shared
from ansible_collections.gitops.rollback.plugins.module_utils.release.root import ReleaseRoot
from ansible_collections.gitops.rollback.plugins.module_utils.replication import receiver as _receiver
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.plugins.module_utils.terraform.project import read_marker
from ansible_collections.gitops.rollback.tests.unit.plugins.module_utils.test_nofollow import outside_state

APP_UID = 65534  # the application user: anyone but root
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to another user)")


@pytest.fixture
def outside(tmp_path):
    top = tmp_path / "outside"
    top.mkdir()
    (top / "app.yml").write_text("root's own file\n")
    os.chmod(str(top / "app.yml"), 0o600)
    return top


# ------------------------------------------------------------------------------------- releases
def test_a_shared_directory_linked_outside_is_refused_not_written_through(tmp_path, outside):
    root = ReleaseRoot.open(str(tmp_path / "app"))
    os.makedirs(root.join("shared"))
    os.symlink(str(outside), root.join("shared", "config"))  # planted by the application user
    release = root.release_dir("r1")
    os.makedirs(os.path.join(release, "config"))
    (tmp_path / "app" / "releases" / "r1" / "config" / "app.yml").write_text("release's file\n")
    before = outside_state(outside)
    with pytest.raises(UnsafePathError, match="symlink"):
        link_shared(root, release, ["config/app.yml"])
    assert outside_state(outside) == before


def test_a_link_in_a_release_s_content_does_not_move_files_from_outside(tmp_path, outside):
    root = ReleaseRoot.open(str(tmp_path / "app"))
    release = root.release_dir("r1")
    os.makedirs(release)
    os.symlink(str(outside), os.path.join(release, "config"))  # the repository's content links out
    before = outside_state(outside)
    with pytest.raises(UnsafePathError, match="symlink"):
        link_shared(root, release, ["config/app.yml"])
    assert outside_state(outside) == before
    assert not os.path.lexists(root.join("shared", "config", "app.yml"))


def test_an_index_linked_to_another_file_is_not_read(tmp_path, outside):
    (outside / "releases.json").write_text(json.dumps({"format_version": 1, "releases": [], "history": []}))
    (tmp_path / "app").mkdir()
    os.symlink(str(outside / "releases.json"), str(tmp_path / "app" / "releases.json"))
    with pytest.raises(UnsafePathError, match="not a regular file"):
        ReleaseRoot.open(str(tmp_path / "app"))


def test_current_is_switched_by_a_new_link_even_below_a_planted_one(tmp_path, outside):
    root = ReleaseRoot.open(str(tmp_path / "app"))
    os.makedirs(root.release_dir("r1"))
    os.symlink(str(outside / "app.yml"), root.join("current"))
    before = outside_state(outside)
    root.switch("r1")
    assert os.readlink(root.join("current")) == "releases/r1" and root.current_id() == "r1"
    assert outside_state(outside) == before


# --------------------------------------------------------------------------------------- SQLite
def _database(path):
    with sqlite3.connect(str(path)) as conn:
        conn.execute("CREATE TABLE secret (value TEXT)")
        conn.execute("INSERT INTO secret VALUES ('root only')")
    os.chmod(str(path), 0o600)


def test_a_database_path_linked_to_another_database_is_not_backed_up(tmp_path, outside):
    _database(outside / "root.db")
    (tmp_path / "data").mkdir()
    os.symlink(str(outside / "root.db"), str(tmp_path / "data" / "app.db"))
    store = Store(str(tmp_path / "store"))
    store.init()
    before = outside_state(outside)
    with pytest.raises(UnsafePathError, match="symlink"):
        SqliteEngine(None).dump(store, str(tmp_path / "data" / "app.db"), "sqlite", 1)
    assert outside_state(outside) == before
    assert not os.listdir(store.path("objects"))


def test_a_database_directory_swapped_for_a_link_gets_no_restored_file(tmp_path, outside):
    _database(tmp_path / "staged.db")
    os.symlink(str(outside), str(tmp_path / "data"))  # the directory of the live file is now a link
    before = outside_state(outside)
    with pytest.raises(UnsafePathError):
        SqliteEngine(None).swap(str(tmp_path / "data" / "app.db"), str(tmp_path / "data" / "app.db__staged"), None)
    assert outside_state(outside) == before


# ------------------------------------------------------------------------------------ Terraform
def test_an_init_marker_linked_elsewhere_is_not_believed(tmp_path, outside):
    (outside / "marker.json").write_text(json.dumps({"fingerprint": "planted"}))
    (tmp_path / ".terraform").mkdir()
    os.symlink(str(outside / "marker.json"), str(tmp_path / ".terraform" / "gitops-rollback-init.json"))
    assert read_marker(str(tmp_path / ".terraform" / "gitops-rollback-init.json")) is None


def test_files_written_by_path_follow_no_linked_directory(tmp_path, outside):
    os.symlink(str(outside), str(tmp_path / ".terraform"))
    before = outside_state(outside)
    with pytest.raises(UnsafePathError):
        write_file(str(tmp_path / ".terraform" / "marker.json"), b"{}", 0o600, create_dirs=True)
    with pytest.raises(UnsafePathError):
        read_file(str(tmp_path / ".terraform" / "app.yml"), 1024)
    assert outside_state(outside) == before


# -------------------------------------------------------------------- stores and repositories
@AS_ROOT
def test_a_store_in_a_directory_the_application_user_owns_is_refused(tmp_path, outside):
    app = tmp_path / "app"
    (app / "store" / "objects").mkdir(parents=True)
    os.chown(str(app), APP_UID, APP_UID)
    os.symlink(str(outside), str(app / "store" / "tmp"))  # planted while the store was the user's to write
    before = outside_state(outside)
    with pytest.raises(UnsafePathError, match="belongs to uid %d" % APP_UID):
        Store(str(app / "store")).init()
    assert outside_state(outside) == before


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_store_others_can_write_is_refused(tmp_path, mode):
    (tmp_path / "store").mkdir()
    os.chmod(str(tmp_path / "store"), mode)
    with pytest.raises(UnsafePathError, match="writable by"):
        Store(str(tmp_path / "store")).init()


def test_a_store_below_a_directory_everyone_writes_without_sticky_bit_is_refused(tmp_path):
    os.chmod(str(tmp_path), 0o777)
    try:
        problem = private_dir_problem(str(tmp_path / "store"))
    finally:
        os.chmod(str(tmp_path), 0o700)
    assert problem and "writable by every user" in problem


def test_a_store_below_a_sticky_directory_is_accepted(tmp_path):
    os.chmod(str(tmp_path), 0o1777)
    try:
        Store(str(tmp_path / "store")).init()
    finally:
        os.chmod(str(tmp_path), 0o700)
    assert os.stat(str(tmp_path / "store")).st_mode & 0o777 == 0o700


@AS_ROOT
def test_a_repository_another_user_can_change_is_refused(tmp_path, outside):
    repo = tmp_path / "repo"
    repo.mkdir()
    os.chown(str(repo), APP_UID, APP_UID)
    os.symlink(str(outside), str(repo / "tmp"))
    before = outside_state(outside)
    out = io.BytesIO()
    request = {"op": "hello", "root": str(repo), "host": "web1", "create": True}
    _receiver.Receiver(io.BytesIO(json.dumps(request).encode() + b"\n"), out).serve()
    reply = json.loads(out.getvalue().splitlines()[0])
    assert reply["ok"] is False and "belongs to uid %d" % APP_UID in reply["error"]
    assert outside_state(outside) == before and sorted(os.listdir(str(repo))) == ["tmp"]
