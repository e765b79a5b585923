"""The command as users install it: pip-installed from an installed collection, finding it as Ansible does."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

from gitops_support import InstalledCli


def test_help_needs_no_collection(installed_cli: InstalledCli, tmp_path: Path) -> None:
    for args in (["--help"], ["trigger", "--help"], ["report", "--help"], ["--version"]):
        result = installed_cli.run(args, tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stdout.startswith(("usage:", "gitops-rollback")), args


def test_a_missing_collection_says_what_to_set(installed_cli: InstalledCli, tmp_path: Path) -> None:
    result = installed_cli.run(["trigger", "--decide-only", "v1"], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    message = result.stderr
    assert "gitops.rollback collection was not found" in message, message
    assert "ANSIBLE_COLLECTIONS_PATH" in message and "collections_path" in message and "ansible.cfg" in message
    assert str(installed_cli.home / ".ansible" / "collections") in message  # where Ansible itself looked


def test_the_collection_is_found_where_ansible_finds_it(installed_cli: InstalledCli, tmp_path: Path) -> None:
    """ANSIBLE_COLLECTIONS_PATH, ansible.cfg in the working directory, ANSIBLE_CONFIG."""
    by_env = installed_cli.run(["trigger", "--decide-only", "v1"], tmp_path,
                               ANSIBLE_COLLECTIONS_PATH=str(installed_cli.collections))
    assert by_env.returncode == 0 and "would checkpoint: release tag v1" in by_env.stderr, by_env.stderr
    project = tmp_path / "project"
    project.mkdir()
    (project / "ansible.cfg").write_text(f"[defaults]\ncollections_path = {installed_cli.collections}\n")
    by_cfg = installed_cli.run(["trigger", "--decide-only", "v1"], project)
    assert by_cfg.returncode == 0 and "would checkpoint: release tag v1" in by_cfg.stderr, by_cfg.stderr
    by_config = installed_cli.run(["trigger", "--decide-only", "rollback/v1"], tmp_path,
                                  ANSIBLE_CONFIG=str(project / "ansible.cfg"))
    assert by_config.returncode == 0 and "would rollback" in by_config.stderr, by_config.stderr


def test_report_runs_from_the_installed_collection(installed_cli: InstalledCli, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    records = [{"time": "2026-01-01T00:00:00Z", "epoch": 1767225600.0, "event": "started", "operation": "rollback",
                "run_id": "r1", "target": "v1"},
               {"time": "2026-01-01T00:00:09Z", "epoch": 1767225609.0, "event": "completed", "operation": "rollback",
                "run_id": "r1", "target": "v1"}]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    prom = tmp_path / "out.prom"
    result = installed_cli.run(["report", "--log", str(log), "--prom", str(prom), "--json"], tmp_path,
                               ANSIBLE_COLLECTIONS_PATH=str(installed_cli.collections))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["rollbacks"]["success"] == 1
    assert "gitops_rollback_rollbacks_total" in prom.read_text()
    missing = installed_cli.run(["report", "--log", str(tmp_path / "none.jsonl")], tmp_path,
                                ANSIBLE_COLLECTIONS_PATH=str(installed_cli.collections))
    assert missing.returncode == 1 and "does not exist" in missing.stderr, missing.stderr


def test_help_defaults_are_the_collections() -> None:
    """--help shows the tag patterns without loading the collection; they must be _tags.py's."""
    from gitops_rollback import cli, tags  # pylint: disable=import-outside-toplevel

    assert tuple(cli.HELP_RELEASE_PATTERNS) == tuple(tags.DEFAULT_RELEASE_PATTERNS)
    assert cli.HELP_ROLLBACK_PATTERN == tags.DEFAULT_ROLLBACK_PATTERN


def test_a_run_that_cannot_start_says_why_and_is_audited(installed_cli: InstalledCli, tmp_path: Path) -> None:
    """The command installed without ansible-core's commands: the run fails naming what to install, and the
    failure is in the audit log (nothing ran, so only the command can record it)."""
    bare = tmp_path / "bare-venv"  # the installed command's packages, but no ansible-playbook beside its python
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    purelib = Path(sysconfig.get_paths(vars={"base": str(bare), "platbase": str(bare)})["purelib"])
    installed = Path(sysconfig.get_paths(vars={"base": str(installed_cli.venv),
                                               "platbase": str(installed_cli.venv)})["purelib"])
    (purelib / "cli.pth").write_text(f"{installed}\n{sysconfig.get_paths()['purelib']}\n")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    web1:\n")
    log = tmp_path / "audit.jsonl"
    result = subprocess.run([str(bare / "bin" / "python"), "-m", "gitops_rollback", "trigger", "v1", "-i", str(inventory),
                             "--state", str(tmp_path / "state.json"), "--audit-log", str(log)],
                            cwd=tmp_path, env=installed_cli.env(ANSIBLE_COLLECTIONS_PATH=str(installed_cli.collections)),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stderr
    assert "checkpoint v1: could not run: ansible-playbook is neither beside" in result.stderr, result.stderr
    assert "pip install ansible-core" in result.stderr
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (record["event"], record["operation"], record["tag"], record["status"]) == ("failed", "trigger", "v1", "error")
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["tags"]["v1"]["status"] == "error"
