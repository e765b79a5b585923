"""Plays and assertions shared by the release end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = "/srv/app"
SHARED = ["log", "config/app.yml"]


def write_build(top: Path, host: str, version: str) -> Path:
    """A build directory with content that differs per host and per version."""
    build = top / host / version
    (build / "config").mkdir(parents=True, exist_ok=True)
    (build / "static").mkdir(exist_ok=True)
    (build / "VERSION").write_text(f"{version}\n")
    (build / "index.html").write_text(f"<h1>{host} {version}</h1>\n")
    (build / "static" / "app.js").write_text(f"console.log('{version}')\n" * (len(version) + 3))
    (build / "config" / "app.yml").write_text(f"seeded_by: {version}\n")
    return build


def role_play(tasks_from: str, hosts: str = "fleet", **role_vars: Any) -> list[dict]:
    """A play that runs one entry point of the rollback_release role with its variables."""
    role_vars = {"gitops_rollback_release_root": ROOT, **role_vars}
    return [{
        "name": f"rollback_release {tasks_from}",
        "hosts": hosts,
        "gather_facts": False,
        "tasks": [{
            "name": f"Run rollback_release {tasks_from}",
            "ansible.builtin.include_role": {"name": "gitops.rollback.rollback_release", "tasks_from": tasks_from},
            "vars": role_vars,
        }],
    }]


def deploy_play(builds: Path, version: str, hosts: str = "fleet", **extra: Any) -> list[dict]:
    """Deploy ``<builds>/<host>/<version>`` labelled ``version`` through the role's deploy entry point."""
    return role_play("deploy", hosts, rollback_release_src=f"{builds}/{{{{ inventory_hostname }}}}/{version}",
                     rollback_release_label=version, rollback_release_shared=SHARED, **extra)


def release_module(host, args: dict) -> tuple[bool, dict]:
    """The release module on ``host`` as Ansible runs it there (:meth:`harness.Host.module`: the host's
    namespaces, the JSON arguments, no controller): (succeeded, what it returned)."""
    event = host.module("gitops.rollback.release", {"root": ROOT, **args}).events[-1]
    return event["status"] == "ok", event["result"]


def deploy_args(builds: Path, host: str, version: str) -> dict:
    """The release module's arguments the role's deploy passes for :func:`deploy_play` on ``host``."""
    return {"state": "present", "src": f"{builds}/{host}/{version}", "label": version, "shared": SHARED}


SET_UP = """
import contextlib, io, json, runpy, sys, tempfile
sys.path.insert(0, sys.argv[1])  # the collections path
from ansible.module_utils import basic
done = []
for args in json.load(sys.stdin):
    with tempfile.TemporaryDirectory(prefix="gitops-release-set-up-") as tmp:
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": dict(
            args, _ansible_check_mode=False, _ansible_diff=False, _ansible_tmpdir=tmp, _ansible_remote_tmp=tmp,
            _ansible_module_name="gitops.rollback.release", _ansible_keep_remote_files=False, _ansible_verbosity=0,
            _ansible_no_log=False)}).encode()
        basic._ANSIBLE_PROFILE = "legacy"
        out, code = io.StringIO(), 0
        with contextlib.redirect_stdout(out):
            try:
                runpy.run_module("ansible_collections.gitops.rollback.plugins.modules.release", run_name="__main__")
            except SystemExit as exc:
                code = exc.code
    text = out.getvalue()
    result = json.loads(text[text.index("{"):text.rindex("}") + 1]) if "{" in text else {"msg": text}
    done.append(dict(result, rc=code))
    if code or result.get("failed"):
        break
print(json.dumps(done))
"""


def set_up_with_the_module(host, steps: list[dict]) -> None:
    """Set-up, not what a test proves: the release module's runs ``steps`` (its arguments, ``root`` added) one
    after the other on ``host`` (its namespaces, as :meth:`harness.Host.module` runs it), in one Python process
    for all of them; the first that fails fails the test."""
    calls = [{"root": ROOT, **args} for args in steps]
    done = subprocess.run(["nsenter", "--target", str(host.pid), "--mount", "--uts", "--", sys.executable, "-c", SET_UP,
                           str(collections_dir())], input=json.dumps(calls), capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(calls) and not [r for r in results if r["rc"] or r.get("failed")], (host.name, results)


def collections_dir() -> Path:
    """The collections path the harness runs the modules from."""
    from harness.collection import _default_collections_path  # pylint: disable=import-outside-toplevel
    return _default_collections_path()


def deploy_with_the_module(host, builds: Path, *versions: str) -> None:
    """Set-up, not what a test proves: deploy each version in turn with the release module on the host."""
    set_up_with_the_module(host, [deploy_args(builds, host.name, version) for version in versions])


def live_version(host) -> str:
    """What a reader of current/VERSION on the host sees."""
    return (host.local(ROOT) / "current" / "VERSION").read_text().strip()


def index(host) -> dict:
    """The host's release index."""
    return json.loads((host.local(ROOT) / "releases.json").read_text())


def by_label(host) -> dict[str, dict]:
    """Index records by label."""
    return {rel["label"]: rel for rel in index(host)["releases"]}


def release_dirs(host) -> set[str]:
    """Release directories on disk."""
    return {p.name for p in (host.local(ROOT) / "releases").iterdir()}


def state_of(host) -> tuple:
    """Everything a no-op must leave alone: where current points, the index bytes, the release dirs."""
    root = host.local(ROOT)
    current = root / "current"
    return (current.readlink() if current.is_symlink() else None,
            (root / "releases.json").read_bytes() if (root / "releases.json").exists() else None,
            sorted(release_dirs(host)) if (root / "releases").exists() else None)


def task_result(result, task: str, host: str) -> dict:
    """The last result of a task (role tasks are named '<role> : <task>') on a host."""
    found = [e for e in result.events if e["task"].split(" : ")[-1] == task and e["host"] == host]
    assert found, f"no result for {task!r} on {host}\n{result}"
    return found[-1]["result"]
