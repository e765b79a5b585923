# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One Terraform configuration directory with its workspace, backend and variables.

Backend configuration and variables are written to private JSON files in a temporary
directory (``-backend-config=<file>``, ``-var-file=<file>``), so no secret appears in an
argument list and map or list variables keep their types.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from ..common.errors import CommandError, LockHeldError, RollbackError, UnsafePathError
from ..common.fsutil import atomic_write_bytes
from ..common.nofollow import read_file, write_file
from ..common.process import run as run_process
from .engine import TfOutput, clean_output

_LOCK_ERROR = "Error acquiring the state lock"
#: The file in the data directory that says with which settings it was initialised (a digest only).
INIT_MARKER = "gitops-rollback-init.json"
MAX_JSON = 16 << 20  # bytes read at most of the JSON files in the data directory
#: The files of a configuration that ``terraform init`` reads (besides the backend settings).
_INIT_INPUTS = (".tf", ".tf.json", ".tofu", ".tofu.json", ".terraform.lock.hcl")


class TerraformError(RollbackError):
    """A Terraform command failed; ``details`` carries the command, rc and output."""


class InitError(TerraformError):
    """``terraform init`` failed: the configuration or its backend is not usable."""


@dataclass
class TfSettings:
    """The options that say which configuration, workspace and state to work on."""

    project_path: str
    workspace: str = "default"
    backend_config: Dict[str, Any] = field(default_factory=dict)
    backend_config_files: List[str] = field(default_factory=list)
    variables: Dict[str, Any] = field(default_factory=dict)
    variables_files: List[str] = field(default_factory=list)
    parallelism: Optional[int] = None
    state_lock_timeout: int = 60

    @classmethod
    def from_params(cls, params: Dict[str, Any]) -> "TfSettings":
        """Build settings from module parameters (see terraform_argument_spec)."""
        return cls(
            project_path=os.path.abspath(params["project_path"]),
            workspace=params.get("workspace") or "default",
            backend_config={**(params.get("backend_config") or {}), **(params.get("backend_config_secrets") or {})},
            backend_config_files=list(params.get("backend_config_files") or []),
            variables=dict(params.get("variables") or {}),
            variables_files=list(params.get("variables_files") or []),
            parallelism=params.get("parallelism"),
            state_lock_timeout=int(params.get("state_lock_timeout") or 0),
        )


class TfProject:
    """Runs Terraform commands on one configuration directory; use as a context manager."""

    def __init__(self, engine: Any, settings: TfSettings, config_dir: Optional[str] = None) -> None:
        self.engine = engine
        self.settings = settings
        self.config_dir = os.path.abspath(config_dir or settings.project_path)
        self.commands: List[str] = []
        self.scratch = tempfile.mkdtemp(prefix="gitops-tf-")
        self.env = {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "TF_WORKSPACE": settings.workspace,
                    "LC_ALL": "C"}
        self.backend_type: Optional[str] = None
        self.backend_settings: Dict[str, Any] = {}

    def __enter__(self) -> "TfProject":
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    # ------------------------------------------------------------ arguments
    def _json_file(self, name: str, content: Dict[str, Any]) -> str:
        path = os.path.join(self.scratch, name)
        atomic_write_bytes(path, json.dumps(content).encode("utf-8"), exact_mode=True)
        return path

    def _absolute(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(self.settings.project_path, path)

    def var_args(self) -> List[str]:
        """-var-file arguments: the given files (absolute), then the variables as .tfvars.json."""
        args = ["-var-file=%s" % self._absolute(p) for p in self.settings.variables_files]
        if self.settings.variables:
            args.append("-var-file=%s" % self._json_file("variables.tfvars.json", self.settings.variables))
        return args

    def lock_args(self) -> List[str]:
        """-lock-timeout for commands that take the state lock."""
        return ["-lock-timeout=%ds" % self.settings.state_lock_timeout]

    def parallelism_args(self) -> List[str]:
        """-parallelism when it was given."""
        return ["-parallelism=%d" % self.settings.parallelism] if self.settings.parallelism else []

    # ------------------------------------------------------------- commands
    def run(self, args: Sequence[str]) -> TfOutput:
        """Run a command, recording it in ``commands``."""
        self.commands.append(self.engine.describe(args, self.config_dir))
        return self.engine.run(args, self.config_dir, self.env)

    def fail(self, out: TfOutput, what: str, way_out: str, error: type = TerraformError) -> RollbackError:
        """Build the error of a failed command; a state lock failure becomes LockHeldError."""
        text = out.message()
        if _LOCK_ERROR in text:
            return LockHeldError(
                "The Terraform state of workspace %r (%s) is locked by someone else; waited %ds "
                "(state_lock_timeout). Holder: %s. Wait for that run to finish, then retry; use "
                "'terraform force-unlock' only if that run is gone."
                % (self.settings.workspace, self.describe_backend(), self.settings.state_lock_timeout,
                   self.lock_holder(text)),
                cmd=out.argv, rc=out.rc, stderr=text,
            )
        return error("%s failed in %s (rc=%s): %s. %s" % (what, self.config_dir, out.rc, text or "no output", way_out),
                     cmd=out.argv, rc=out.rc, stderr=text)

    def init(self) -> None:
        """terraform init for the workspace and backend (reconfigured from the given settings).

        Skipped when this directory was initialised with the same settings and nothing Terraform reads
        at init has changed since (:func:`init_fingerprint`): a rollback's preview, safety snapshot,
        revert and verification of one project then initialise it once, not four times.
        """
        if not os.path.isdir(self.config_dir):
            raise InitError("Terraform configuration directory %s does not exist. Give project_path of the "
                            "directory holding the .tf files." % self.config_dir)
        marker = os.path.join(self.data_dir(), INIT_MARKER)
        backend_files = [self._absolute(p) for p in self.settings.backend_config_files]
        if read_marker(marker) == init_fingerprint(self, backend_files):
            self._read_backend()
            return
        args = ["init", "-input=false", "-no-color", "-reconfigure"]
        args += ["-backend-config=%s" % path for path in backend_files]
        if self.settings.backend_config:
            args.append("-backend-config=%s" % self._json_file("backend.json", self.settings.backend_config))
        out = self.run(args)
        if out.rc != 0:
            raise self.fail(out, "terraform init", "Fix the configuration or the backend settings "
                            "(backend_config, backend_config_files) so that 'terraform init' succeeds; "
                            "nothing was changed.", InitError)
        self._read_backend()
        try:
            write_file(marker, json.dumps({"fingerprint": init_fingerprint(self, backend_files)}).encode(), 0o600,
                       create_dirs=True)
        except (OSError, UnsafePathError):
            pass  # only the next init is not skipped

    def data_dir(self) -> str:
        """Terraform's data directory of this configuration (TF_DATA_DIR, else .terraform)."""
        return os.environ.get("TF_DATA_DIR") or os.path.join(self.config_dir, ".terraform")

    def _read_backend(self) -> None:
        """Learn the initialised backend's type and settings from the data directory."""
        try:
            backend = json.loads(read_file(os.path.join(self.data_dir(), "terraform.tfstate"), MAX_JSON)).get("backend") or {}
        except (OSError, ValueError, AttributeError, UnsafePathError):
            backend = {}
        self.backend_type = backend.get("type") or "local"
        self.backend_settings = {k: v for k, v in (backend.get("config") or {}).items() if v is not None}

    def local_state_path(self) -> Optional[str]:
        """The absolute state file of the local backend for this workspace, else None."""
        if self.backend_type != "local":
            return None
        path = self.backend_settings.get("path")
        if self.settings.workspace == "default":
            return os.path.join(self.config_dir, path or "terraform.tfstate")
        base = self.backend_settings.get("workspace_dir") or "terraform.tfstate.d"
        return os.path.join(self.config_dir, base, self.settings.workspace, path or "terraform.tfstate")

    def describe_backend(self) -> str:
        """Name the backend (and, for the local one, the state file)."""
        local = self.local_state_path()
        return "local backend, %s" % local if local else "%s backend" % (self.backend_type or "unknown")

    def pull(self) -> bytes:
        """terraform state pull: the current state bytes (empty when the workspace has none)."""
        out = self.run(["state", "pull", "-no-color"])
        if out.rc != 0:
            raise self.fail(out, "terraform state pull", "Check that the backend is reachable.")
        return out.stdout.encode("utf-8")

    def push(self, state_file: str, force: bool) -> None:
        """terraform state push under the state lock (with -force only when asked)."""
        args = ["state", "push", "-no-color", *self.lock_args()]
        if force:
            args.append("-force")
        out = self.run(args + [state_file])
        if out.rc != 0:
            raise self.fail(out, "terraform state push", "The current state was not changed.")

    def version(self) -> Optional[str]:
        """The Terraform version of the engine, or None if it cannot tell."""
        out = self.run(["version", "-json"])
        try:
            return json.loads(out.stdout).get("terraform_version")
        except ValueError:
            return None

    def plan(self, extra: Sequence[str] = ()) -> dict:
        """terraform plan -detailed-exitcode -json; return the change summary and the planned changes."""
        args = ["plan", "-input=false", "-no-color", "-detailed-exitcode", "-json", *self.lock_args(),
                *self.parallelism_args(), *self.var_args(), *extra]
        out = self.run(args)
        if out.rc not in (0, 2):
            raise self.fail(_with_diagnostics(out), "terraform plan", "Fix the configuration or variables.")
        return summarize_plan(out.stdout, out.rc)

    def apply_plan(self, plan_file: str, extra: Sequence[str] = ()) -> dict:
        """terraform apply of a saved plan; return the change summary."""
        args = ["apply", "-input=false", "-no-color", "-json", "-auto-approve", *self.lock_args(),
                *self.parallelism_args(), *extra, plan_file]
        out = self.run(args)
        if out.rc != 0:
            raise self.fail(_with_diagnostics(out), "terraform apply", "Inspect the state with operation=verify; "
                            "a safety snapshot was taken before the apply.")
        return summarize_plan(out.stdout, 2)

    # ----------------------------------------------------------- lock holder
    def lock_holder(self, text: str) -> str:
        """Name whoever holds the state lock, as precisely as the backend allows."""
        if self.backend_type == "pg":
            return pg_lock_holder({**self.backend_settings, **self.settings.backend_config}, self.settings.workspace)
        info = re.search(r"Lock Info:\s*(.*?)(?:\n\s*\n|Terraform acquires|$)", text, re.S)
        if not info:
            return "not reported by the backend"
        fields = dict(re.findall(r"^\s*(ID|Path|Operation|Who|Version|Created):\s*(.*)$", info.group(1), re.M))
        return ", ".join("%s %s" % (key.lower(), value) for key, value in fields.items() if value)


def _file_digest(path: str) -> str:
    """Return the SHA-256 of a configuration file's content ("missing", or "not a regular file").

    Terraform reads its configuration following links, so the fingerprint does too; the file is opened
    without blocking and read only when ``fstat`` shows a regular file, in chunks: a FIFO or a link to a
    device planted in the configuration directory never hangs the module or fills its memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return "missing"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "not a regular file"
        digest = hashlib.sha256()
        for chunk in iter(lambda: os.read(fd, 1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def init_fingerprint(project: "TfProject", backend_files: Sequence[str]) -> str:
    """A digest of everything ``terraform init`` depends on for this project.

    The engine, the workspace, the backend settings and files, every configuration file (and the
    dependency lock file) under the configuration directory, and what the data directory holds
    (names, sizes and times: providers or modules removed or changed there need a new init).
    """
    parts: List[Any] = [project.engine.describe(["init"], project.config_dir), project.settings.workspace,
                        json.dumps(project.settings.backend_config, sort_keys=True, default=str),
                        [(path, _file_digest(path)) for path in backend_files]]
    data_dir = project.data_dir()
    for top, dirs, files in os.walk(project.config_dir):
        dirs[:] = sorted(d for d in dirs if os.path.join(top, d) != data_dir and d not in (".git", ".terraform"))
        parts.extend((os.path.relpath(os.path.join(top, name), project.config_dir), _file_digest(os.path.join(top, name)))
                     for name in sorted(files) if name.endswith(_INIT_INPUTS))
    for top, dirs, files in os.walk(data_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(top, name)
            if name != INIT_MARKER:
                info = os.lstat(path)
                parts.append((os.path.relpath(path, data_dir), info.st_size, info.st_mtime_ns))
    return hashlib.sha256(json.dumps(parts, default=str).encode("utf-8")).hexdigest()


def read_marker(path: str) -> Optional[str]:
    """The fingerprint recorded by the last init here, or None."""
    try:
        return json.loads(read_file(path, MAX_JSON)).get("fingerprint")
    except (OSError, ValueError, AttributeError, UnsafePathError):
        return None


def _with_diagnostics(out: TfOutput) -> TfOutput:
    """With -json, Terraform prints its errors as JSON lines on stdout: bring them to stderr."""
    messages = []
    for line in out.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("@level") == "error":
            diag = event.get("diagnostic") or {}
            messages.append("%s %s" % (diag.get("summary") or event.get("@message", ""), diag.get("detail") or ""))
    if messages:
        return TfOutput(out.argv, out.rc, out.stdout, "\n".join(messages) + "\n" + out.stderr)
    return out


def summarize_plan(stdout: str, rc: int) -> dict:
    """Read Terraform's JSON lines: the change summary, planned resource changes and drift."""
    summary = {"add": 0, "change": 0, "destroy": 0}
    changes: List[dict] = []
    drift: List[dict] = []
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "change_summary":
            found = event.get("changes") or {}
            summary = {"add": found.get("add", 0), "change": found.get("change", 0),
                       "destroy": found.get("remove", 0)}
        elif kind in ("planned_change", "resource_drift"):
            change = event.get("change") or {}
            item = {"address": (change.get("resource") or {}).get("addr"), "action": change.get("action")}
            (changes if kind == "planned_change" else drift).append(item)
    return {"changes_pending": rc == 2, "summary": summary, "changes": changes, "drift": drift}


def pg_lock_holder(backend_config: Dict[str, Any], workspace: str) -> str:
    """Ask PostgreSQL which session holds the pg backend's advisory lock on the workspace row."""
    conn = backend_config.get("conn_str") or os.environ.get("PG_CONN_STR")
    psql = shutil.which("psql")
    if not conn or not psql:
        return "a PostgreSQL session (install psql and give backend_config.conn_str to name it)"
    schema = backend_config.get("schema_name") or "terraform_remote_state"
    sql = (
        "SELECT a.pid, a.usename, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'), "
        "to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = "
        "(SELECT id FROM %s.states WHERE name = :'ws');\n" % _pg_ident(schema)
    )
    try:
        done = run_process([psql, "-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", "-v", "ws=%s" % workspace,
                            "-d", conn], "psql (lock holder)", stdin=sql.encode("utf-8"), secrets=[conn])
    except CommandError as exc:
        return "a PostgreSQL session (could not ask the server: %s)" % exc
    rows = [row.split("|") for row in done.stdout.decode("utf-8", "replace").splitlines() if row.strip()]
    if not rows:
        return "a PostgreSQL session that has released it by now"
    return "; ".join("PostgreSQL backend pid %s, user %s, application %r, client %s, connected since %s"
                     % tuple(row[:5]) for row in rows if len(row) >= 5)


def _pg_ident(name: str) -> str:
    return '"%s"' % name.replace('"', '""')


__all__ = ["TfProject", "TfSettings", "TerraformError", "InitError", "summarize_plan", "clean_output"]
