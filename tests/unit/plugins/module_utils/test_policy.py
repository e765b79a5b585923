# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signed approvals, the requester's identity and the policy decision (module_utils/controller/policy.py)."""

from __future__ import annotations

import base64
import json
import os
import pwd

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.controller.audit import who
from ansible_collections.gitops.rollback.plugins.module_utils.controller.policy import (
    ApprovalError, PolicyError, approvals_in, awx_workflow_approval, check_approval, find_awx_job, first_valid,
    load_key, load_policy, new_key, parse_approval, requester_refusal, resolve_identity, sign_approval,
)

KEY = b"k" * 64
NOW = 1_800_000_000.0
POLICY = load_policy({"approval_required": True, "approvers": ["bob", "carol"]})


def record(run_id="run-42", target="v1", approver="bob", expires=NOW + 600, key=KEY):
    return sign_approval(key, run_id, target, approver, int(expires))


def check(token, run_id="run-42", target="v1", requester="alice", policy=POLICY):
    return check_approval(KEY, token, run_id, target, requester, policy, now=NOW)


# ------------------------------------------------------------------------------------ approvals


def test_a_genuine_approval_counts():
    approval = check(record())
    assert (approval.approver, approval.run_id, approval.target) == ("bob", "run-42", "v1")


@pytest.mark.parametrize("token, message", [
    (record(run_id="run-41"), "the approval by 'bob' is for run 'run-41', not for this run 'run-42'"),
    (record(target="v0"), "the approval by 'bob' is for a rollback to 'v0', not to 'v1'"),
    (record(expires=NOW - 1), "the approval by 'bob' expired at 2027-01-15T07:59:59Z (now 2027-01-15T08:00:00Z)"),
    (record(expires=NOW), "expired at"),
    (record(expires=NOW + 86401), "longer than approval_max_validity (86400 s) allows"),
    (record(approver="alice"), "the approval by 'alice' is a self-approval"),
    (record(approver="mallory"), "'mallory' is not an approver (approvers: bob, carol)"),
    (record(key=b"x" * 64), "signature does not match the approval key"),
])
def test_an_approval_that_does_not_fit_is_refused(token, message):
    with pytest.raises(ApprovalError, match=None) as caught:
        check(token)
    assert message in str(caught.value)


def test_an_altered_record_fails_its_signature():
    prefix, payload, mac = record().split(".")
    data = json.loads(base64.urlsafe_b64decode(payload))
    data["run_id"] = "run-43"
    altered = base64.urlsafe_b64encode(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).decode()
    with pytest.raises(ApprovalError, match="signature does not match"):
        check(".".join([prefix, altered, mac]), run_id="run-43")
    flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    with pytest.raises(ApprovalError, match="signature does not match"):
        check(".".join([prefix, payload, flipped]))


@pytest.mark.parametrize("token", ["bob", "", "approve run-42 bob", "gra1.{{x}}." + "0" * 64, "gra1.e30." + "0" * 63,
                                   "gra1." + "A" * 3000 + "." + "0" * 64, None, 42])
def test_a_name_or_garbage_is_no_approval(token):
    with pytest.raises(ApprovalError, match="is not an approval record"):
        parse_approval(token)


def test_a_record_with_other_fields_is_refused():
    payload = base64.urlsafe_b64encode(b'{"v":2}').decode()
    with pytest.raises(ApprovalError, match="damaged|unknown format"):
        parse_approval("gra1.%s.%s" % (payload, "0" * 64))


def test_signing_refuses_bad_names():
    with pytest.raises(ApprovalError, match="Run id"):
        sign_approval(KEY, "run 42", "v1", "bob", int(NOW))
    with pytest.raises(ApprovalError, match="Target"):
        sign_approval(KEY, "run-42", "{{ lookup('pipe', 'id') }}", "bob", int(NOW))
    with pytest.raises(ApprovalError, match="not a user name"):
        sign_approval(KEY, "run-42", "v1", "bob smith", int(NOW))


def test_the_first_valid_record_of_a_file_counts_and_the_others_say_why():
    text = "\n".join(["# approvals", "approve run-42 bob", record(run_id="run-41"), record(approver="carol"), ""])
    approval, reasons = first_valid(KEY, approvals_in(text), "run-42", "v1", "alice", POLICY, now=NOW)
    assert approval is not None and approval.approver == "carol"
    assert len(reasons) == 2 and "not an approval record" in reasons[0] and "not for this run" in reasons[1]


def test_the_key_file_must_be_private_and_long_enough(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(new_key() + b"\n")
    path.chmod(0o600)
    assert len(load_key(str(path))) == 64
    path.chmod(0o640)
    with pytest.raises(ApprovalError, match="readable or writable by group or others"):
        load_key(str(path))
    path.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(ApprovalError, match="cannot be read"):
        load_key(str(link))
    short = tmp_path / "short"
    short.write_bytes(b"secret")
    short.chmod(0o600)
    with pytest.raises(ApprovalError, match="fewer than 32 bytes"):
        load_key(str(short))
    with pytest.raises(ApprovalError, match="cannot be read"):
        load_key(str(tmp_path / "missing"))


# ------------------------------------------------------------------------------------- identity


AWX_ENV = {"JOB_ID": "7", "AWX_PRIVATE_DATA_DIR": "/tmp/awx_7_abc"}
AWX_FILE = {"awx_job_id": 7, "awx_user_name": "alice", "tower_user_name": "alice"}


def test_outside_awx_the_requester_is_the_os_user_and_awx_claims_are_refused():
    identity, claims = resolve_identity("root", {"USER": "alice"}, [("{...}", {"awx_user_name": "alice"})],
                                        {"awx_user_name": "alice"})
    assert identity.user == "root" and identity.source == "os"
    assert claims == ["awx_user_name='alice' claims an AWX identity, but this is no AWX job "
                      "(the requester is the controller's OS user 'root')"]
    identity, claims = resolve_identity("carol", {}, [], {})
    assert identity.who() == {"user": "carol", "awx_job_id": "", "awx_launcher": ""} and claims == []


@pytest.mark.parametrize("extravars", ["/runner/env/extravars", "/tmp/awx_7_abc/env/extravars"])
def test_an_awx_job_is_recognised_by_its_environment_and_extravars_file(extravars):
    sources = [("@" + extravars, AWX_FILE)]
    identity, claims = resolve_identity("runner", AWX_ENV, sources, dict(AWX_FILE))
    assert identity.who() == {"user": "alice", "awx_job_id": "7", "awx_launcher": "alice"} and claims == []


@pytest.mark.parametrize("environ, sources", [
    ({"JOB_ID": "7"}, [("@/runner/env/extravars", AWX_FILE)]),  # no AWX_PRIVATE_DATA_DIR
    (AWX_ENV, [("@/tmp/other/env/extravars", AWX_FILE)]),  # not the job's private data dir
    (AWX_ENV, [("@/runner/env/extravars", dict(AWX_FILE, awx_job_id=8))]),  # another job's file
    (AWX_ENV, [("{...}", AWX_FILE)]),  # typed in, not the file
])
def test_what_is_not_an_awx_job(environ, sources):
    assert find_awx_job(environ, sources) is None
    identity, claims = resolve_identity("mallory", environ, sources, dict(AWX_FILE))
    assert identity.user == "mallory" and len(claims) == 3


def test_in_awx_a_variable_overriding_the_launcher_is_refused():
    sources = [("@/runner/env/extravars", AWX_FILE), ("awx_user_name=bob", {"awx_user_name": "bob"})]
    identity, claims = resolve_identity("runner", AWX_ENV, sources, dict(AWX_FILE, awx_user_name="bob"))
    assert identity.user == "alice"
    assert claims == ["awx_user_name='bob' overrides what AWX wrote for job 7 ('alice')"]


def test_a_job_no_user_launched_has_a_job_identity():
    values = {"awx_job_id": 7, "awx_job_launch_type": "scheduled"}
    identity, claims = resolve_identity("runner", AWX_ENV, [("@/runner/env/extravars", values)], dict(values))
    assert identity.user == "awx-job-7" and claims == []


def test_teams_and_the_policy_are_never_taken_from_variables():
    sources = [("{...}", {"rollback_policy": {}}), ("@/x.yml", {"gitops_rollback_policy": {}})]
    claims = resolve_identity("root", {}, sources, {"rollback_user_teams": ["ops"]})[1]
    assert claims == [r"rollback_user_teams='[\x27ops\x27]' claims team membership; teams come from the policy's "
                      "teams mapping",
                      r"rollback_policy was given as an extra var (-e '\x7b...\x7d'); the policy comes from the inventory only",
                      "gitops_rollback_policy was given as an extra var (-e '@/x.yml'); the policy comes from the "
                      "inventory only"]


# --------------------------------------------------------------------------------------- policy


def test_who_may_roll_back():
    identity = resolve_identity("carol", {}, [], {})[0]
    assert requester_refusal(load_policy({}), identity) == ""
    assert requester_refusal(load_policy({"allowed_users": ["carol"]}), identity) == ""
    assert requester_refusal(load_policy({"allowed_awx_teams": ["ops"], "teams": {"ops": ["carol"]}}), identity) == ""
    assert requester_refusal(load_policy({"allowed_users": "alice, bob", "allowed_awx_teams": ["ops"],
                                          "teams": {"dev": ["carol"]}}), identity) == (
        "user 'carol' (teams: dev) may not roll back this environment; allowed users: alice, bob, "
        "allowed AWX teams: ops")


@pytest.mark.parametrize("raw, message", [
    ({"allowed_user": ["a"]}, "unknown keys 'allowed_user'"),
    ({"approvers": [1]}, "approvers must be a list of names"),
    ({"teams": ["ops"]}, "teams must map team names"),
    ({"confirmation_timeout": "soon"}, "wrong type"),
])
def test_a_malformed_policy_is_named(raw, message):
    with pytest.raises(PolicyError, match=None) as caught:
        load_policy(raw)
    assert message in str(caught.value)


def test_an_awx_workflow_named_in_the_policy_approves():
    values = dict(AWX_FILE, awx_workflow_job_name="rollback with approval", awx_workflow_job_id=99)
    sources = [("@/runner/env/extravars", values)]
    identity = resolve_identity("runner", AWX_ENV, sources, dict(values))[0]
    job = find_awx_job(AWX_ENV, sources)
    policy = load_policy({"awx_approval_workflows": ["rollback with approval"]})
    assert awx_workflow_approval(policy, identity, job) == (
        "AWX workflow approval node (workflow rollback with approval, workflow job 99)")
    assert awx_workflow_approval(load_policy({"awx_approval_workflows": ["other"]}), identity, job) == ""
    outside = resolve_identity("root", {}, [], {})[0]
    assert awx_workflow_approval(policy, outside, None) == ""


def test_new_keys_differ():
    assert new_key() != new_key() and len(new_key()) == 64


def test_the_audit_log_names_the_os_user_not_USER(monkeypatch):
    monkeypatch.setenv("USER", "mallory")
    assert who()["user"] == pwd.getpwuid(os.getuid()).pw_name
    assert who("alice")["user"] == "alice"
