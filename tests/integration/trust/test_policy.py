"""Who may roll back: the rollback role's policy step. The requester is the controller's OS user or the
AWX job's launcher, never a variable; an approval is a record made by ``gitops-rollback approve``, never
a name. Every refusal is in the audit log and nothing changes.

The decisions (who, which team, an approval that fits or comes in time) are made by the
``rollback_policy`` action: the component tests run it in-process on the command line ansible-playbook
parses (harness/actions.py). The end-to-end tests run the policy step through ansible-playbook (and
ansible-runner for an AWX job): a refusal is audited and fails the run before anything changes, an
approval lets it go on, the deadline stops it."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator
from unittest import mock

import ansible_runner
import psycopg2
import pytest
import yaml
from harness.actions import collection_module, command_line, run_action
from harness.collection import callback_env

REPO_ROOT = Path(__file__).resolve().parents[3]
ME = pwd.getpwuid(os.getuid()).pw_name  # the OS user running the tests: the requester outside AWX
APPROVER = "nobody"  # another OS user, who runs "gitops-rollback approve" in these tests


def policy_play(tmp_path: Path, policy: dict, **extra) -> list:
    """A play running the policy step, then a change that only an accepted run may make."""
    return [{"name": "policy", "hosts": "local", "gather_facts": False,
             "vars": {"rollback_to": "v1", "gitops_rollback_policy": policy, "rollback_run_id": "run-42",
                      "gitops_rollback_audit_log": str(tmp_path / "audit.jsonl"),
                      "rollback_approvals_file": str(tmp_path / "approvals"), **extra},
             "tasks": [
                 {"name": "Policy",
                  "ansible.builtin.include_role": {"name": "gitops.rollback.rollback", "tasks_from": "policy"}},
                 {"name": "Change", "ansible.builtin.copy": {"dest": str(tmp_path / "changed"), "content": "x"}},
             ]}]


def audit(tmp_path: Path) -> list:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(run_playbook, local_inventory, tmp_path, policy, extra_vars=None, env=None, extra_args=(), **play_vars):
    """Run the policy play; ``extra_vars`` are typed on the command line (-e), ``play_vars`` are play vars."""
    return run_playbook(policy_play(tmp_path, policy, **play_vars), inventory=local_inventory, extra_vars=extra_vars,
                        env={"USER": "carol", **(env or {})}, extra_args=list(extra_args))


def refused(result, tmp_path, reason_part):
    assert not result.ok, result
    assert not (tmp_path / "changed").exists(), "a refused run changed something"
    events = [e for e in audit(tmp_path) if e.get("event") == "refused"]
    assert events and reason_part in events[-1]["reason"], audit(tmp_path)
    assert "Rollback refused by policy" in result.stdout and reason_part in result.stdout
    return events[-1]


# ----------------------------------------------------------------------------------- approvers


@pytest.fixture(scope="module")
def cli_copy() -> Iterator[Path]:
    """The gitops-rollback command and the collection's module_utils in a directory any user can read
    (the test tree may live under root's home), so that another OS user can run ``approve``."""
    root = Path(tempfile.mkdtemp(prefix="gitops-rollback-cli-"))
    try:
        shutil.copytree(REPO_ROOT / "gitops_rollback", root / "gitops_rollback")
        shutil.copytree(REPO_ROOT / "plugins" / "module_utils", root / "plugins" / "module_utils")
        shutil.copy(REPO_ROOT / "galaxy.yml", root / "galaxy.yml")
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def approval_keys() -> Iterator[dict]:
    """The approval key (held by the approver ``nobody`` and readable by the verifying controller user) and
    another key, made once per module with ``gitops-rollback approve --new-key``."""
    shared = Path(tempfile.mkdtemp(prefix="gitops-rollback-keys-"))
    shared.chmod(0o755)
    paths = {"key": shared / "approval.key", "other": shared / "other.key"}
    for name in ("key", "other"):
        subprocess.run([sys.executable, "-m", "gitops_rollback", "approve", "--new-key", str(paths[name])],
                       check=True, capture_output=True, cwd=REPO_ROOT)
    nobody = pwd.getpwnam(APPROVER)
    os.chown(paths["key"], nobody.pw_uid, nobody.pw_gid)
    os.chown(paths["other"], nobody.pw_uid, nobody.pw_gid)
    yield paths
    shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture
def keys(approval_keys: dict) -> Iterator[dict]:
    """The module's keys and an approvals directory of this test's own that the approver may write."""
    shared = Path(tempfile.mkdtemp(prefix="gitops-rollback-approvals-"))
    shared.chmod(0o1777)
    yield {**approval_keys, "approvals": shared / "approvals", "shared": shared}
    shutil.rmtree(shared, ignore_errors=True)


def approve(cli_copy: Path, key: Path, *args: str, as_user: str = APPROVER) -> str:
    """Run ``gitops-rollback approve ARGS --key-file KEY`` as ``as_user``; return the record it printed."""
    argv = [sys.executable, "-m", "gitops_rollback", "approve", *args, "--key-file", str(key)]
    env = {"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/nonexistent"}
    if as_user != ME:
        argv = ["runuser", "-u", as_user, "--", "/usr/bin/python3", *argv[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cli_copy, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def approval_policy(keys: dict, **more) -> dict:
    return {"approval_required": True, "approvers": [APPROVER, "bob"], "confirmation_timeout": 3,
            "approval_key_file": str(keys["key"]), **more}


# ---------------------------------------------------------------------------------------- tests


def test_a_typed_in_identity_and_approval_are_refused_and_audited(run_playbook, local_inventory, tmp_path):
    """The bypass: -e awx_user_name=alice -e rollback_approval=bob satisfied allowed_users and approvers."""
    policy = {"allowed_users": ["alice"], "approval_required": True, "approvers": ["bob"], "confirmation_timeout": 3}
    result = run(run_playbook, local_inventory, tmp_path, policy,
                 extra_vars={"awx_user_name": "alice", "rollback_approval": "bob"})
    event = refused(result, tmp_path, "awx_user_name='alice' claims an AWX identity, but this is no AWX job")
    assert event["who"]["user"] == ME and event["run_id"] == "run-42" and event["target"] == "v1"


@pytest.fixture(name="decide")
def fixture_decide(collections_path: Path, tmp_path: Path):
    """``decide(policy, *options, env=None, approval="", approvals_file=None) -> result`` of the policy step's
    ``rollback_policy`` task for run run-42 to v1, on ``ansible-playbook OPTIONS`` (``-e ...``) with
    ``USER=carol`` (as the end-to-end runs); ``result["refusal"]`` is why the run is refused, or empty."""
    action = collection_module(collections_path, "plugins.action.rollback_policy").ActionModule

    def decide(policy: dict, *options: str, env: dict | None = None, approval: str = "",
               approvals_file: Path | None = None) -> dict:
        with command_line(*options) as extra, mock.patch.dict(os.environ, {"USER": "carol", **(env or {})}):
            args = {"policy": policy, "run_id": "run-42", "target": "v1", "approval": approval,
                    "approvals_file": str(approvals_file or tmp_path / "approvals"), "wait": True}
            return run_action(action, args, task_vars={"rollback_to": "v1", **extra})

    return decide


def test_the_requester_is_the_os_user_not_USER(decide):
    decision = decide({"allowed_users": ["carol"]}, env={"USER": "carol", "LOGNAME": "carol"})
    assert "user '%s'" % ME in decision["refusal"] and decision["who"]["user"] == ME, decision
    assert decide({"allowed_users": [ME]})["refusal"] == ""


def test_team_membership_comes_from_the_policy_not_from_a_variable(decide):
    policy = {"allowed_awx_teams": ["ops"], "teams": {"ops": ["alice"], "dev": [ME]}}
    assert "rollback_user_teams='ops' claims team membership" in decide(
        policy, "-e", json.dumps({"rollback_user_teams": "ops"}))["refusal"]
    assert "user '%s' (teams: dev)" % ME in decide(policy)["refusal"]
    policy["teams"]["ops"].append(ME)
    assert decide(policy)["refusal"] == ""


def test_a_policy_given_as_an_extra_var_is_refused(decide):
    decision = decide({"allowed_users": ["alice"]}, "-e", json.dumps({"rollback_policy": {}}))
    assert "rollback_policy was given as an extra var" in decision["refusal"]


def test_a_signed_approval_by_an_approver_lets_the_run_go_on(decide, keys, cli_copy):
    approvals = keys["approvals"]
    approve(cli_copy, keys["key"], "run-41", "--target", "v1", "--approvals-file", str(approvals))
    with approvals.open("a") as handle:
        handle.write("approve run-42 bob\n")  # the old, unsigned form approves nothing

    def approve_later():
        time.sleep(0.5)  # the waiting run (in this process) has read the file by now
        approve(cli_copy, keys["key"], "run-42", "--target", "v1", "--approvals-file", str(approvals))

    writer = threading.Thread(target=approve_later)
    writer.start()
    started = time.monotonic()
    decision = decide(approval_policy(keys, confirmation_timeout=60), approvals_file=approvals)
    writer.join()
    assert decision["refusal"] == "" and decision["approver"] == APPROVER, decision
    assert time.monotonic() - started >= 0.5


def test_no_approval_in_time_is_refused(decide, keys, cli_copy):
    approve(cli_copy, keys["key"], "run-41", "--target", "v1", "--approvals-file", str(keys["approvals"]))
    started = time.monotonic()
    decision = decide(approval_policy(keys, confirmation_timeout=1), approvals_file=keys["approvals"])
    assert "no approval by %s, bob within 1 s" % APPROVER in decision["refusal"], decision
    assert 1 <= time.monotonic() - started < 60


# Another target, a self-approval and an unknown approver: tests/unit/plugins/module_utils/test_policy.py.
@pytest.mark.parametrize("case, reason", [
    ("other run", "is for run 'run-41', not for this run 'run-42'"),
    ("expired", "expired at"),
    ("forged", "signature does not match the approval key"),
])
def test_an_approval_that_does_not_fit_is_refused(decide, keys, cli_copy, case, reason):
    args = ("run-41", "v1") if case == "other run" else ("run-42", "v1")
    key = keys["other"] if case == "forged" else keys["key"]
    record = approve(cli_copy, key, args[0], "--target", args[1], "--print-only",
                     *(("--expires-in", "1") if case == "expired" else ()))
    if case == "expired":  # it expires at the whole second after it was signed (approve: int(now) + 1)
        expires = int(time.time()) + 1
        while time.time() < expires:
            time.sleep(expires - time.time() + 0.01)
    decision = decide(approval_policy(keys), "-e", json.dumps({"rollback_approval": record}), approval=record)
    assert reason in decision["refusal"], decision


# -------------------------------------------------------------------------------------------- AWX


def awx_job_dir(root: Path, inventory: Path, play: list, extravars: dict, collections: Path) -> Path:
    """A private data directory as AWX writes it: env/extravars (with AWX's meta vars), env/envvars
    (JOB_ID, AWX_PRIVATE_DATA_DIR), inventory/hosts, project/."""
    for sub in ("env", "inventory", "project"):
        (root / sub).mkdir(parents=True)
    shutil.copy(inventory, root / "inventory" / "hosts")
    (root / "project" / "policy.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (root / "env" / "extravars").write_text(json.dumps(extravars))
    (root / "env" / "envvars").write_text(json.dumps({
        "JOB_ID": str(extravars["awx_job_id"]), "AWX_PRIVATE_DATA_DIR": str(root),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        **callback_env(collections)}))  # the test harness's callback: the same job, less controller CPU
    return root


def test_in_an_awx_job_the_launcher_is_the_requester_and_cannot_be_overridden(run_playbook, local_inventory,
                                                                              tmp_path, collections_path):
    meta = {"awx_job_id": 7, "tower_job_id": 7, "awx_user_name": "alice", "tower_user_name": "alice",
            "awx_job_launch_type": "manual"}
    play = policy_play(tmp_path, {"allowed_users": ["alice"]})
    pdd = awx_job_dir(tmp_path / "job7", local_inventory, play, meta, collections_path)
    job = ansible_runner.run(private_data_dir=str(pdd), playbook="policy.yml", ident="7", quiet=True)
    assert job.status == "successful", (pdd / "artifacts" / "7" / "stdout").read_text()
    assert (tmp_path / "changed").exists()
    (tmp_path / "changed").unlink()

    # The same job with a variable added after AWX's file, as a forged command line would.
    result = run(run_playbook, local_inventory, tmp_path, {"allowed_users": ["mallory"]},
                 env={"JOB_ID": "7", "AWX_PRIVATE_DATA_DIR": str(pdd)},
                 extra_args=["-e", "@%s" % (pdd / "env" / "extravars"), "-e", "awx_user_name=mallory"])
    event = refused(result, tmp_path, "awx_user_name='mallory' overrides what AWX wrote for job 7 ('alice')")
    assert event["who"] == {"user": "alice", "awx_job_id": "7", "awx_launcher": "alice"}


def deadline_plays(tmp_path: Path) -> list:
    """Two plays, each with a slow layer of 1 s: within 600 s the run goes on, past 0.5 s it stops before the next
    layer (each play's policy step sets its own deadline); the second one ends the run."""
    plays = []
    for limit in (600, 0.5):
        play = policy_play(tmp_path, {"max_rollback_seconds": limit})
        play[0]["name"] = "limit %s" % limit
        play[0]["tasks"][1:1] = [
            {"name": "A slow layer", "ansible.builtin.pause": {"seconds": 1}},
            {"name": "Deadline", "ansible.builtin.include_role": {"name": "gitops.rollback.rollback",
                                                                  "tasks_from": "policy_deadline"},
             "vars": {"__rollback_layer": "database"}},
        ]
        play[0]["tasks"][-1]["ansible.builtin.copy"]["dest"] = str(tmp_path / ("changed-%s" % limit))
        plays += play
    return plays


def test_an_approval_in_the_shared_state_lets_the_run_go_on_and_the_maximum_rollback_time_stops_it(
        run_playbook, local_inventory, tmp_path, keys, cli_copy, state_url, collections_path):
    """Three plays of one run. AWX jobs share no files: the approver's record goes to the shared state, where the
    waiting rollback reads it (the first play, its files under ``shared/``). Then the deadline's two plays
    (:func:`deadline_plays`): a play that fails ends the run, so they come last."""
    stored = subprocess.run([sys.executable, "-m", "gitops_rollback", "approve", "run-7", "--target", "v9",
                             "--key-file", str(keys["other"]), "--state", state_url,
                             "--collections-path", str(collections_path)],
                            capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    # the CLI stores what it signs (root may read the approver's key); this one is for another run
    assert stored.returncode == 0 and "stored in the shared state" in stored.stderr, stored.stderr
    record = approve(cli_copy, keys["key"], "run-42", "--target", "v1", "--print-only")

    def approve_later():  # what `approve --state` stores, for the approver `nobody`, once the run waits for it
        watch = psycopg2.connect(state_url)
        watch.autocommit = True  # each query sees the sessions of now
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the waiting run's connection to the shared state
                with watch.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND application_name = 'gitops-rollback state' AND pid <> pg_backend_pid()")
                    if cursor.fetchone()[0]:
                        break
                time.sleep(0.05)
        finally:
            watch.close()
        time.sleep(0.3)  # its first read (right after it connected) found no approval for it
        with psycopg2.connect(state_url) as conn, conn.cursor() as cursor:
            cursor.execute("INSERT INTO gitops_rollback.approvals (record) VALUES (%s)", (record,))

    shared = tmp_path / "shared"
    shared.mkdir()
    play = policy_play(shared, approval_policy(keys, confirmation_timeout=60))
    play[0]["name"] = "approval in the shared state"
    play[0]["module_defaults"] = {"group/gitops.rollback.state": {"state_url": state_url}}
    writer = threading.Thread(target=approve_later)
    writer.start()
    result = run_playbook(play + deadline_plays(tmp_path), inventory=local_inventory, env={"USER": "carol"})
    writer.join()

    # the approval: its play went on, reading and writing no local file
    assert not [e for e in result.events if e["play"] == play[0]["name"] and e["status"] == "failed"], result
    assert (shared / "changed").exists()
    assert not (shared / "approvals").exists() and not audit(shared)  # no local file read or written
    with psycopg2.connect(state_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT body FROM gitops_rollback.audit ORDER BY seq")
        approved = [e for e in (json.loads(body) for (body,) in cursor.fetchall()) if e.get("event") == "progress"]
    assert approved and approved[-1]["reason"] == "approved by %s" % APPROVER, approved
    # the deadline
    assert not result.ok, result
    assert (tmp_path / "changed-600").exists(), "within the limit the run went on"
    assert not (tmp_path / "changed-0.5").exists(), "past the limit the run stopped before the next change"
    assert "exceeded max_rollback_seconds (0.5 s)" in result.stdout and "before database" in result.stdout
    assert "max_rollback_seconds (600 s)" not in result.stdout


def test_a_request_without_a_target_is_refused_before_the_lock_and_the_start_record(run_playbook, local_inventory,
                                                                                    tmp_path):
    play = policy_play(tmp_path, {}, rollback_to="", rollback_layers="config,bogus",
                       rollback_lock_dir=str(tmp_path / "locks"))
    play[0]["tasks"][0]["ansible.builtin.include_role"]["tasks_from"] = "preflight"
    result = run_playbook(play, inventory=local_inventory)
    assert not result.ok, result
    message = [e for e in result.events if e.get("status") == "failed"][-1]["result"]["msg"]
    assert "Give the checkpoint id or Git tag to roll back to with -e rollback_to=<tag>." in message
    assert "rollback_layers may only name" in message and "(got 'bogus')" in message
    assert not (tmp_path / "changed").exists() and not (tmp_path / "locks").exists()
    assert audit(tmp_path) == [], "nothing is recorded for a request that names nothing to roll back to"
