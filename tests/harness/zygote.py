"""Module processes forked from a process that has already imported ``ansible.module_utils.basic``.

Every module of the collection starts by importing ``ansible.module_utils.basic`` (about 0.09 CPU-s of a
0.16 CPU-s module run here). :func:`run` hands a module run to a zygote: a Python process started once per
test process that has made that import and forks a child per run. The child is a new process as Ansible
starts one on a host: it gets the run's environment, working directory, standard input and output files and,
for a test host, the host's mount and UTS namespaces (what ``nsenter --target PID --mount --uts`` gives); then
it leaves the zygote's loop and runs the module at the top level of the script, so the interpreter ends the
way it ends after ``python -c``: threads joined, ``atexit`` handlers run, streams flushed. The collection's
own modules and module_utils are imported fresh in every child.

:func:`run` returns None where a fresh interpreter is needed (another ``PYTHON*``, locale or ``TZ`` setting
than the zygote started with, a prefix other than that ``nsenter``, a run already in progress on another
thread): the caller then starts a process as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping, Sequence

#: Settings the interpreter reads when it starts: a run that changes one needs a process of its own.
STARTUP_SETTINGS = ("PYTHON", "LC_", "LANG", "TZ")

_ZYGOTE_SOURCE = r'''
import ctypes, json, os, runpy, select, signal, sys, time
import ansible.module_utils.basic  # noqa: F401  the first import of every module
import gc
gc.freeze()  # a collection in a child does not walk (and copy) what the zygote imported

_requests = os.fdopen(os.dup(0), "rb")
_replies = os.fdopen(os.dup(1), "wb")


def _enter(pid, kinds):
    libc = ctypes.CDLL(None, use_errno=True)
    for kind in kinds:
        fd = os.open("/proc/%d/ns/%s" % (pid, kind), os.O_RDONLY)
        try:
            if libc.setns(fd, 0) != 0:
                raise OSError(ctypes.get_errno(), "setns %s of %d" % (kind, pid))
        finally:
            os.close(fd)


def _become(req):
    """In the child: the run's namespaces, files, directory and environment; then back to the top level."""
    _requests.close()
    _replies.close()
    # files and directory first, as subprocess opens and enters them before nsenter runs
    opened = [(fd, os.open(path, flags)) for fd, path, flags in ((0, req["stdin"], os.O_RDONLY),
              (1, req["stdout"], os.O_WRONLY), (2, req["stderr"], os.O_WRONLY))]
    if req["cwd"]:
        os.chdir(req["cwd"])
    if req["ns_pid"]:
        _enter(req["ns_pid"], req["ns"])
    for fd, new in opened:
        os.dup2(new, fd)
        os.close(new)
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    os.environ.clear()
    os.environ.update(req["env"])
    sys.argv = ["-c"]
    sys.path.insert(0, req["collections"])
    return req["module"]


def _wait(pid, timeout):
    """The child's exit code, or None after killing it when ``timeout`` passed."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _serve():
    """Answer requests until the test process closes the pipe; return only in a child."""
    while True:
        line = _requests.readline()
        if not line:
            os._exit(0)
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                return _become(req)
            except BaseException:  # noqa: B036  the run's stderr says why, as a crash before the module would
                import traceback
                with open(req["stderr"], "a") as err:
                    traceback.print_exc(file=err)
                os._exit(1)
        code = _wait(pid, req["timeout"])
        _replies.write((json.dumps({"rc": code}) + "\n").encode())
        _replies.flush()


_module = _serve()
del _serve, _become, _wait, _enter, _requests, _replies
runpy.run_module(_module, run_name="__main__", alter_sys=True)
'''

_lock = threading.Lock()
_zygote: subprocess.Popen | None = None
_zygote_env: dict[str, str] = {}


def _startup(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_SETTINGS)}


def _namespaces(prefix: Sequence[str]) -> tuple[int, list[str]] | None:
    """(pid, namespaces) for ``nsenter --target PID --mount --uts --``; None for another prefix."""
    if not prefix:
        return 0, []
    if len(prefix) == 6 and prefix[0] == "nsenter" and prefix[1] == "--target" and prefix[3:] == ["--mount", "--uts", "--"]:
        return int(prefix[2]), ["mnt", "uts"]
    return None


def _started(env: Mapping[str, str]) -> subprocess.Popen:
    global _zygote, _zygote_env  # pylint: disable=global-statement
    if _zygote is None or _zygote.poll() is not None:
        _zygote_env = dict(env)
        _zygote = subprocess.Popen([sys.executable, "-c", _ZYGOTE_SOURCE], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_zygote_env,
                                   cwd="/", start_new_session=True)
    return _zygote


def run(module: str, collections: str, stdin: str, env: Mapping[str, str], cwd: str | os.PathLike[str] | None,
        timeout: float, prefix: Sequence[str], workdir: str | os.PathLike[str]) -> tuple[int, str, str] | None:
    """(exit code, stdout, stderr) of ``module`` run in a child of the zygote, its standard streams as files in
    ``workdir``, or None (see the module's docstring); raises :class:`subprocess.TimeoutExpired` like
    :func:`subprocess.run`."""
    namespaces = _namespaces(prefix)
    if namespaces is None or os.environ.get("GITOPS_HARNESS_ZYGOTE") == "0":
        return None
    if not _lock.acquire(blocking=False):
        return None
    try:
        if _zygote is not None and _startup(env) != _startup(_zygote_env):
            return None
        zygote = _started(env)
        files = {name: Path(workdir) / ("zygote-" + name) for name in ("stdin", "stdout", "stderr")}
        files["stdin"].write_text(stdin)
        for name in ("stdout", "stderr"):
            files[name].touch()
        request = {"module": module, "collections": collections, "env": dict(env),
                   "cwd": str(cwd) if cwd else None, "timeout": timeout, "ns_pid": namespaces[0],
                   "ns": namespaces[1], **{name: str(path) for name, path in files.items()}}
        assert zygote.stdin is not None and zygote.stdout is not None
        zygote.stdin.write((json.dumps(request) + "\n").encode())
        zygote.stdin.flush()
        reply = zygote.stdout.readline()
        if not reply:
            raise RuntimeError("the module zygote ended: " + module)
        code = json.loads(reply)["rc"]
        out, err = files["stdout"].read_text(), files["stderr"].read_text()
        if code is None:
            raise subprocess.TimeoutExpired([module], timeout, out, err)
        return code, out, err
    finally:
        _lock.release()
