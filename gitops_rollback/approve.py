"""``gitops-rollback approve``: the record an approver makes to let one rollback run go on.

    gitops-rollback approve --new-key /etc/gitops-rollback/approval.key        # once, by an admin
    gitops-rollback approve rollback-20261202T190000Z-4242 --target v2.3.0 \\
        --key-file /etc/gitops-rollback/approval.key --approvals-file /srv/gitops-rollback/approvals
    gitops-rollback approve rollback-20261202T190000Z-4242 --target v2.3.0 --state postgresql://...  # shared

The record is an HMAC-SHA256 over run id, target, approver and expiry under the approval key;
the approver is the OS user running this command, never an option. The signing and checking
live in the collection's ``plugins/module_utils/controller/policy.py`` (the rollback role checks with it).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from .collection import import_module_util

DEFAULT_KEY_FILE = "~/.config/gitops-rollback/approval.key"
DEFAULT_APPROVALS_FILE = "~/.local/state/gitops-rollback/approvals"
_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ApproveError(RuntimeError):
    """The approval could not be made; the message says why and what to do."""


def load_policy_module(collections_path: Optional[str] = None) -> ModuleType:
    """Import the collection's ``controller.policy`` module_util (with the ``common.labels`` it imports)."""
    return import_module_util("controller.policy", collections_path)


def parse_duration(text: str) -> int:
    """Return the seconds of ``900``, ``15m``, ``2h`` or ``1d``."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ApproveError(f"--expires-in {text!r}: give a positive duration such as 900, 15m, 2h or 1d.")
    return int(match.group(1)) * _UNITS[match.group(2)]


def write_new_key(policy: Any, path: Path) -> None:
    """Create ``path`` holding a fresh approval key, mode 0600; never replace an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError as exc:
        raise ApproveError(f"{path} exists; an approval key is never overwritten (remove it first to rotate).") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(policy.new_key() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def append_record(path: Path, record: str) -> None:
    """Append ``record`` as one line to the approvals file (one write; no link followed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        os.write(fd, (record + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def store_record(record: str, state_url: str, approvals_file: str, collections_path: Optional[str]) -> str:
    """Put ``record`` where the waiting rollback reads it: the shared state when set, else the file."""
    if not state_url:
        append_record(Path(os.path.expanduser(approvals_file)), record)
        return f"appended to {approvals_file}"
    state_pg = import_module_util("controller.state_pg", collections_path)
    try:
        with state_pg.PgState(state_url) as state:
            state.add_approval(record)
    except state_pg.RollbackError as exc:
        raise ApproveError(str(exc)) from exc
    return f"stored in the shared state {state_pg.redacted(state_url)}"


def cmd_approve(args: argparse.Namespace) -> int:
    """Make an approval record (or, with --new-key, an approval key)."""
    policy = load_policy_module(args.collections_path)
    if args.new_key:
        write_new_key(policy, Path(args.new_key).expanduser())
        print(f"wrote a new approval key to {args.new_key} (mode 0600): give it to the approvers and to the "
              "controller account that verifies (policy approval_key_file), nobody else", file=sys.stderr)
        return 0
    if not args.run_id or not args.target:
        raise ApproveError("approve needs the run id and --target (both printed by the waiting rollback).")
    key_file = os.path.expanduser(args.key_file or os.environ.get("GITOPS_ROLLBACK_APPROVAL_KEY_FILE")
                                  or DEFAULT_KEY_FILE)
    try:
        key = policy.load_key(key_file)
        expires = int(time.time()) + parse_duration(args.expires_in)
        record = policy.sign_approval(key, args.run_id, args.target, policy.os_user_name(), expires)
    except policy.ApprovalError as exc:
        raise ApproveError(str(exc)) from exc
    state_url = args.state or os.environ.get("GITOPS_ROLLBACK_STATE", "")
    if not args.print_only:
        stored_in = store_record(record, state_url, args.approvals_file, args.collections_path)
    print(record)
    print(f"approved run {args.run_id} to {args.target} as {policy.os_user_name()} until "
          f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expires))}"
          + ("" if args.print_only else f" ({stored_in})"), file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    """Add the ``approve`` subcommand to the ``gitops-rollback`` parser."""
    approve = sub.add_parser("approve", help="approve one rollback run (a signed record), or make the approval key",
                             description=__doc__.split("\n\n", maxsplit=1)[0])
    approve.add_argument("run_id", nargs="?", help="the run id the waiting rollback printed")
    approve.add_argument("--target", help="what the run rolls back to (tag or checkpoint id)")
    approve.add_argument("--expires-in", default="15m", help="validity of the approval (default 15m; 900, 2h, 1d)")
    approve.add_argument("--key-file", help="approval key (default $GITOPS_ROLLBACK_APPROVAL_KEY_FILE or "
                         f"{DEFAULT_KEY_FILE})")
    approve.add_argument("--approvals-file", default=DEFAULT_APPROVALS_FILE,
                         help=f"file the rollback reads approvals from (default {DEFAULT_APPROVALS_FILE})")
    approve.add_argument("--state", metavar="URL",
                         help="the shared state (postgresql://...) the rollback reads approvals from, as the "
                              "inventory's gitops_rollback_state (default $GITOPS_ROLLBACK_STATE)")
    approve.add_argument("--print-only", action="store_true",
                         help="print the record (for an AWX survey or -e rollback_approval=...), append nothing")
    approve.add_argument("--new-key", metavar="PATH", help="create a new approval key file (mode 0600) and exit")
    approve.add_argument("--collections-path", help="collections path holding gitops.rollback")
    approve.set_defaults(func=cmd_approve)
