"""Plays and assertions shared by the release end-to-end tests."""

from __future__ import annotations

import json
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


def deploy_with_the_module(host, builds: Path, *versions: str) -> None:
    """Set-up, not what a test proves: deploy each version in turn with the release module on the host."""
    for version in versions:
        ok, result = release_module(host, deploy_args(builds, host.name, version))
        assert ok, result


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
