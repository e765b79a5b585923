# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running external commands with argument lists; the errors of failed and missing programs (secrets scrubbed)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .errors import CommandError


@dataclass
class Completed:
    """The outcome of a command that succeeded."""

    argv: List[str]
    rc: int
    stdout: bytes
    stderr: bytes


def command_env(extra: Optional[Dict[str, str]]) -> Dict[str, str]:
    """Return the environment of a command: this one, the C locale, then ``extra``."""
    env = dict(os.environ)
    env.update({"LC_ALL": "C", "LANG": "C"})
    env.update(extra or {})
    return env


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


def command_error(argv: Sequence[str], rc: int, stderr: bytes, what: str, secrets: Sequence[str] = ()) -> CommandError:
    """Build the error of a failed command, with the password (if any) scrubbed out."""
    err = _scrub(stderr.decode("utf-8", "replace").strip(), secrets)
    cmd = _scrub(" ".join(argv), secrets)
    return CommandError("%s failed (rc=%s): %s [command: %s]" % (what, rc, err or "no error output", cmd),
                        cmd=cmd, rc=rc, stderr=err)


def run(argv: Sequence[str], what: str, env: Optional[Dict[str, str]] = None, stdin: Optional[bytes] = None,
        stdout_path: Optional[str] = None, secrets: Sequence[str] = (), check: bool = True,
        cwd: Optional[str] = None) -> Completed:
    """Run one command (no shell); raise CommandError naming ``what`` when it fails."""
    out_handle = open(stdout_path, "xb") if stdout_path else None
    try:
        proc = subprocess.run(
            list(argv), input=stdin, stdout=out_handle or subprocess.PIPE, stderr=subprocess.PIPE,
            env=command_env(env), cwd=cwd, check=False,
        )
    except FileNotFoundError as exc:
        raise not_installed(what, argv[0], exc) from exc
    finally:
        if out_handle:
            out_handle.close()
    if check and proc.returncode != 0:
        raise command_error(argv, proc.returncode, proc.stderr, what, secrets)
    return Completed(list(argv), proc.returncode, proc.stdout or b"", proc.stderr)


def not_installed(what: str, program: str, exc: OSError) -> CommandError:
    """Build the error of a program that could not be started."""
    return CommandError("%s: the program %s is not installed or not on PATH." % (what, program),
                        cmd=program, rc=None, stderr=str(exc))
