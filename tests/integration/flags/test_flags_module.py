"""The feature_flags module as Ansible runs it on a host (``run_task``: the JSON arguments, check and diff
mode, no controller): record, dry run, roll back, turn off. The module has no action plugin; the guard's
flags layer through ansible-playbook: test_guard_flags_first.py."""

from __future__ import annotations

import json
from pathlib import Path


def test_flags_are_checkpointed_rolled_back_and_turned_off(run_task, tmp_path: Path) -> None:
    flags = tmp_path / "flags.json"
    flags.write_text('{"checkout_v2": false, "banner": "winter"}\n')
    common = {"path": str(flags), "store_path": str(tmp_path / "store")}

    def flags_task(args: dict, check: bool = False, diff: bool = False) -> dict:
        _run, result = run_task("gitops.rollback.feature_flags", args, check=check, diff=diff)
        assert result["status"] == "ok", result
        return result

    flags_task(dict(common, state="checkpointed", checkpoint="v1"))
    flags.write_text('{"checkout_v2": true, "banner": "winter"}\n')
    planned = flags_task(dict(common, checkpoint="v1"), check=True, diff=True)
    assert planned["changed"] and planned["changes"] == {"checkout_v2": {"before": True, "after": False}}
    assert json.loads(flags.read_text())["checkout_v2"] is True  # a dry run is dry
    assert flags_task(dict(common, checkpoint="v1"))["changed"]
    assert not flags_task(dict(common, checkpoint="v1"))["changed"]
    flags_task(dict(common, state="off", names=["banner"]))
    assert json.loads(flags.read_text()) == {"checkout_v2": False, "banner": False}
