# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who is rolling back, who approved it, and whether the policy lets the run go on.

Nothing here believes a variable about identity:

- the requester is the controller's OS user (the process' real uid), or, in an AWX job, the
  launching user AWX wrote into the job's own extra-vars file (``awx_user_name``); a variable
  that claims another identity is a refusal, not an input;
- an approval is a record an approver made with ``gitops-rollback approve``: an HMAC-SHA256
  over run id, target, approver and expiry under a key only approvers (and the verifying
  controller) hold. A name typed as a variable approves nothing.

Pure functions over their inputs (the environment, the ``-e`` sources, the variables are passed
in), standard library only. The ``gitops.rollback.rollback_policy`` action and the
``gitops-rollback approve`` command use this file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import posixpath
import pwd
import re
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.gitops.rollback.plugins.module_utils.common.labels import (
    TARGET_GRAMMAR, LabelError, check_label, escape, target_problem)

# Variables that claim an AWX job identity; outside an AWX job any of them is a refused claim.
IDENTITY_VARS = ("awx_user_name", "tower_user_name", "awx_job_id", "tower_job_id")
# Variables that would replace the policy itself: never accepted from extra vars.
POLICY_VARS = ("rollback_policy", "gitops_rollback_policy")
# Team membership typed in by the requester (no longer trusted; see Policy.teams).
TEAM_VARS = ("rollback_user_teams",)
# Where ansible-runner puts the extra-vars file AWX writes, inside an execution environment.
RUNNER_EXTRAVARS = "/runner/env/extravars"
# Environment variable an AWX credential may set to the approval key file (honoured in AWX jobs only).
AWX_KEY_FILE_ENV = "GITOPS_ROLLBACK_APPROVAL_KEY_FILE"

APPROVAL_PREFIX = "gra1"
_APPROVAL_DOMAIN = b"gitops-rollback approval v1\n"
_MAX_TOKEN = 2048
_TOKEN = re.compile(r"gra1\.([A-Za-z0-9_-]{1,1800}={0,2})\.([0-9a-f]{64})")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}")
MIN_KEY_LENGTH = 32
DEFAULT_VALIDITY = 900
POLICY_DEFAULTS: Dict[str, Any] = {
    "allowed_users": [], "allowed_awx_teams": [], "teams": {}, "approval_required": False, "approvers": [],
    "confirmation_timeout": 300, "max_rollback_seconds": 0, "approval_key_file": "",
    "approval_max_validity": 86400, "awx_approval_workflows": [],
}


class PolicyError(ValueError):
    """The policy itself is malformed (a configuration error of the inventory)."""


class ApprovalError(ValueError):
    """An approval is refused; the message says why and what to do."""


@dataclass(frozen=True)
class Identity:
    """Who runs this rollback, and where that was read from."""

    user: str
    source: str  # "os" or "awx"
    os_user: str
    awx_job_id: str = ""
    awx_launcher: str = ""

    def who(self) -> Dict[str, str]:
        """The ``who`` record of the audit log."""
        return {"user": self.user, "awx_job_id": self.awx_job_id, "awx_launcher": self.awx_launcher}


@dataclass(frozen=True)
class AwxJob:
    """An AWX job recognised from what AWX and ansible-runner put in place."""

    job_id: str
    extravars_file: str
    values: Mapping[str, Any]

    @property
    def launcher(self) -> str:
        """The launching user AWX wrote (``awx_user_name``), or '' for jobs no user launched."""
        return str(self.values.get("awx_user_name") or self.values.get("tower_user_name") or "")


@dataclass(frozen=True)
class Approval:
    """A parsed approval record (its signature not yet checked unless returned by check_approval)."""

    run_id: str
    target: str
    approver: str
    expires: int
    signature: str
    payload: bytes = field(repr=False, default=b"")


@dataclass(frozen=True)
class Policy:
    """The rollback policy of one environment (from the inventory, never from extra vars)."""

    allowed_users: Tuple[str, ...]
    allowed_awx_teams: Tuple[str, ...]
    teams: Mapping[str, Tuple[str, ...]]
    approval_required: bool
    approvers: Tuple[str, ...]
    confirmation_timeout: float
    max_rollback_seconds: float
    approval_key_file: str
    approval_max_validity: int
    awx_approval_workflows: Tuple[str, ...]

    @property
    def open(self) -> bool:
        """True when anyone may roll back (no allowed users nor teams)."""
        return not self.allowed_users and not self.allowed_awx_teams


# ------------------------------------------------------------------------------------ identity


def os_user_name(uid: Optional[int] = None) -> str:
    """Return the name of the process' real user (``uid`` when given), or ``uid:<n>`` without one."""
    uid = os.getuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "uid:%d" % uid


def find_awx_job(environ: Mapping[str, str], sources: Sequence[Tuple[str, Mapping[str, Any]]]) -> Optional[AwxJob]:
    """Return the AWX job this process runs in, or None.

    An AWX job is recognised only when all of these hold: AWX's environment variables ``JOB_ID``
    and ``AWX_PRIVATE_DATA_DIR`` are set; ansible-playbook got ``-e @<dir>/env/extravars`` where
    ``<dir>`` is that private data directory (or ``/runner`` inside an execution environment),
    as ansible-runner passes it; and that file's ``awx_job_id`` equals ``JOB_ID``.
    ``sources`` are the ``-e`` arguments in order, each as (argument, values).
    """
    job_id = str(environ.get("JOB_ID") or "")
    private = str(environ.get("AWX_PRIVATE_DATA_DIR") or "")
    if not job_id or not private:
        return None
    wanted = {RUNNER_EXTRAVARS, posixpath.normpath(posixpath.join(private, "env", "extravars"))}
    for origin, values in reversed(list(sources)):
        if origin.startswith("@") and posixpath.normpath(origin[1:]) in wanted:
            if str(values.get("awx_job_id", values.get("tower_job_id", ""))) == job_id:
                return AwxJob(job_id=job_id, extravars_file=origin[1:], values=dict(values))
            return None
    return None


def resolve_identity(os_user: str, environ: Mapping[str, str], sources: Sequence[Tuple[str, Mapping[str, Any]]],
                     variables: Mapping[str, Any]) -> Tuple[Identity, List[str]]:
    """Return the requester and the identity claims to refuse (empty when none).

    ``variables`` are the play's variables as Ansible merged them; ``sources`` the ``-e``
    arguments. Outside AWX any AWX identity variable is a claim to refuse; in an AWX job a
    variable whose value differs from the one AWX wrote is one.
    """
    job = find_awx_job(environ, sources)
    claims: List[str] = []
    given = {name: variables[name] for name in IDENTITY_VARS if variables.get(name) not in (None, "")}
    if job is None:
        identity = Identity(user=os_user, source="os", os_user=os_user)
        for name, value in given.items():
            claims.append("%s=%s claims an AWX identity, but this is no AWX job (the requester is the "
                          "controller's OS user %s)" % (name, escape(value), escape(os_user)))
    else:
        identity = Identity(user=job.launcher or "awx-job-%s" % job.job_id, source="awx", os_user=os_user,
                            awx_job_id=job.job_id, awx_launcher=job.launcher)
        for name, value in given.items():
            if str(value) != str(job.values.get(name, "")):
                claims.append("%s=%s overrides what AWX wrote for job %s (%s)" % (
                    name, escape(value), job.job_id, escape(job.values.get(name, "nothing"))))
    for name in TEAM_VARS:
        if variables.get(name) not in (None, "", [], ()):
            claims.append("%s=%s claims team membership; teams come from the policy's teams mapping"
                          % (name, escape(variables.get(name))))
    for origin, values in sources:
        for name in POLICY_VARS:
            if name in values:
                where = "the AWX job's extra vars" if job and origin == "@" + job.extravars_file else "-e " + escape(origin)
                claims.append("%s was given as an extra var (%s); the policy comes from the inventory only"
                              % (name, where))
    return identity, claims


# -------------------------------------------------------------------------------------- policy


def _names(policy: Mapping[str, Any], key: str) -> Tuple[str, ...]:
    value = policy.get(key)
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise PolicyError("rollback_policy.%s must be a list of names (got %s)" % (key, escape(value)))
    return tuple(value)


def load_policy(raw: Optional[Mapping[str, Any]]) -> Policy:
    """Return the policy from the inventory's ``rollback_policy`` mapping, defaults filled in."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(POLICY_DEFAULTS))
    if unknown:
        raise PolicyError("rollback_policy has unknown keys %s (known: %s)"
                          % (", ".join(escape(k) for k in unknown), ", ".join(sorted(POLICY_DEFAULTS))))
    merged = dict(POLICY_DEFAULTS, **{k: v for k, v in raw.items() if v is not None})
    teams = merged["teams"] or {}
    if not isinstance(teams, Mapping):
        raise PolicyError("rollback_policy.teams must map team names to lists of users (got %s)" % escape(teams))
    try:
        return Policy(
            allowed_users=_names(merged, "allowed_users"), allowed_awx_teams=_names(merged, "allowed_awx_teams"),
            teams={str(team): _names({"teams": members}, "teams") for team, members in teams.items()},
            approval_required=str(merged["approval_required"]).lower() in ("true", "yes", "1", "on"),
            approvers=_names(merged, "approvers"), confirmation_timeout=float(merged["confirmation_timeout"]),
            max_rollback_seconds=float(merged["max_rollback_seconds"]),
            approval_key_file=str(merged["approval_key_file"] or ""),
            approval_max_validity=int(merged["approval_max_validity"]),
            awx_approval_workflows=_names(merged, "awx_approval_workflows"))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PolicyError):
            raise
        raise PolicyError("rollback_policy has a value of the wrong type: %s" % exc) from exc


def teams_of(policy: Policy, user: str) -> List[str]:
    """Return the teams the policy's ``teams`` mapping puts ``user`` in."""
    return sorted(team for team, members in policy.teams.items() if user in members)


def requester_refusal(policy: Policy, identity: Identity) -> str:
    """Return why ``identity`` may not roll back under ``policy``, or '' when it may."""
    teams = teams_of(policy, identity.user)
    if policy.open or identity.user in policy.allowed_users or set(teams) & set(policy.allowed_awx_teams):
        return ""
    return ("user %s (teams: %s) may not roll back this environment; allowed users: %s, allowed AWX teams: %s"
            % (escape(identity.user), ", ".join(teams) or "none", ", ".join(policy.allowed_users) or "none",
               ", ".join(policy.allowed_awx_teams) or "none"))


def awx_workflow_approval(policy: Policy, identity: Identity, job: Optional[AwxJob]) -> str:
    """Return the approver text when this AWX job runs in a workflow the policy names, else ''."""
    if job is None or identity.source != "awx" or not policy.awx_approval_workflows:
        return ""
    name = str(job.values.get("awx_workflow_job_name") or job.values.get("tower_workflow_job_name") or "")
    if name and name in policy.awx_approval_workflows:
        return "AWX workflow approval node (workflow %s, workflow job %s)" % (
            name, job.values.get("awx_workflow_job_id", job.values.get("tower_workflow_job_id", "?")))
    return ""


# ------------------------------------------------------------------------------------ approvals


def load_key(path: str) -> bytes:
    """Return the approval key in ``path``: a regular file (no link), not readable by group or others."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise ApprovalError("The approval key %s cannot be read (%s). Create it once with "
                            "'gitops-rollback approve --new-key %s' and give it to the approvers only."
                            % (path, exc.strerror, path)) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ApprovalError("The approval key %s is not a regular file." % path)
        if info.st_mode & 0o077:
            raise ApprovalError("The approval key %s is readable or writable by group or others (mode %04o); "
                                "run: chmod 600 %s" % (path, stat.S_IMODE(info.st_mode), path))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            key = handle.read(4096).strip()
    finally:
        os.close(fd)
    if len(key) < MIN_KEY_LENGTH:
        raise ApprovalError("The approval key %s holds fewer than %d bytes; make a new one with "
                            "'gitops-rollback approve --new-key PATH'." % (path, MIN_KEY_LENGTH))
    return key


def new_key() -> bytes:
    """Return a fresh random approval key (64 hex digits)."""
    return binascii.hexlify(os.urandom(32))


def _payload(run_id: str, target: str, approver: str, expires: int) -> bytes:
    return json.dumps({"v": 1, "run_id": run_id, "target": target, "approver": approver, "expires": expires},
                      sort_keys=True, separators=(",", ":")).encode("ascii")


def _mac(key: bytes, payload: bytes) -> str:
    return hmac.new(key, _APPROVAL_DOMAIN + payload, hashlib.sha256).hexdigest()


def check_name(value: object, what: str = "approver") -> str:
    """Return ``value`` when it is a user name (letters, digits, ``._@-``, up to 64); raise ApprovalError."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ApprovalError("The %s %s is not a user name (letters, digits and . _ @ -, up to 64)."
                            % (what, escape(value)))
    return value


def sign_approval(key: bytes, run_id: str, target: str, approver: str, expires: int) -> str:
    """Return the approval record of ``approver`` for ``run_id`` rolling back to ``target`` until ``expires``."""
    try:
        check_label(run_id, what="run id")
    except LabelError as exc:
        raise ApprovalError(str(exc)) from exc
    if target_problem(target):
        raise ApprovalError("Target %s is refused: %s. A target is %s." % (escape(target), target_problem(target),
                                                                           TARGET_GRAMMAR))
    check_name(approver)
    payload = _payload(run_id, target, approver, int(expires))
    encoded = base64.urlsafe_b64encode(payload).decode("ascii")
    return "%s.%s.%s" % (APPROVAL_PREFIX, encoded, _mac(key, payload))


def parse_approval(token: object) -> Approval:
    """Return the fields of an approval record; raise ApprovalError when it is not one."""
    text = token.strip() if isinstance(token, str) else ""
    match = _TOKEN.fullmatch(text) if len(text) <= _MAX_TOKEN else None
    if match is None:
        raise ApprovalError("%s is not an approval record (made by 'gitops-rollback approve': gra1.<data>.<64 hex>)."
                            % escape(token))
    try:
        payload = base64.urlsafe_b64decode(match.group(1).encode("ascii"))
        data = json.loads(payload.decode("ascii"))
        fields = (data["run_id"], data["target"], data["approver"], data["expires"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ApprovalError("The approval record %s is damaged (%s)." % (escape(token), exc)) from exc
    if data.get("v") != 1 or not all(isinstance(f, str) for f in fields[:3]) or not isinstance(fields[3], int):
        raise ApprovalError("The approval record %s has an unknown format." % escape(token))
    return Approval(run_id=fields[0], target=fields[1], approver=fields[2], expires=fields[3],
                    signature=match.group(2), payload=payload)


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def check_approval(key: bytes, token: object, run_id: str, target: str, requester: str, policy: Policy,
                   now: Optional[float] = None) -> Approval:
    """Return the approval when ``token`` approves this run; raise ApprovalError saying why not.

    The signature is checked first (``hmac.compare_digest``); nothing in a record is believed before.
    """
    now = time.time() if now is None else now
    approval = parse_approval(token)
    if not hmac.compare_digest(_mac(key, approval.payload), approval.signature):
        raise ApprovalError("the approval signature does not match the approval key (forged, altered, or made "
                            "with another key)")
    if _payload(approval.run_id, approval.target, approval.approver, approval.expires) != approval.payload:
        raise ApprovalError("the approval record is not in canonical form")
    by = "the approval by %s" % escape(approval.approver)
    if approval.run_id != run_id:
        raise ApprovalError("%s is for run %s, not for this run %s" % (by, escape(approval.run_id), escape(run_id)))
    if approval.target != target:
        raise ApprovalError("%s is for a rollback to %s, not to %s" % (by, escape(approval.target), escape(target)))
    if approval.expires <= now:
        raise ApprovalError("%s expired at %s (now %s); ask for a new one" % (by, _when(approval.expires), _when(now)))
    if approval.expires - now > policy.approval_max_validity:
        raise ApprovalError("%s is valid until %s, longer than approval_max_validity (%d s) allows"
                            % (by, _when(approval.expires), policy.approval_max_validity))
    if approval.approver == requester:
        raise ApprovalError("%s is a self-approval: the requester may not approve their own run" % by)
    if approval.approver not in policy.approvers:
        raise ApprovalError("%s does not count: %s is not an approver (approvers: %s)"
                            % (by, escape(approval.approver), ", ".join(policy.approvers) or "none"))
    return approval


def approvals_in(text: str) -> List[str]:
    """Return the approval records of an approvals file (one a line; blank and ``#`` lines skipped)."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def first_valid(key: bytes, tokens: Sequence[str], run_id: str, target: str, requester: str, policy: Policy,
                now: Optional[float] = None) -> Tuple[Optional[Approval], List[str]]:
    """Return the first approval among ``tokens`` that approves this run, and why the others did not."""
    reasons: List[str] = []
    for token in tokens:
        try:
            return check_approval(key, token, run_id, target, requester, policy, now), reasons
        except ApprovalError as exc:
            reasons.append(str(exc))
    return None, reasons
