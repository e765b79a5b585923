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
    assert "gitpython" in requirements and "jinja2" in requirements and "psycopg2" in requirements
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert any("gitops.rollback" in c["name"] for c in galaxy["collections"])


def test_surveys_ask_what_the_playbooks_take() -> None:
    variables = {name: {q["variable"]: q for q in json.loads((AWX / "surveys" / f"{name}.json").read_text())["spec"]}
                 for name in ("checkpoint", "rollback", "guard")}
    assert variables["rollback"]["rollback_to"]["required"] is True
    assert set(variables["rollback"]["rollback_layers"]["choices"]) == {
        "flags", "traffic", "release", "config", "database", "infrastructure", "services"}
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


def _workflow() -> dict:
    (workflow,) = json.loads((AWX / "workflow.json").read_text())["workflow_job_templates"]
    return workflow


def test_guarded_deploy_workflow_reaches_the_rollback_only_through_the_approval() -> None:
    workflow = _workflow()
    nodes = {node["identifier"]: node for node in workflow["related"]["workflow_nodes"]}
    assert len(nodes) == len(workflow["related"]["workflow_nodes"]), "node identifiers must be unique"

    def targets(identifier: str, kind: str) -> set:
        return {link["identifier"] for link in nodes[identifier]["related"][kind]}

    for identifier in nodes:  # every link names a node of this workflow
        for kind in ("success_nodes", "failure_nodes", "always_nodes"):
            assert targets(identifier, kind) <= set(nodes), (identifier, kind)
    assert targets("deploy", "success_nodes") == {"guard"}
    assert targets("deploy", "failure_nodes") == targets("guard", "failure_nodes") == {"approve-rollback"}
    assert targets("guard", "success_nodes") == set()  # a passing gate keeps the release
    approval = nodes["approve-rollback"]["unified_job_template"]
    assert approval["type"] == "workflow_approval_template" and approval["timeout"] > 0
    assert targets("approve-rollback", "success_nodes") == {"rollback"}
    assert targets("approve-rollback", "failure_nodes") == set()  # denied or timed out: nothing rolls back
    parents = {child for identifier in nodes for kind in ("success_nodes", "failure_nodes", "always_nodes")
               for child in targets(identifier, kind) if child == "rollback" and identifier != "approve-rollback"}
    assert not parents, "the rollback must be reachable only through the approval node"


def test_guarded_deploy_workflow_runs_the_shipped_templates_with_a_guard_that_stops() -> None:
    workflow = _workflow()
    templates = {t["name"]: t for t in yaml.safe_load((AWX / "job_templates.yml").read_text())[0]["vars"]["awx_templates"]}
    nodes = {node["identifier"]: node for node in workflow["related"]["workflow_nodes"]}
    assert templates[nodes["guard"]["unified_job_template"]["name"]]["playbook"] == "playbooks/guard.yml"
    assert templates[nodes["rollback"]["unified_job_template"]["name"]]["playbook"] == "playbooks/rollback.yml"
    workflow_vars = yaml.safe_load(workflow["extra_vars"])
    guard_survey = {q["variable"]: q for q in json.loads((AWX / "surveys" / "guard.json").read_text())["spec"]}
    for name in ("guard_on_fail", "guard_on_inconclusive", "guard_on_error"):
        assert workflow_vars[name] == "fail" and "fail" in guard_survey[name]["choices"], name
    role_spec = yaml.safe_load((REPO_ROOT / "roles" / "guard" / "meta" / "argument_specs.yml").read_text())
    assert "fail" in role_spec["argument_specs"]["main"]["options"]["guard_on_fail"]["choices"]
    assert workflow_vars["rollback_dry_run"] == "no"  # an approved rollback changes the hosts
    survey = {q["variable"]: q for q in workflow["related"]["survey_spec"]["spec"]}
    assert survey["rollback_to"]["required"] is True
    playbook = yaml.safe_load((AWX / "workflow.yml").read_text())[0]
    assert "workflow.json" in playbook["vars"]["awx_workflow"]  # one graph for the playbook and `awx import`
