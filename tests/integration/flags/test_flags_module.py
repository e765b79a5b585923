"""The feature_flags module through ansible-playbook: record, dry run, roll back, turn off."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def test_flags_are_checkpointed_rolled_back_and_turned_off(run_playbook, tmp_path: Path) -> None:
    flags = tmp_path / "flags.json"
    flags.write_text('{"checkout_v2": false, "banner": "winter"}\n')
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"app1": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    common = {"path": str(flags), "store_path": str(tmp_path / "store")}

    def play(*tasks):
        return [{"hosts": "app1", "gather_facts": False, "tasks": list(tasks)}]

    taken = run_playbook(play({"gitops.rollback.feature_flags": dict(common, state="checkpointed", checkpoint="v1")}),
                         inventory=inventory)
    assert taken.ok, taken
    flags.write_text('{"checkout_v2": true, "banner": "winter"}\n')
    planned = run_playbook(play({"name": "Flags", "gitops.rollback.feature_flags": dict(common, checkpoint="v1")}),
                           inventory=inventory, check=True, diff=True)
    assert planned.ok, planned
    result = planned.result("Flags", "app1")
    assert result["changed"] and result["changes"] == {"checkout_v2": {"before": True, "after": False}}
    assert json.loads(flags.read_text())["checkout_v2"] is True  # a dry run is dry
    turn_off = dict(common, state="off", names=["banner"])
    done = run_playbook(play({"name": "Flags", "gitops.rollback.feature_flags": dict(common, checkpoint="v1")},
                             {"name": "Again", "gitops.rollback.feature_flags": dict(common, checkpoint="v1")},
                             {"name": "Off", "gitops.rollback.feature_flags": turn_off}),
                        inventory=inventory)
    assert done.ok, done
    assert done.result("Flags", "app1")["changed"] and not done.result("Again", "app1")["changed"]
    assert json.loads(flags.read_text()) == {"checkout_v2": False, "banner": False}
