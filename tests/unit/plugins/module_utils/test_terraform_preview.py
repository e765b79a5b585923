"""terraform_state operation=preview: the revert previewed and, with a label outside check mode, the current
state stored as the safety snapshot - from one state pull; nothing stored in check mode or for a refused revert."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.plugins.module_utils.terraform.project import TfSettings
from ansible_collections.gitops.rollback.plugins.module_utils.terraform.rollback import (
    TfContext, list_snapshots, preview, save_snapshot)
from ansible_collections.gitops.rollback.plugins.module_utils.terraform.state import encode_state


def make_state(serial: int, lineage: str = "lin-a", release: str = "v1") -> dict:
    return {"version": 4, "terraform_version": "1.15.5", "serial": serial, "lineage": lineage,
            "outputs": {"release": {"value": release, "type": "string"}},
            "resources": [{"mode": "managed", "type": "terraform_data", "name": "app",
                           "instances": [{"attributes": {"id": "1", "input": release}}]}]}


class FakeProject:
    """A Terraform project whose state pull returns fixed bytes and counts the pulls."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pulls, self.commands, self.backend_type = data, 0, [], "local"

    def __enter__(self) -> "FakeProject":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def init(self) -> None:
        self.commands.append("init")

    def pull(self) -> bytes:
        self.pulls += 1
        return self.data


def context(tmp_path, current: dict, check_mode: bool = False):
    store = Store(str(tmp_path / "store"))
    store.init()
    project = FakeProject(encode_state(current))
    settings = TfSettings.from_params({"project_path": str(tmp_path)})
    ctx = TfContext(store, None, settings, "tester", "default@" + str(tmp_path), 5.0, check_mode)
    ctx.project = lambda config_dir=None: project  # type: ignore[method-assign]
    save_snapshot(ctx, encode_state(make_state(3)), make_state(3), "v1", "v1", None, "local")
    return ctx, project


def labels(ctx) -> list:
    return sorted(s["label"] for s in list_snapshots(ctx.store, None))


def test_a_label_stores_the_pulled_state_after_the_preview(tmp_path):
    ctx, project = context(tmp_path, make_state(7, release="v2"))
    result = preview(ctx, "v1", "safety/run-1", "before rollback", False)
    assert result["changed"] is True and result["revert"]["from_serial"] == 7
    assert result["safety_snapshot"]["label"] == "safety/run-1" and result["safety_snapshot"]["serial"] == 7
    assert result["safety_snapshot"]["changed"] is True and project.pulls == 1
    assert labels(ctx) == ["safety/run-1", "v1"]
    assert preview(ctx, "v1", "safety/run-1", "again", False)["safety_snapshot"]["changed"] is False


def test_check_mode_and_no_label_store_nothing(tmp_path):
    ctx = context(tmp_path, make_state(7, release="v2"), check_mode=True)[0]
    assert "safety_snapshot" not in preview(ctx, "v1", "safety/run-1", None, False)
    ctx.check_mode = False
    assert "safety_snapshot" not in preview(ctx, "v1", None, None, False)
    assert labels(ctx) == ["v1"]


def test_a_refused_revert_stores_nothing(tmp_path):
    ctx = context(tmp_path, make_state(7, lineage="lin-other", release="v2"))[0]
    with pytest.raises(RollbackError):
        preview(ctx, "v1", "safety/run-1", None, False)
    assert labels(ctx) == ["v1"]


def test_a_revert_with_nothing_to_do_says_so_and_still_stores_the_state(tmp_path):
    ctx = context(tmp_path, make_state(5))[0]
    result = preview(ctx, "v1", "safety/run-1", None, False)
    assert result["changed"] is False and result["revert"]["to_serial"] == 5
    assert result["safety_snapshot"]["changed"] is True
