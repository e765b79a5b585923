# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the Terraform state logic: revert copies, differences, plan summaries, argv."""

from __future__ import annotations

import json
import os
import stat
import threading
from types import SimpleNamespace

import pytest
import yaml

from ansible_collections.gitops.rollback.plugins.doc_fragments.terraform import ModuleDocFragment
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import IntegrityError, LockHeldError
from ansible_collections.gitops.rollback.plugins.module_utils.common.labels import label_problem
from ansible_collections.gitops.rollback.plugins.module_utils.terraform.rollback import _safety_label, terraform_argument_spec
from ansible_collections.gitops.rollback.plugins.module_utils.terraform.engine import BinaryEngine, clean_output
from ansible_collections.gitops.rollback.plugins.module_utils.terraform.project import (
    TfOutput, TfProject, TfSettings, init_fingerprint, summarize_plan,
)
from ansible_collections.gitops.rollback.plugins.module_utils.terraform.state import (
    LineageMismatch, content_digest, parse_state, render_resources, resource_index, revert_copy,
    state_difference,
)


def make_state(serial, lineage="lin-a", release="v1", extra=False):
    resources = [{
        "mode": "managed", "type": "terraform_data", "name": "app",
        "instances": [{"attributes": {"id": "1", "input": release, "password": "hunter2"},
                       "sensitive_attributes": [[{"type": "get_attr", "value": "password"}]]}],
    }]
    if extra:
        resources.append({"mode": "managed", "type": "terraform_data", "name": "cache", "module": "module.db",
                          "instances": [{"index_key": "a", "attributes": {"id": "2"}}]})
    return {"version": 4, "terraform_version": "1.15.5", "serial": serial, "lineage": lineage,
            "outputs": {"release": {"value": release, "type": "string"},
                        "token": {"value": "s3cret", "type": "string", "sensitive": True}},
            "resources": resources}


def test_revert_keeps_lineage_and_moves_serial_above_current():
    pushed, warnings = revert_copy(make_state(9, release="v2"), make_state(3), force=False)
    assert (pushed["serial"], pushed["lineage"], warnings) == (10, "lin-a", [])
    assert content_digest(pushed) == content_digest(make_state(3))


def test_revert_to_another_lineage_is_refused():
    with pytest.raises(LineageMismatch) as caught:
        revert_copy(make_state(9, lineage="lin-b"), make_state(3), force=False)
    assert "lin-a" in str(caught.value) and "lin-b" in str(caught.value) and "force=true" in str(caught.value)


def test_forced_revert_to_another_lineage_says_what_it_overrides():
    pushed, warnings = revert_copy(make_state(9, lineage="lin-b"), make_state(30), force=True)
    assert pushed["lineage"] == "lin-a" and pushed["serial"] == 31
    assert len(warnings) == 1 and "ANOTHER lineage" in warnings[0] and "lin-b" in warnings[0]


def test_revert_onto_an_empty_workspace_pushes_the_snapshot_as_is():
    pushed, warnings = revert_copy(None, make_state(3), force=False)
    assert pushed["serial"] == 3 and not warnings


def test_difference_lists_addresses_and_changed_attributes():
    diff = state_difference(make_state(9, release="v2", extra=True), make_state(3))
    assert diff["removed"] == ['module.db.terraform_data.cache["a"]']
    assert diff["added"] == []
    assert {"address": "terraform_data.app", "attributes": ["input"]} in diff["changed"]
    assert {"address": "output.release", "attributes": ["value"]} in diff["changed"]


def test_sensitive_values_never_appear_in_the_diff():
    text = render_resources(make_state(3), "now")
    assert "hunter2" not in text and "s3cret" not in text and "(sensitive)" in text
    assert resource_index(make_state(3))["output.token"] == {"value": "(sensitive)"}


@pytest.mark.parametrize("data, problem", [
    (b"not json", "not a Terraform state"),
    (b'{"version": 3, "serial": 1, "lineage": "x"}', "format version 3"),
    (b'{"version": 4, "lineage": "x"}', "'serial'"),
])
def test_bad_state_documents_are_refused(data, problem):
    with pytest.raises(IntegrityError, match=problem):
        parse_state(data, "snapshot v1")


def test_empty_pull_means_no_state():
    assert parse_state(b"\n", "current") is None


def test_plan_summary_reads_json_lines():
    lines = [
        {"type": "planned_change", "change": {"resource": {"addr": "terraform_data.app"}, "action": "update"}},
        {"type": "resource_drift", "change": {"resource": {"addr": "terraform_data.web"}, "action": "update"}},
        {"type": "change_summary", "changes": {"add": 1, "change": 2, "remove": 3, "operation": "plan"}},
    ]
    plan = summarize_plan("\n".join(json.dumps(line) for line in lines) + "\nnot json\n", 2)
    assert plan["changes_pending"] is True
    assert plan["summary"] == {"add": 1, "change": 2, "destroy": 3}
    assert plan["changes"] == [{"address": "terraform_data.app", "action": "update"}]
    assert plan["drift"] == [{"address": "terraform_data.web", "action": "update"}]


def test_clean_output_drops_colours_and_boxes():
    raw = "\x1b[31m╷\x1b[0m\n\x1b[31m│\x1b[0m \x1b[1mError: \x1b[0mbad\n╵\n"
    assert clean_output(raw) == "Error: bad"


def test_binary_engine_runs_an_argument_list(tmp_path):
    fake = tmp_path / "terraform"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\necho "ws=$TF_WORKSPACE" >&2\nexit 2\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    out = BinaryEngine(str(fake)).run(["state", "push", "-lock-timeout=5s", "a file"], "/cfg", {"TF_WORKSPACE": "w"})
    assert out.stdout.splitlines() == ["-chdir=/cfg", "state", "push", "-lock-timeout=5s", "a file"]
    assert (out.rc, out.stderr.strip()) == (2, "ws=w")


def test_binary_engine_refuses_a_missing_binary(tmp_path):
    with pytest.raises(Exception, match="not an executable file"):
        BinaryEngine(str(tmp_path / "nope"))


class RecordingEngine:
    """An engine that records argv and answers with canned output."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def describe(self, args, cwd):
        return " ".join(["terraform", *args])

    def run(self, args, cwd, env):
        self.calls.append((list(args), cwd, dict(env)))
        return TfOutput(list(args), *self.answer)


def test_project_passes_variables_and_backend_through_private_files(tmp_path):
    settings = TfSettings(project_path=str(tmp_path), workspace="staging", backend_config={"conn_str": "pw"},
                          variables={"tags": {"a": "1"}}, variables_files=["prod.tfvars"], parallelism=3,
                          state_lock_timeout=7)
    engine = RecordingEngine((0, "", ""))
    with TfProject(engine, settings) as project:
        project.init()
        project.plan()
        init_args, cwd, env = engine.calls[0]
        plan_args = engine.calls[1][0]
        backend_file = init_args[-1].split("=", 1)[1]
        assert json.load(open(backend_file)) == {"conn_str": "pw"}
        assert stat.S_IMODE(os.stat(backend_file).st_mode) == 0o600
        varfile = [a for a in plan_args if a.endswith(".tfvars.json")][0].split("=", 1)[1]
        assert json.load(open(varfile)) == {"tags": {"a": "1"}}
    assert "-var-file=%s" % os.path.join(str(tmp_path), "prod.tfvars") in plan_args
    assert {"-lock-timeout=7s", "-parallelism=3", "-detailed-exitcode"} <= set(plan_args)
    assert env["TF_WORKSPACE"] == "staging" and cwd == str(tmp_path)
    assert not any("pw" in arg for arg in init_args + plan_args)
    assert not os.path.exists(backend_file), "the private files outlive the project"


def test_a_lock_failure_names_the_holder_from_lock_info(tmp_path):
    stderr = ("Error: Error acquiring the state lock\n\nError message: resource temporarily unavailable\n"
              "Lock Info:\n  ID:        abc\n  Path:      terraform.tfstate\n  Operation: OperationTypeApply\n"
              "  Who:       alice@ci\n  Version:   1.15.5\n  Created:   2026-11-21\n  Info:\n\n"
              "Terraform acquires a state lock to protect the state\n")
    settings = TfSettings(project_path=str(tmp_path), state_lock_timeout=4)
    with TfProject(RecordingEngine((1, "", stderr)), settings) as project:
        project.backend_type = "local"
        out = project.run(["state", "push", "x"])
        error = project.fail(out, "terraform state push", "")
    assert isinstance(error, LockHeldError)
    assert "who alice@ci" in str(error) and "operation OperationTypeApply" in str(error) and "waited 4s" in str(error)


def test_doc_fragment_and_argument_spec_name_the_same_options():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    spec = terraform_argument_spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default"), name


def test_automatic_safety_labels_are_in_the_label_grammar():
    """A revert or an apply at a tag labels its safety snapshot itself: the label must pass the grammar."""
    ctx = SimpleNamespace(settings=SimpleNamespace(workspace="default"))
    for action in ("revert", "apply-v2", "apply-release/2026.12.1"):
        label = _safety_label(ctx, action)
        assert label_problem(label) is None, label


def test_init_runs_once_for_the_same_settings_and_again_when_anything_init_reads_changes(tmp_path):
    (tmp_path / "main.tf").write_text('resource "terraform_data" "a" {}\n')
    engine = RecordingEngine((0, "", ""))

    def inits(**changes):
        settings = TfSettings(project_path=str(tmp_path), backend_config={"path": "s.tfstate"})
        for key, value in changes.items():
            setattr(settings, key, value)
        with TfProject(engine, settings) as project:
            project.init()
        return sum(1 for call in engine.calls if call[0][0] == "init")

    assert inits() == 1
    assert inits() == 1, "a second project of the same run (preview, snapshot, revert, verify) skips it"
    assert inits(workspace="staging") == 2
    assert inits(workspace="staging") == 2
    assert inits(workspace="staging", backend_config={"path": "other.tfstate"}) == 3
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "x.tf").write_text("# changed\n")
    assert inits(workspace="staging", backend_config={"path": "other.tfstate"}) == 4
    (tmp_path / ".terraform" / "providers").mkdir()
    (tmp_path / ".terraform" / "providers" / "p").write_text("provider")
    assert inits(workspace="staging", backend_config={"path": "other.tfstate"}) == 5, "the data directory changed"
    (tmp_path / ".terraform" / "providers" / "p").unlink()
    assert inits(workspace="staging", backend_config={"path": "other.tfstate"}) == 6
    marker = (tmp_path / ".terraform" / "gitops-rollback-init.json").read_text()
    assert "other.tfstate" not in marker, "the marker holds a digest, never the settings"


def test_a_failed_init_is_not_remembered(tmp_path):
    (tmp_path / "main.tf").write_text("")
    engine = RecordingEngine((1, "", "Error: bad backend"))
    for _attempt in range(2):
        with TfProject(engine, TfSettings(project_path=str(tmp_path))) as project:
            with pytest.raises(Exception, match="terraform init failed"):
                project.init()
    assert len(engine.calls) == 2


def test_init_fingerprint_never_hangs_on_a_fifo_in_the_configuration(tmp_path):
    """A FIFO planted as a configuration file (or as the backend file) is fingerprinted as what it is, not read:
    the module does not wait forever for a writer."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "main.tf").write_text('resource "null_resource" "a" {}\n')
    os.mkfifo(str(config / "planted.tf"))
    project = SimpleNamespace(engine=SimpleNamespace(describe=lambda args, where: "terraform"),
                              settings=SimpleNamespace(workspace="default", backend_config={}),
                              config_dir=str(config), data_dir=lambda: str(config / ".terraform"))
    found = []
    worker = threading.Thread(target=lambda: found.append(init_fingerprint(project, [str(config / "planted.tf")])),
                              daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # let the stuck open return before failing
        try:
            os.close(os.open(str(config / "planted.tf"), os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert found and len(found[0]) == 64
