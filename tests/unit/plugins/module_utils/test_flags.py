# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Feature flags in a file: captured into a real store, put back byte for byte, turned off, never through a link."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import CheckpointNotFound
from ansible_collections.gitops.rollback.plugins.module_utils.release.flags import (
    EtcdFlags, FileFlags, FlagsError, FlagsRequest, backend_from, capture, prefix_end, restore, restore_when_unhealthy,
    turn_off)
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

FLAGS = b'{\n  "checkout_v2": true,\n  "banner": "winter"\n}\n'


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "etc" / "shop"
    folder.mkdir(parents=True)
    path = folder / "flags.json"
    path.write_bytes(FLAGS)
    os.chmod(path, 0o640)
    return {"path": path, "store": Store(str(tmp_path / "store"))}


def request(site, **fields):
    return FlagsRequest(FileFlags(str(site["path"])), site["store"], "test", **fields)


def test_the_flags_come_back_byte_for_byte_with_their_mode(site) -> None:
    taken = capture(request(site, checkpoint="v1"))
    assert taken["changed"] and taken["flags"] == {"checkout_v2": True, "banner": "winter"}
    assert not capture(request(site, checkpoint="v1"))["changed"]  # same flags: nothing to record
    site["path"].write_text('{"checkout_v2": false, "new_flag": 1}')
    os.chmod(site["path"], 0o666)
    planned = restore(request(site, checkpoint="v1", check_mode=True))
    assert planned["changed"] and planned["changes"] == {
        "banner": {"before": None, "after": "winter"}, "checkout_v2": {"before": False, "after": True},
        "new_flag": {"before": 1, "after": None}}
    assert json.loads(site["path"].read_text()) == {"checkout_v2": False, "new_flag": 1}  # check mode wrote nothing
    done = restore(request(site, checkpoint="v1"))
    assert done["changed"] and site["path"].read_bytes() == FLAGS
    assert oct(site["path"].stat().st_mode & 0o777) == oct(0o640)
    assert not restore(request(site, checkpoint="v1"))["changed"]
    assert not [name for name in os.listdir(site["path"].parent) if name != "flags.json"]  # no temporary left


def test_turning_flags_off_names_unknown_ones_and_changes_nothing_then(site) -> None:
    with pytest.raises(FlagsError, match=r"No flag named 'checkout_v3' here; the flags are: banner, checkout_v2"):
        turn_off(request(site, names=["checkout_v3"]))
    assert site["path"].read_bytes() == FLAGS
    off = turn_off(request(site, names=["checkout_v2"]))
    assert off["changes"] == {"checkout_v2": {"before": True, "after": False}}
    assert json.loads(site["path"].read_text()) == {"checkout_v2": False, "banner": "winter"}
    assert not turn_off(request(site, names=["checkout_v2"]))["changed"]


def test_a_link_planted_at_the_flags_file_or_its_directory_is_never_followed(site, tmp_path) -> None:
    capture(request(site, checkpoint="v1"))
    outside = tmp_path / "outside.json"
    outside.write_text('{"root_only": true}')
    os.chmod(outside, 0o600)
    site["path"].unlink()
    site["path"].symlink_to(outside)
    with pytest.raises(FlagsError, match="is not a regular file"):
        restore(request(site, checkpoint="v1"))
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    site["path"].unlink()
    os.rmdir(site["path"].parent)
    site["path"].parent.symlink_to(moved)
    with pytest.raises(Exception, match="symlink|Refusing to follow"):
        restore(request(site, checkpoint="v1"))
    assert outside.read_text() == '{"root_only": true}' and oct(outside.stat().st_mode & 0o777) == oct(0o600)
    assert list(moved.iterdir()) == []


def test_a_checkpoint_without_these_flags_is_refused_by_name(site) -> None:
    capture(request(site, checkpoint="v1"))
    other = dict(site, path=site["path"].with_name("other.json"))
    other["path"].write_text("{}")
    with pytest.raises(FlagsError, match=r"holds no flags of file:.*other.json \(it holds flags of: file:.*flags.json\)"):
        restore(request(other, checkpoint="v1"))
    with pytest.raises(CheckpointNotFound):
        restore(request(site, checkpoint="v9"))


def test_a_file_that_is_not_a_mapping_is_refused(site) -> None:
    site["path"].write_text("[1, 2]")
    with pytest.raises(FlagsError, match="must hold a mapping"):
        capture(request(site, checkpoint="v1"))
    site["path"].write_text("{not json")
    with pytest.raises(FlagsError, match="is not valid JSON"):
        capture(request(site, checkpoint="v1"))


def test_yaml_flags_files_are_read_and_turned_off_as_yaml(tmp_path) -> None:
    path = tmp_path / "flags.yml"
    path.write_text("checkout_v2: true\nbanner: winter\n")
    site = {"path": path, "store": Store(str(tmp_path / "store"))}
    turn_off(request(site, names=["checkout_v2"]))
    assert path.read_text() == "checkout_v2: false\nbanner: winter\n"


def test_the_etcd_range_end_covers_exactly_the_prefix() -> None:
    assert prefix_end(b"/flags/shop/") == b"/flags/shop0"
    assert prefix_end(b"a\xff") == b"b"


def test_a_restore_with_a_safety_checkpoint_stores_the_flags_as_they_were_in_the_same_call(site) -> None:
    capture(request(site, checkpoint="v1"))
    bad = b'{"checkout_v2": true, "banner": "broken"}'
    site["path"].write_bytes(bad)
    assert "safety_checkpoint" not in restore(request(site, checkpoint="v1", check_mode=True,
                                                      safety_checkpoint="safety/guard-1"))
    assert site["store"].find_optional("safety/guard-1") is None  # a dry run stores nothing
    done = restore(request(site, checkpoint="v1", safety_checkpoint="safety/guard-1"))
    assert done["safety_checkpoint"]["label"] == "safety/guard-1"
    assert site["path"].read_bytes() == FLAGS
    undone = restore(request(site, checkpoint="safety/guard-1"))  # the change itself can be undone
    assert undone["changed"] and site["path"].read_bytes() == bad
    again = restore(request(site, checkpoint="safety/guard-1", safety_checkpoint="safety/guard-2"))
    assert not again["changed"] and "safety_checkpoint" not in again  # nothing changes: nothing stored
    assert site["store"].find_optional("safety/guard-2") is None


def test_a_flag_set_of_the_inventory_names_its_backend() -> None:
    assert isinstance(backend_from({"path": "/etc/shop/flags.json"}), FileFlags)
    etcd = backend_from({"backend": "etcd", "etcd_endpoints": ["http://127.0.0.1:2379"], "etcd_prefix": "/f/"})
    assert isinstance(etcd, EtcdFlags) and etcd.component_name == "etcd:/f/"
    with pytest.raises(FlagsError, match="backend 'consul' is not a flags backend"):
        backend_from({"backend": "consul"})
    with pytest.raises(FlagsError, match="backend=file needs path"):
        backend_from({})


class _Evaluation:
    def __init__(self, verdict):
        self.verdict = verdict

    def as_dict(self):
        return {"verdict": self.verdict}


@pytest.mark.parametrize("verdict", ["pass", "inconclusive", "error"])
def test_a_gate_that_does_not_fail_leaves_the_flags_alone(site, verdict) -> None:
    capture(request(site, checkpoint="v1"))
    site["path"].write_text('{"checkout_v2": false}')
    done = restore_when_unhealthy(request(site, checkpoint="v1"), lambda: _Evaluation(verdict))
    assert done == {"changed": False, "gate": {"verdict": verdict}, "responded": False}
    assert site["path"].read_text() == '{"checkout_v2": false}'


def test_a_failing_gate_puts_the_flags_back_in_the_same_call(site) -> None:
    capture(request(site, checkpoint="v1"))
    site["path"].write_text('{"checkout_v2": false, "banner": "winter"}')
    done = restore_when_unhealthy(request(site, checkpoint="v1", safety_checkpoint="safety/guard-1"),
                                  lambda: _Evaluation("fail"))
    assert done["responded"] and done["changed"] and done["changes"] == {"checkout_v2": {"before": False, "after": True}}
    assert site["path"].read_bytes() == FLAGS and done["safety_checkpoint"]["label"] == "safety/guard-1"
    off = restore_when_unhealthy(request(site, names=["banner"]), lambda: _Evaluation("fail"))
    assert off["changes"] == {"banner": {"before": "winter", "after": False}}
