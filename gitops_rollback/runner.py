"""Run a collection playbook through ansible-runner, in a private data dir laid out as AWX does.

::

    <run dir>/
      env/extravars      YAML, every string !unsafe: checkpoint_label/commit or rollback_to (+ layers),
                         the trigger, --extra-vars (as AWX writes launch-time and webhook vars)
      env/envvars        JSON: ANSIBLE_COLLECTIONS_PATH, PATH with ansible-playbook
      env/cmdline        --check --diff for a dry run
      env/settings       JSON: runner settings
      inventory/         a copy of the inventory (file or directory)
      project/<name>.yml ``import_playbook: gitops.rollback.<name>``
      collections/       ansible_collections/gitops/rollback -> the collection (when not installed)
      artifacts/<ident>/ written by ansible-runner: status, rc, stdout, job_events/

The directory stays behind as the record of the run (``ansible-runner run <dir> -p <name>.yml``
replays it).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import yaml

from .collection import collections_dir_for

PLAYBOOKS = {"checkpoint": "checkpoint", "rollback": "rollback"}
PROGRESS_EVENTS = {"runner_on_ok": "ok", "runner_on_failed": "FAILED", "runner_on_unreachable": "UNREACHABLE"}


@dataclass
class RunRequest:
    """One playbook run."""

    playbook: str
    inventory: Path
    extravars: Dict[str, Any]
    collection_root: Path
    run_dir: Path
    ident: str
    check: bool = False
    extra_envvars: Dict[str, str] = field(default_factory=dict)


@dataclass
class RunOutcome:
    """What ansible-runner reported."""

    status: str
    rc: Optional[int]
    artifact_dir: Path
    stats: Dict[str, Any]
    duration: float

    @property
    def ok(self) -> bool:
        return self.status == "successful"


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(data), indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    path.chmod(0o600)


class _Unsafe(str):
    """A string Ansible must never render as a template (written with the ``!unsafe`` tag)."""


class _UnsafeDumper(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
    """SafeDumper that writes :class:`_Unsafe` strings as ``!unsafe "..."`` (non-ASCII escaped)."""


_UnsafeDumper.add_representer(_Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value), style='"'))


def _mark_unsafe(value: Any) -> Any:
    """``value`` with every string in it (values, not keys) made :class:`_Unsafe`.

    An empty string stays plain: there is nothing in it to template, and ansible-core reads
    ``!unsafe ""`` as None, which breaks every ``| length`` test of an emptied variable.
    """
    if isinstance(value, Mapping):
        return {str(key): _mark_unsafe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark_unsafe(item) for item in value]
    return _Unsafe(value) if isinstance(value, str) and value else value


def unsafe_yaml(data: Mapping[str, Any]) -> str:
    """Extra vars as YAML in which every string is ``!unsafe``: Ansible keeps them as data, never templates.

    Refs, payloads and command-line values come from outside; ansible-core (2.19 data tagging
    included) renders a string from an ``-e @file`` unless it carries this tag.
    """
    return yaml.dump(_mark_unsafe(dict(data)), Dumper=_UnsafeDumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=False, width=1 << 20)


def _inventory_copy(inventory: Path, target: Path) -> Path:
    """Where :func:`_copy_inventory` puts ``inventory`` under ``target``."""
    if inventory.is_dir():
        return target
    suffix = inventory.suffix if inventory.suffix in (".yml", ".yaml", ".json", ".ini", ".cfg") else ""
    return target / f"hosts{suffix}"


def _copy_inventory(inventory: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if inventory.is_dir():
        shutil.copytree(inventory, target, dirs_exist_ok=True)
    else:
        shutil.copy2(inventory, _inventory_copy(inventory, target))


class UnsafeRunDir(RuntimeError):
    """A run directory (or the directory of runs) is a link, not a directory, or another user's."""


def private_dir(path: Path) -> Path:
    """Create ``path`` (0700) unless it exists; refuse a symbolic link, a non-directory or another user's directory.

    The run directories hold the extra vars (secrets included) and are pruned with ``rmtree``: a link
    planted in their place would send both somewhere nobody planned.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else (
            "not a directory" if not stat.S_ISDIR(info.st_mode) else f"owned by uid {info.st_uid}")
        raise UnsafeRunDir(f"{path} is {what}; run directories are only created and removed in a directory of "
                           f"this user's own (uid {os.geteuid()}), never through a link. Remove it and run again.")
    return path


def prepare(request: RunRequest) -> Path:
    """Lay out the private data dir for ``request``; return it."""
    pdd = request.run_dir
    if request.playbook not in PLAYBOOKS:
        raise ValueError(f"unknown playbook {request.playbook!r} (have: {', '.join(PLAYBOOKS)})")
    private_dir(pdd.parent)
    private_dir(pdd)
    (pdd / "project").mkdir(parents=True, exist_ok=True)
    (pdd / "project" / f"{request.playbook}.yml").write_text(
        f"---\n# Written by gitops-rollback: the collection's playbook, as an AWX project would hold it.\n"
        f"- name: Run gitops.rollback.{PLAYBOOKS[request.playbook]}\n"
        f"  ansible.builtin.import_playbook: gitops.rollback.{PLAYBOOKS[request.playbook]}\n",
        encoding="utf-8")
    _copy_inventory(request.inventory, pdd / "inventory")
    collections = collections_dir_for(request.collection_root, pdd / "collections")
    inherited = os.environ.get("ANSIBLE_COLLECTIONS_PATH", "")
    bin_dir = str(Path(sys.executable).parent)
    search = os.pathsep.join([bin_dir, os.environ.get("PATH", "/usr/bin:/bin")])
    if not shutil.which("ansible-playbook", path=search):
        raise FileNotFoundError(f"ansible-playbook is neither beside {sys.executable} nor on PATH ({search}): install "
                                f"ansible-core into the environment of the gitops-rollback command "
                                f"({sys.executable} -m pip install ansible-core).")
    envvars = {
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(p for p in (str(collections), inherited) if p),
        "PATH": search,
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        # An inventory Ansible cannot parse fails the run (by default it warns, matches no host and succeeds).
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
    }
    envvars.update(request.extra_envvars)
    _write_json(pdd / "env" / "envvars", envvars)
    extravars = pdd / "env" / "extravars"
    extravars.write_text("---\n" + unsafe_yaml(request.extravars), encoding="utf-8")
    extravars.chmod(0o600)
    _write_json(pdd / "env" / "settings", {"suppress_ansible_output": True})
    cmdline = pdd / "env" / "cmdline"
    if request.check:
        cmdline.write_text("--check --diff\n", encoding="utf-8")
    else:  # a run dir reused within the same second: a dry run's --check must not carry over to a real run
        cmdline.unlink(missing_ok=True)
    return pdd


def progress_line(event: Mapping[str, Any]) -> Optional[str]:
    """One short line for a task result or the recap; None for other events."""
    kind = event.get("event")
    data = event.get("event_data") or {}
    if kind == "playbook_on_task_start":
        return f"  TASK {data.get('task', '')}"
    if kind in PROGRESS_EVENTS:
        res = data.get("res") or {}
        word = PROGRESS_EVENTS[kind]
        if kind == "runner_on_ok" and res.get("changed"):
            word = "changed"
        message = res.get("msg") if kind != "runner_on_ok" else None
        return f"    {data.get('host', '?')}: {word}" + (f" - {message}" if message else "")
    if kind == "playbook_on_stats":
        hosts = sorted(set().union(*(data.get(k) or {} for k in ("ok", "changed", "failures", "dark"))))
        parts = [f"{h} ok={data.get('ok', {}).get(h, 0)} changed={data.get('changed', {}).get(h, 0)} "
                 f"failed={data.get('failures', {}).get(h, 0)} unreachable={data.get('dark', {}).get(h, 0)}"
                 for h in hosts]
        return "  RECAP " + "; ".join(parts)
    return None


def run(request: RunRequest, say: Callable[[str], None],
        cancel: Callable[[], bool] = lambda: False) -> RunOutcome:
    """Prepare the private data dir and run the playbook, printing progress through ``say``."""
    import ansible_runner  # pylint: disable=import-outside-toplevel  # heavy; only when a run happens

    pdd = prepare(request)
    start = time.monotonic()

    def on_event(event: Dict[str, Any]) -> bool:
        line = progress_line(event)
        if line:
            say(line)
        return True

    result = ansible_runner.run(private_data_dir=str(pdd), playbook=f"{request.playbook}.yml",
                                ident=request.ident, quiet=True, event_handler=on_event,
                                cancel_callback=cancel)
    return RunOutcome(status=result.status, rc=result.rc, artifact_dir=Path(result.config.artifact_dir),
                      stats=result.stats or {}, duration=time.monotonic() - start)


ERROR_PREFIXES = ("[ERROR]", "ERROR!", "fatal:", "[WARNING]: Unable to parse", "[WARNING]: Failed to parse")


def error_lines(request: RunRequest, outcome: RunOutcome, limit: int = 20) -> List[str]:
    """The error lines of a run's output (Ansible's ``[ERROR]``, ``fatal:``, unparsed inventory), at most ``limit``.

    The run's copy of the inventory is named by the user's path, the one they can fix.
    """
    try:
        text = (outcome.artifact_dir / "stdout").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    copy = str(_inventory_copy(request.inventory, request.run_dir / "inventory"))
    folder = str(request.run_dir / "inventory")
    found = [line.rstrip().replace(copy, str(request.inventory)).replace(folder, str(request.inventory))
             for line in text.splitlines() if line.lstrip().startswith(ERROR_PREFIXES)]
    return list(dict.fromkeys(found))[-limit:]  # the copy and its folder give the same line twice


def prune_runs(runs_dir: Path, keep: int) -> List[Path]:
    """Remove all but the newest ``keep`` run directories; return the removed ones."""
    if keep <= 0 or not runs_dir.is_dir() or runs_dir.is_symlink():  # a link is never followed, nor pruned through
        return []
    runs = sorted((p for p in runs_dir.iterdir() if stat.S_ISDIR(p.lstat().st_mode)), key=lambda p: p.lstat().st_mtime)
    removed = runs[: max(0, len(runs) - keep)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def extravars_for(decision: Any, layers: Sequence[str], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """Extra vars for a decision: the playbook interface plus the trigger, for the audit log."""
    trigger = {"tag": decision.tag, "ref": decision.ref, "commit": decision.commit,
               "event_id": decision.event_id, "source": decision.source, "tool": "gitops-rollback"}
    variables: Dict[str, Any] = {"gitops_rollback_trigger": trigger}
    if decision.action == "checkpoint":
        variables.update(checkpoint_label=decision.tag, checkpoint_reason=f"release tag {decision.tag}")
        if decision.commit:
            variables["checkpoint_commit"] = decision.commit
    else:
        variables["rollback_to"] = decision.target
        if layers:
            variables["rollback_layers"] = list(layers)
    variables.update(extra)
    return variables
