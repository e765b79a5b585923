"""Run the real ``ansible-playbook`` / ``ansible`` against this collection.

:func:`collections_path` exposes the repository as ``gitops.rollback``;
:func:`run_playbook` runs a playbook and returns a :class:`Result` holding
rc, stdout, stderr and structured per-task events (written by a small
notification callback generated at run time, next to stdout's default
callback).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import zygote

NAMESPACE, NAME = "gitops", "rollback"

NO_ANSIBLE_ENV = "GITOPS_HARNESS_NO_ANSIBLE"
"""Set (to the test's id) while a test marked ``component`` runs: the harness then refuses to start Ansible."""
MODULE_ON_OTHER_HOSTS = frozenset({"audit"})
"""Modules whose action plugin runs the module's own code in the controller's process on a local connection and
the module anywhere else: :func:`run_module_process` runs them as a host other than the controller would."""
RUN_LOG_ENV = "GITOPS_HARNESS_RUN_LOG"
"""When set, a file each ansible-playbook / ansible run appends a line to: test, program, seconds."""
PRELOAD_ENV = "GITOPS_HARNESS_PRELOAD"
"""``0`` turns off what the harness's callback does before Ansible forks its workers, to measure what
it saves: import the collection's plugins (about 40 % less controller CPU per run) and share one
AnsiballZ cache among the runs (:func:`_share_module_cache`)."""

_CALLBACK_NAME = "gitops_harness_events"
_CALLBACK_SOURCE = '''\
"""Writes one JSON line per task result to $GITOPS_HARNESS_EVENTS (harness-generated)."""
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: gitops_harness_events
type: notification
short_description: JSON lines of task results for the test harness
description: [Writes task results and stats to the file named by GITOPS_HARNESS_EVENTS.]
"""

CENSORED = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"


def _preload_collection_plugins():
    """Import the collection's filter, test, lookup and action plugins in the controller process.

    Ansible forks a worker per task and host; a plugin the worker loads first (a filter named in a
    role's Jinja, an action plugin) is imported again in every worker, with the module_utils it
    imports: a third of the controller's CPU in a rollback run. Imported here, before the forks,
    each worker finds them in sys.modules (the plugin loader looks there first). The same code
    runs; an import error is left for the plugin loader to report where the plugin is used.
    """
    import importlib
    import pkgutil

    for kind in ("filter", "test", "lookup", "action"):
        try:
            package = importlib.import_module("ansible_collections.gitops.rollback.plugins." + kind)
        except Exception:  # pylint: disable=broad-except
            continue
        for info in pkgutil.iter_modules(package.__path__):
            try:
                importlib.import_module(package.__name__ + "." + info.name)
            except Exception:  # pylint: disable=broad-except
                pass


def _share_module_cache():
    """Let this run's AnsiballZ cache be the directory $GITOPS_HARNESS_ANSIBALLZ_CACHE names.

    Ansible builds each module's payload (the module and the module_utils it imports, found by
    parsing them) once per run, in a cache under its per-run temporary directory. The harness
    names a directory per collection tree and ansible-core version (:func:`ansible_env`), so
    later runs of the session reuse the payloads the first run built.
    """
    shared = os.environ.get("GITOPS_HARNESS_ANSIBALLZ_CACHE")
    if not shared:
        return
    from ansible import constants as C  # pylint: disable=import-outside-toplevel

    link = os.path.join(C.DEFAULT_LOCAL_TMP, "ansiballz_cache")  # the run's directory, made on first use
    if not os.path.lexists(link):
        os.makedirs(shared, exist_ok=True)
        os.symlink(shared, link)


def _with_bytecode(zip_data):
    """The base64 AnsiballZ zip ``zip_data`` with each ``.py`` file's bytecode beside it (``.pyc``, unchecked hash).

    A module process imports its module_utils from the zip; Python's zipimport takes a ``.pyc`` found beside
    the ``.py`` (and falls back to the source when its magic number is another Python's), so the host does not
    compile Ansible's and the collection's module code from source at every task. The code is the same, compiled
    from the same source by the same Python as the hosts' (the harness's hosts run ``sys.executable``).
    """
    import base64
    import importlib.util
    import io
    import zipfile
    from importlib import _bootstrap_external

    source = zipfile.ZipFile(io.BytesIO(base64.b64decode(zip_data)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as payload:
        for info in source.infolist():
            data = source.read(info)
            payload.writestr(info, data)
            if info.filename.endswith(".py"):
                code = compile(data, info.filename, "exec", dont_inherit=True)
                pyc = _bootstrap_external._code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False)
                entry = zipfile.ZipInfo(info.filename + "c", info.date_time)
                entry.compress_type = zipfile.ZIP_DEFLATED
                payload.writestr(entry, bytes(pyc))
    return base64.b64encode(out.getvalue())


def _cache_payloads_with_bytecode():
    """Payloads written to the AnsiballZ cache carry bytecode (:func:`_with_bytecode`); the runs that load
    them from the shared cache send it. Left as it is when anything fails (the source alone still runs)."""
    import dataclasses

    try:
        from ansible.executor import module_common
        cached = module_common._CachedModule
        dump = cached.dump
    except (ImportError, AttributeError):
        return
    if getattr(dump, "gitops_harness", False):
        return

    def dump_with_bytecode(self, path):
        try:
            self = dataclasses.replace(self, zip_data=_with_bytecode(self.zip_data))
        except Exception:  # pylint: disable=broad-except
            pass
        dump(self, path)

    dump_with_bytecode.gitops_harness = True
    cached.dump = dump_with_bytecode


def _freeze_heap():
    """Move the controller's objects out of the garbage collector's reach before the play forks its workers.

    Ansible forks a worker per task and host; a collection in a worker walks every object it inherited and so
    copies the pages they are on, and each collection in the controller walks them again. Frozen objects are not
    walked; they stay alive for the rest of the run. A release test's Ansible runs: 9.5 -> 8.6 CPU-s (controller
    -10 %, workers -6 %; GITOPS_HARNESS_GC_FREEZE=0 turns it off). Disabling the collector gained nothing more.
    """
    import gc

    gc.freeze()


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "gitops_harness_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get("GITOPS_HARNESS_EVENTS")
        self._play = None
        if os.environ.get("GITOPS_HARNESS_PRELOAD", "1") == "1":
            _preload_collection_plugins()
            _share_module_cache()
            if os.environ.get("GITOPS_HARNESS_BYTECODE", "1") == "1":
                _cache_payloads_with_bytecode()

    def _emit(self, event):
        if self._path:
            with open(self._path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(event, default=str, sort_keys=True) + "\\n")

    def _result(self, status, result):
        data = getattr(result, "result", None)
        if data is None:
            data = result._result
        data = dict(data)
        if data.get("_ansible_no_log"):
            data = {k: data[k] for k in ("changed", "failed", "skipped", "unreachable") if k in data}
            data["censored"] = CENSORED
        data = {k: v for k, v in data.items() if not k.startswith("_ansible_")}
        task = result._task
        self._emit({
            "event": "result", "status": status, "host": result._host.get_name(),
            "task": task.get_name(), "action": task.action, "play": self._play,
            "changed": bool(data.get("changed", False)), "result": data,
        })

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()
        if os.environ.get("GITOPS_HARNESS_GC_FREEZE", "1") == "1":
            _freeze_heap()

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("ignored" if ignore_errors else "failed", result)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_runner_item_on_failed(self, result):
        pass

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        self._emit({"event": "stats", "stats": {h: stats.summarize(h) for h in hosts}})
'''


def repo_root() -> Path:
    """The repository root, which is the collection root (gitops.rollback)."""
    return Path(__file__).resolve().parents[2]


def _existing_collections_path() -> Path | None:
    for entry in os.environ.get("ANSIBLE_COLLECTIONS_PATH", os.environ.get("ANSIBLE_COLLECTIONS_PATHS", "")).split(
            os.pathsep):
        if not entry:
            continue
        base = Path(entry).expanduser()
        if base.name == "ansible_collections":
            base = base.parent
        if (base / "ansible_collections" / NAMESPACE / NAME).is_dir():
            return base
    return None


def collections_path(tmpdir: str | os.PathLike[str]) -> Path:
    """Directory to use as ANSIBLE_COLLECTIONS_PATH so that ``gitops.rollback`` is this repository.

    Reuses the environment's ANSIBLE_COLLECTIONS_PATH when it already contains
    gitops/rollback; otherwise creates
    ``tmpdir/ansible_collections/gitops/rollback`` -> repository root (symlink).
    """
    existing = _existing_collections_path()
    if existing is not None:
        return existing
    base = Path(tmpdir).resolve()
    link = base / "ansible_collections" / NAMESPACE / NAME
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() == repo_root():
        return base
    if link.is_symlink() or link.exists():
        raise FileExistsError(f"{link} exists and is not a symlink to {repo_root()}")
    link.symlink_to(repo_root(), target_is_directory=True)
    return base


@dataclass
class Result:
    """Outcome of an ``ansible-playbook`` / ``ansible`` run."""

    rc: int
    stdout: str
    stderr: str
    duration: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    """Per-task results: event, status (ok/failed/ignored/skipped/unreachable), host, task, action, result."""
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    """Play recap per host: ok, changed, failures, unreachable, skipped, rescued, ignored."""
    cmd: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def results(self, task: str | None = None, host: str | None = None,
                status: str | None = None) -> list[dict[str, Any]]:
        """Events filtered by task name, host and status."""
        return [e for e in self.events
                if (task is None or e["task"] == task) and (host is None or e["host"] == host)
                and (status is None or e["status"] == status)]

    def result(self, task: str, host: str) -> dict[str, Any]:
        """The (last) module result of ``task`` on ``host``; KeyError if absent."""
        found = self.results(task, host)
        if not found:
            raise KeyError(f"no result for task {task!r} on {host!r}\n{self}")
        return found[-1]["result"]

    def __str__(self) -> str:
        return f"rc={self.rc} cmd={self.cmd}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def ansible_bin(name: str) -> str:
    """``ansible-playbook`` / ``ansible`` from sys.executable's bin dir, else PATH."""
    local = Path(sys.executable).parent / name
    if os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} nor on PATH (pip install ansible-core)")
    return found


def _callback_dir() -> Path:
    """A directory holding the callback, named after its source: runs of other checkouts (another
    version of the harness) at the same time keep theirs."""
    digest = hashlib.sha256(_CALLBACK_SOURCE.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"gitops-harness-callbacks-{os.getuid()}-{digest}"
    path.mkdir(exist_ok=True)
    plugin = path / f"{_CALLBACK_NAME}.py"
    if not plugin.exists() or plugin.read_text() != _CALLBACK_SOURCE:
        tmp = path / f".{_CALLBACK_NAME}.{os.getpid()}.tmp"
        tmp.write_text(_CALLBACK_SOURCE)
        tmp.replace(plugin)
    return path


_default_collections: Path | None = None


def _default_collections_path() -> Path:
    global _default_collections
    if _default_collections is None:
        existing = _existing_collections_path()
        if existing is not None:
            _default_collections = existing
        else:
            tmp = tempfile.mkdtemp(prefix="gitops-harness-coll-")
            atexit.register(shutil.rmtree, tmp, True)  # only symlinks inside
            _default_collections = collections_path(tmp)
    return _default_collections


def callback_env(collections_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The environment that enables the harness's callback (task results for the tests, and the
    plugins imported and module payloads shared before Ansible forks its workers) for runs against
    ``collections_dir``; also for runs the harness does not start (ansible-runner jobs)."""
    return {"ANSIBLE_CALLBACK_PLUGINS": str(_callback_dir()), "ANSIBLE_CALLBACKS_ENABLED": _CALLBACK_NAME,
            "GITOPS_HARNESS_ANSIBALLZ_CACHE": str(_module_cache_dir(str(collections_dir)))}


def ansible_env(collections_dir: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a real ansible run against this collection."""
    base = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    base["PATH"] = bin_dir + os.pathsep + base.get("PATH", "")
    collections = str(collections_dir or _default_collections_path())
    base.update({
        "ANSIBLE_COLLECTIONS_PATH": collections,
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_SSH_RETRIES": "0",
        # Ansible's default ssh_args without -C: every task sends its module (0.5-2 MB with the bytecode) through
        # the connection; compressing it on a loopback address gains nothing and costs ssh and sshd about 40 ms
        # of CPU per 1.1 MB module (57 ms with -C, 17 ms without, measured through a ControlMaster).
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s",
        "ANSIBLE_TIMEOUT": "15",
        "ANSIBLE_FORKS": "10",
        **callback_env(collections),
    })
    # A module run over a pipelined local connection reads its payload as a script from standard input: with
    # PYTHONUNBUFFERED set, one read() per byte (about 0.2 s of system CPU for a 500 KB payload).
    base.pop("PYTHONUNBUFFERED", None)
    base.update(env or {})
    enabled = [c for c in base["ANSIBLE_CALLBACKS_ENABLED"].split(",") if c.strip()]
    if _CALLBACK_NAME not in enabled:  # callers may enable more callbacks; keep ours
        enabled.append(_CALLBACK_NAME)
    base["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(enabled)
    return base


def _module_cache_dir(collections: str) -> Path:
    """The AnsiballZ cache the runs against ``collections`` share (:func:`_share_module_cache`): named after
    the ansible-core version, the collections path and every file of the collection's plugins (path, size
    and modification time), so a changed module or module_utils gets a new one."""
    from ansible.release import __version__  # pylint: disable=import-outside-toplevel

    bytecode = os.environ.get("GITOPS_HARNESS_BYTECODE", "1")  # payloads with or without bytecode: not mixed
    digest = hashlib.sha256(f"{__version__}\0{sys.executable}\0{collections}\0{bytecode}".encode())
    plugins = Path(collections) / "ansible_collections" / NAMESPACE / NAME / "plugins"
    for path in sorted(plugins.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            info = path.stat()
            digest.update(f"\0{path}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    return Path(tempfile.gettempdir()) / f"gitops-harness-ansiballz-{os.getuid()}-{digest.hexdigest()[:16]}"


def _log_run(cmd: list[str], seconds: float) -> None:
    """Append one line (test, program, seconds) to $GITOPS_HARNESS_RUN_LOG when set: how many Ansible runs a suite makes."""
    log = os.environ.get(RUN_LOG_ENV)
    if log:
        test = os.environ.get("PYTEST_CURRENT_TEST", "-").rsplit(" ", 1)[0]
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{test}\t{Path(cmd[0]).name}\t{seconds:.1f}\n")


def _run(cmd: list[str], env: dict[str, str], cwd: str | os.PathLike[str] | None, timeout: float) -> Result:
    if os.environ.get(NO_ANSIBLE_ENV):
        raise RuntimeError(f"{os.environ[NO_ANSIBLE_ENV]} runs {Path(cmd[0]).name} but is not marked e2e: ask for the "
                           "run_playbook fixture or mark the module with pytestmark = pytest.mark.e2e")
    fd, events_path = tempfile.mkstemp(prefix="gitops-harness-events-", suffix=".jsonl")
    os.close(fd)
    env = {**env, "GITOPS_HARNESS_EVENTS": events_path}
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        lines = Path(events_path).read_text().splitlines()
    finally:
        os.unlink(events_path)
    _log_run(cmd, time.monotonic() - start)
    events = [json.loads(line) for line in lines if line.strip()]
    stats = next((e["stats"] for e in reversed(events) if e["event"] == "stats"), {})
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start,
                  [e for e in events if e["event"] == "result"], stats, cmd)


def _playbook_file(playbook: str | os.PathLike[str] | Sequence[Mapping[str, Any]], workdir: Path) -> Path:
    if isinstance(playbook, (str, os.PathLike)) and "\n" not in str(playbook):
        return Path(playbook)
    workdir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="playbook-", suffix=".yml", dir=workdir)
    with os.fdopen(fd, "w") as fh:
        fh.write(playbook if isinstance(playbook, str) else json.dumps(list(playbook), indent=2))
    return Path(name)


def run_playbook(
    playbook: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    inventory: str | os.PathLike[str],
    extra_vars: Mapping[str, Any] | None = None,
    check: bool = False,
    diff: bool = False,
    env: Mapping[str, str] | None = None,
    *,
    collections_dir: str | os.PathLike[str] | None = None,
    limit: str | None = None,
    tags: Iterable[str] | None = None,
    verbosity: int = 0,
    extra_args: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 600,
) -> Result:
    """Run the real ``ansible-playbook``.

    ``playbook`` is a path, YAML text (contains a newline) or a list of plays
    (written to a temporary file under ``cwd`` or the inventory's directory).
    """
    run_dir = Path(cwd) if cwd else Path(inventory).resolve().parent
    book = _playbook_file(playbook, run_dir)
    cmd = [ansible_bin("ansible-playbook"), "-i", str(inventory), str(book)]
    if extra_vars:
        cmd += ["-e", json.dumps(dict(extra_vars), default=str)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if limit:
        cmd += ["--limit", limit]
    if tags:
        cmd += ["--tags", ",".join(tags)]
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    cmd += list(extra_args)
    return _run(cmd, ansible_env(collections_dir, env), cwd, timeout)


def run_playbook_json(playbook: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
                      inventory: str | os.PathLike[str], extra_vars: Mapping[str, Any] | None = None,
                      check: bool = False, diff: bool = False, env: Mapping[str, str] | None = None,
                      **kwargs: Any) -> Result:
    """:func:`run_playbook` with ``-v`` and JSON-formatted results on stdout
    (ANSIBLE_CALLBACK_RESULT_FORMAT=json); structured results are in ``Result.events``."""
    env = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json", **(env or {})}
    kwargs.setdefault("verbosity", 1)
    return run_playbook(playbook, inventory, extra_vars, check, diff, env, **kwargs)


_MODULE_MAIN = """\
import runpy, sys
sys.path.insert(0, sys.argv.pop(1))  # the collections path; not PYTHONPATH, so processes the module starts do not inherit it
runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
"""


def run_module_process(
    module: str,
    args: Mapping[str, Any] | None = None,
    *,
    check: bool = False,
    diff: bool = False,
    env: Mapping[str, str] | None = None,
    collections_dir: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 600,
    prefix: Sequence[str] = (),
) -> Result:
    """Run one module of this collection the way Ansible runs it on a host, without the controller.

    The module runs in its own Python process (this interpreter) with its arguments as the JSON
    Ansible sends (check and diff mode included), so its argument spec, its engine calls, what it
    returns and what it hides (``no_log``) are the real ones; there is no ``ansible-playbook``
    start-up, connection, templating or callback. ``Result.events`` holds one event (task ``task``,
    host ``local``, status ``ok`` or ``failed``) whose ``result`` is the returned JSON. Modules with
    an action plugin need the controller: use :func:`run_playbook` for those (except
    :data:`MODULE_ON_OTHER_HOSTS`). ``prefix`` goes
    before the command (``nsenter ...`` runs it inside a host of the fleet: :meth:`Host.module`).
    """
    name = module.rsplit(".", 1)[-1]
    if module.count(".") == 2 and not module.startswith(f"{NAMESPACE}.{NAME}."):
        raise ValueError(f"{module}: only modules of {NAMESPACE}.{NAME} run without the controller")
    if (repo_root() / "plugins" / "action" / f"{name}.py").exists() and name not in MODULE_ON_OTHER_HOSTS:
        raise ValueError(f"{module} has an action plugin, which runs on the controller: use run_playbook")
    with tempfile.TemporaryDirectory(prefix="gitops-harness-module-") as tmp:
        payload = {"ANSIBLE_MODULE_ARGS": {
            **dict(args or {}), "_ansible_check_mode": check, "_ansible_diff": diff,
            "_ansible_module_name": f"{NAMESPACE}.{NAME}.{name}", "_ansible_tmpdir": tmp, "_ansible_remote_tmp": tmp,
            "_ansible_keep_remote_files": False, "_ansible_verbosity": 0, "_ansible_no_log": False}}
        collections = str(collections_dir or _default_collections_path())
        module_path = f"ansible_collections.{NAMESPACE}.{NAME}.plugins.modules.{name}"
        cmd = [*prefix, sys.executable, "-c", _MODULE_MAIN, collections, module_path]
        run_env, stdin = {**os.environ, **(env or {})}, json.dumps(payload, default=str)
        start = time.monotonic()
        forked = zygote.run(module_path, collections, stdin, run_env, cwd, timeout, prefix, tmp)
        if forked is not None:
            proc = subprocess.CompletedProcess(cmd, *forked)
        else:
            proc = subprocess.run(cmd, input=stdin, env=run_env, cwd=cwd, capture_output=True, text=True,
                                  timeout=timeout, check=False)
    data = _module_result(proc)
    status = "failed" if data.get("failed") else "ok"
    event = {"event": "result", "status": status, "host": "local", "task": "task", "action": module,
             "play": None, "changed": bool(data.get("changed", False)), "result": data}
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start, [event], {}, cmd)


_SIGNAL_AND_WAIT = """
import pathlib, sys, time
reached, done = map(pathlib.Path, sys.argv[1:3])
reached.touch()
deadline = time.monotonic() + float(sys.argv[3])
while not done.exists():
    if time.monotonic() > deadline:
        sys.exit("the test did not answer within %s s" % sys.argv[3])
    time.sleep(0.02)
"""


def signal_and_wait_argv(reached: str | os.PathLike[str], done: str | os.PathLike[str], timeout: float = 60) -> list[str]:
    """The argv of a command task that tells the test the run got here (touches ``reached``) and waits until
    the test did its part (``done`` exists), failing after ``timeout`` seconds."""
    return [sys.executable, "-c", _SIGNAL_AND_WAIT, str(reached), str(done), str(timeout)]


def _module_result(proc: subprocess.CompletedProcess) -> dict[str, Any]:
    """The module's JSON as the controller would hand it on (a crash becomes a MODULE FAILURE)."""
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1])
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return {"failed": True, "changed": False, "msg": "MODULE FAILURE", "rc": proc.returncode,
                "module_stdout": proc.stdout, "module_stderr": proc.stderr}
    data = {k: v for k, v in data.items() if not k.startswith("_ansible_")}
    data.setdefault("changed", False)
    if isinstance(data.get("warnings"), list):  # ansible-core 2.19 sends WarningSummary objects; users see the text
        data["warnings"] = [w["event"].get("msg", w) if isinstance(w, dict) and isinstance(w.get("event"), dict) else w
                            for w in data["warnings"]]
    if proc.returncode != 0:
        data["failed"] = True
    return data


def run_module(
    host_pattern: str,
    module: str,
    args: str | Mapping[str, Any] | None,
    inventory: str | os.PathLike[str],
    *,
    check: bool = False,
    diff: bool = False,
    extra_vars: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    collections_dir: str | os.PathLike[str] | None = None,
    timeout: float = 300,
) -> Result:
    """Run one module ad hoc (``ansible PATTERN -m MODULE -a ARGS``); results in ``Result.events``."""
    cmd = [ansible_bin("ansible"), host_pattern, "-i", str(inventory), "-m", module]
    if args:
        cmd += ["-a", args if isinstance(args, str) else json.dumps(dict(args), default=str)]
    if extra_vars:
        cmd += ["-e", json.dumps(dict(extra_vars), default=str)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    # ad-hoc runs load callbacks only with bin_ansible_callbacks
    run_env = {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "True", **(env or {})}
    return _run(cmd, ansible_env(collections_dir, run_env), None, timeout)
