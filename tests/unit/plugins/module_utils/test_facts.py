# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host facts in a checkpoint (files/facts.py): package versions as the package manager reports them."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.files.facts import collect, installed_packages

needs_dpkg = pytest.mark.skipif(not shutil.which("dpkg-query"), reason="a Debian host (dpkg-query) is needed")


@needs_dpkg
def test_installed_packages_are_the_versions_dpkg_reports():
    packages = installed_packages()
    for name in ("dpkg", "coreutils"):
        version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True,
                                 check=True).stdout
        assert packages[name] == version
    assert len(packages) > 50


def test_a_fact_that_cannot_be_read_is_recorded_as_an_error(tmp_path, monkeypatch):
    fake = tmp_path / "dpkg-query"
    fake.write_text("#!/bin/sh\necho 'dpkg database locked' >&2\nexit 2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "%s%s%s" % (tmp_path, os.pathsep, os.environ["PATH"]))
    facts = collect(["packages"])
    assert set(facts) == {"packages"}
    assert "dpkg-query failed (rc=2): dpkg database locked" in facts["packages"]["error"]


def test_only_the_facts_asked_for_are_collected():
    assert collect([]) == {}
