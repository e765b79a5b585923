"""molecule scenarios of the layer roles (molecule/<role>/ holds each role's prepare, converge and verify; layer_roles
runs the four in one scenario): converge, idempotence and verify on localhost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.collection import callback_env

REPO_ROOT = Path(__file__).resolve().parents[3]
SCENARIOS = sorted(p.parent.name for p in (REPO_ROOT / "molecule").glob("*/molecule.yml"))

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # runs ansible-playbook (CLI, ansible-runner, molecule)


def converged_roles(scenario: str) -> set:
    """The layer roles a scenario's converge runs: its own role, or the roles whose playbooks it imports."""
    converge = yaml.safe_load((REPO_ROOT / "molecule" / scenario / "converge.yml").read_text())
    imported = {Path(play["ansible.builtin.import_playbook"]).parent.name for play in converge
                if "ansible.builtin.import_playbook" in play}
    return imported or {scenario}


def test_every_layer_role_has_a_scenario() -> None:
    """Every layer role is converged (and, but rollback_database, checked idempotent) and verified by a scenario."""
    roles = set().union(*(converged_roles(s) for s in SCENARIOS))
    assert {"checkpoint", "rollback_host", "rollback_release", "rollback_database"} <= roles, (SCENARIOS, roles)
    for scenario in SCENARIOS:
        verify = (REPO_ROOT / "molecule" / scenario / "verify.yml").read_text()
        assert all(f"../{role}/verify.yml" in verify for role in converged_roles(scenario) - {scenario}), scenario
        converge = yaml.safe_load((REPO_ROOT / "molecule" / scenario / "converge.yml").read_text())
        left_out = {Path(play["ansible.builtin.import_playbook"]).parent.name for play in converge
                    if "molecule-idempotence-notest" in play.get("tags", [])}
        assert left_out <= {"rollback_database"}, ("only rollback_database is left out of idempotence", left_out)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario: str, tmp_path: Path, collections_path: Path) -> None:
    """``molecule test`` of a scenario; its ephemeral directory (the roles' work directories) is the test's own,
    and the harness's callback imports the collection's plugins once per run before Ansible forks (as for the
    harness's own runs): the same playbooks, less controller CPU."""
    bin_dir = Path(sys.executable).parent
    molecule = shutil.which("molecule", path=str(bin_dir)) or shutil.which("molecule")
    if not molecule:
        pytest.fail("molecule is not installed (it belongs in the dev extra of pyproject.toml)", pytrace=False)
    if not os.environ.get("ANSIBLE_COLLECTIONS_PATH"):
        pytest.fail("ANSIBLE_COLLECTIONS_PATH must name a directory holding this collection (./dev.sh e2e sets it)",
                    pytrace=False)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "ephemeral"),
           # pipelining, as for the harness's own runs: a module run on localhost is one process, not a shell
           # for the home directory, the temporary directory, chmod, the run and the clean-up
           "ANSIBLE_PIPELINING": "True",
           **callback_env(collections_path)}
    proc = subprocess.run([molecule, "test", "-s", scenario], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    sequence = yaml.safe_load((REPO_ROOT / "molecule" / scenario / "molecule.yml").read_text())["scenario"]["test_sequence"]
    for step in ("converge", "idempotence", "verify"):
        if step in sequence:
            assert f"{scenario} > {step}: Executed: Successful" in output, output[-6000:]
