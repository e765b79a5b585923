"""The awx/ definitions: ansible-builder accepts the execution environment, surveys feed the playbooks."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gitops_support import REPO_ROOT

AWX = REPO_ROOT / "awx"


def _ansible_builder() -> str:
    found = shutil.which("ansible-builder", path=str(Path(sys.executable).parent)) or shutil.which("ansible-builder")
    if not found:
        pytest.fail("ansible-builder is not installed: pip install ansible-builder (it belongs in the dev extra)",
                    pytrace=False)
    return found


def test_ansible_builder_creates_the_build_context(tmp_path: Path) -> None:
    context = tmp_path / "context"
    proc = subprocess.run([_ansible_builder(), "create", "-f", str(AWX / "execution-environment.yml"),
                           "-c", str(context)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = next(p for p in (context / "Containerfile", context / "Dockerfile") if p.exists())
    text = containerfile.read_text()
    assert "ansible-galaxy" in text and "quay.io/ansible/awx-ee" in text
    requirements = (context / "_build" / "requirements.txt").read_text().lower()
    assert "gitpython" in requirements and "jinja2" in requirements
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert any("gitops.rollback" in c["name"] for c in galaxy["collections"])


def test_surveys_ask_what_the_playbooks_take() -> None:
    variables = {name: {q["variable"]: q for q in json.loads((AWX / "surveys" / f"{name}.json").read_text())["spec"]}
                 for name in ("checkpoint", "rollback", "guard")}
    assert variables["rollback"]["rollback_to"]["required"] is True
    assert set(variables["rollback"]["rollback_layers"]["choices"]) == {
        "traffic", "release", "config", "database", "infrastructure", "services"}
    assert variables["rollback"]["rollback_dry_run"]["default"] == "yes"
    assert "checkpoint_label" in variables["checkpoint"]
    templates = yaml.safe_load((AWX / "job_templates.yml").read_text())[0]["vars"]["awx_templates"]
    for template in templates:
        assert (REPO_ROOT / "awx" / "surveys" / template["survey"]).is_file()
    assert {t["playbook"] for t in templates if t["webhook"]} == {"playbooks/checkpoint.yml", "playbooks/rollback.yml"}


def test_every_survey_answer_is_read_by_the_playbooks_or_roles() -> None:
    sources = "\n".join(p.read_text() for top in ("playbooks", "roles") for p in (REPO_ROOT / top).rglob("*.yml"))
    for survey in (AWX / "surveys").glob("*.json"):
        for question in json.loads(survey.read_text())["spec"]:
            assert re.search(r"\b%s\b" % re.escape(question["variable"]), sources), \
                f"{survey.name}: the answer {question['variable']} is read by nothing"


def test_image_and_collection_versions_are_pinned() -> None:
    """The execution environment and the project are the collection's release, not whatever main or latest is."""
    version = str(yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())["version"])
    base = yaml.safe_load((AWX / "execution-environment.yml").read_text())["images"]["base_image"]["name"]
    assert not base.endswith(":latest") and re.search(r":\d+(\.\d+)+$", base), base
    (collection,) = yaml.safe_load((AWX / "requirements.yml").read_text())["collections"]
    assert str(collection["version"]) == version, collection
    template_vars = yaml.safe_load((AWX / "job_templates.yml").read_text())[0]["vars"]
    assert str(template_vars["awx_project_branch"]) == version
    assert template_vars["awx_execution_environment_image"].endswith(":" + version)
