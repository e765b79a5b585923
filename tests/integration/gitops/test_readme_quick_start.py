"""The README's quick start, run as written, from the collection installed out of its tarball."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from gitops_support import REPO_ROOT, InstalledCli

pytestmark = pytest.mark.e2e


def quick_start_script() -> str:
    """The shell block under the README's "Quick start" heading."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)[:1]
    return block


def test_the_readme_quick_start_checkpoints_and_rolls_back(installed_cli: InstalledCli, tmp_path: Path) -> None:
    script = quick_start_script()
    assert "gitops.rollback.checkpoint" in script and "gitops.rollback.rollback" in script
    # the same commands, in a directory of this test instead of /tmp/quickstart
    script = script.replace("/tmp/quickstart", str(tmp_path / "quickstart"))
    # pipelining on, as roles/rollback/README.md recommends: the same commands, one process per module run
    env = installed_cli.env(PATH="%s:/usr/local/bin:/usr/bin:/bin" % (installed_cli.venv / "bin"),
                            ANSIBLE_COLLECTIONS_PATH=str(installed_cli.collections), ANSIBLE_PIPELINING="True")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "quickstart" / "etc" / "app.conf").read_text() == "version=1\n"
    assert done.stdout.rstrip().endswith("version=1"), done.stdout[-500:]  # the README's last line prints it
    assert "would change" in done.stdout and "update app.conf" in done.stdout  # the --check plan named the change
