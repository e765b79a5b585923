"""Extra vars as the command hands them to ansible-playbook (gitops_rollback/runner.py): data stays data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gitops_rollback.runner import unsafe_yaml


def test_extra_vars_reach_ansible_as_the_same_data_empty_strings_included(tmp_path: Path) -> None:
    given = {"label": "{{ lookup('pipe', 'touch %s') }}" % (tmp_path / "marker"), "root": "", "layers": ["config", ""]}
    (tmp_path / "extravars.yml").write_text(unsafe_yaml(given))
    shown = subprocess.run(
        [str(Path(sys.executable).with_name("ansible")), "localhost", "-m", "ansible.builtin.debug",
         "-a", "msg={{ {'label': label, 'root_length': root | length, 'layers': layers} | to_json }}",
         "-e", "@" + str(tmp_path / "extravars.yml")],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    printed = json.loads(json.loads(shown.stdout.split("=>", 1)[1])["msg"])
    assert printed == {"label": given["label"], "root_length": 0, "layers": ["config", ""]}
    assert not (tmp_path / "marker").exists()
