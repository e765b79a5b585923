"""A host becomes unreachable mid-rollback (its sshd stopped by PID) (issue 10).

Three SSH hosts are checkpointed at v1, then v2 is deployed. playbooks/rollback.yml rolls back
to v1 while one host's sshd is stopped after the pre-flight and before that host's batch. The
run must fail naming the host as unreachable (recap and audit log), the other hosts must finish
or stop as the batch policy says, and a re-run once the host is back must complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import pytest

from harness import Fleet, Result, run_playbook
from harness.collection import ansible_bin, ansible_env

pytestmark = pytest.mark.slow

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"
MANAGED = ("/srv/app", "/etc/app")


def deploy(host, version: str) -> None:
    """Write release ``version`` on a host: content, modes, a symlink; v2 adds, deletes and re-modes."""
    app, etc = host.local("/srv/app"), host.local("/etc/app")
    (app / "static").mkdir(exist_ok=True)
    (app / "index.html").write_text("<h1>%s %s</h1>\n" % (host.name, version))
    (app / "static" / "blob.bin").write_bytes(hashlib.sha256((host.name + version).encode()).digest() * 2000)
    (app / "run.sh").write_text("#!/bin/sh\necho %s\n" % version)
    os.chmod(app / "run.sh", 0o750 if version == "v1" else 0o777)
    link = app / "current.conf"
    if link.is_symlink():
        link.unlink()
    os.symlink("/etc/app/app.conf" if version == "v1" else "/etc/app/v2.conf", link)
    (etc / "app.conf").write_text("host=%s\nrelease=%s\n" % (host.name, version))
    os.chmod(etc / "app.conf", 0o600)
    if version == "v2":
        (etc / "v2.conf").write_text("debug=1\n")
        (app / "static" / "blob.bin").unlink()


def tree(host) -> dict[str, dict[str, tuple]]:
    """Per managed path: relative path -> (type, mode, sha256 or link target).

    Polled while a rollback changes the tree: a read that meets an entry which went away in the
    meantime (a temporary file renamed into place) is taken again.
    """
    while True:
        try:
            return read_tree(host)
        except FileNotFoundError:
            continue


def read_tree(host) -> dict[str, dict[str, tuple]]:
    """One read of ``tree``; FileNotFoundError when an entry goes away during it."""
    result: dict[str, dict[str, tuple]] = {}
    for mount in MANAGED:
        top, entries = host.local(mount), {}
        for path in sorted(top.rglob("*")):
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries[str(path.relative_to(top))] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                entries[str(path.relative_to(top))] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[str(path.relative_to(top))] = ("file", stat.S_IMODE(st.st_mode), digest)
        result[mount] = entries
    return result


@dataclass
class Setup:
    """Three hosts checkpointed at v1 and now at v2, with the run's inventory, audit log and lock dir."""

    fleet: Fleet
    tmp: Path
    inventory: Path
    audit_log: Path
    collections: Path
    run: Callable[..., Result]
    v1: dict
    v2: dict

    def vars(self, **extra: Any) -> dict[str, Any]:
        return {"gitops_rollback_audit_log": str(self.audit_log), "rollback_lock_dir": str(self.tmp / "locks"),
                "gitops_rollback_hosts": "fleet", **extra}

    def trees(self) -> dict[str, dict]:
        return {host.name: tree(host) for host in self.fleet}

    def audit(self) -> list[dict]:
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()] if self.audit_log.exists() else []

    def rollback(self, **extra: Any) -> Result:
        return self.run(PLAYBOOKS / "rollback.yml", inventory=self.inventory, extra_vars=self.vars(**extra))

    def start_rollback(self, **extra: Any) -> "Background":
        """Start rollback.yml without waiting; its task results stream to a JSON-lines file."""
        events, output = self.tmp / ("events-%d.jsonl" % time.monotonic_ns()), self.tmp / "rollback.out"
        cmd = [ansible_bin("ansible-playbook"), "-i", str(self.inventory), str(PLAYBOOKS / "rollback.yml"),
               "-e", json.dumps(self.vars(**extra))]
        env = ansible_env(self.collections, {"GITOPS_HARNESS_EVENTS": str(events)})
        with open(output, "w") as out:
            proc = subprocess.Popen(cmd, env=env, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        return Background(proc, events, output, cmd, time.monotonic())


@dataclass
class Background:
    """A running ansible-playbook and the task results it has reported so far."""

    proc: subprocess.Popen
    events_path: Path
    output: Path
    cmd: list[str]
    started: float
    seen: list[dict] = field(default_factory=list)
    offset: int = 0

    def events(self) -> list[dict]:
        """Every task result reported so far; a poll parses only the lines written since the last one."""
        if self.events_path.exists():
            with open(self.events_path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
            complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits for the next poll
            self.offset += len(complete)
            self.seen += [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.endswith("}")]
        return list(self.seen)

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float = 300) -> float:
        """Poll until ``ready()``; fail if the run ends first. Returns the seconds since the start."""
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, "the run ended before %s:\n%s" % (what, self.output.read_text())
            assert time.monotonic() < deadline, "timed out waiting for %s" % what
            time.sleep(0.02)
        return time.monotonic() - self.started

    def finish(self, timeout: float = 600) -> Result:
        rc = self.proc.wait(timeout=timeout)
        events = self.events()
        stats = next((e["stats"] for e in reversed(events) if e["event"] == "stats"), {})
        return Result(rc, self.output.read_text(), "", time.monotonic() - self.started,
                      [e for e in events if e["event"] == "result"], stats, self.cmd)


@pytest.fixture(scope="module")
def checkpointed(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory,
                 collections_path: Path) -> tuple[Setup, Path]:
    """Made once per module: three hosts at v1 checkpointed by checkpoint.yml, then at v2; and a copy of
    their files and stores, which the ``setup`` fixture puts back before each test."""
    fleet.ensure_running()
    fleet.wipe()
    tmp = tmp_path_factory.mktemp("unreachable")
    hosts = {host.name: fleet.host_vars(host) for host in fleet}
    inventory = tmp / "inventory.yml"
    inventory.write_text(json.dumps({"all": {
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "children": {"fleet": {"hosts": hosts, "vars": {"gitops_rollback_paths": list(MANAGED)}}}}}))
    for host in fleet:
        deploy(host, "v1")
    v1 = {host.name: tree(host) for host in fleet}
    setup = Setup(fleet, tmp, inventory, tmp / "audit.jsonl", collections_path, None, v1, {})
    checkpoint = run_playbook(PLAYBOOKS / "checkpoint.yml", inventory, setup.vars(checkpoint_label="v1"),
                              collections_dir=collections_path, cwd=tmp)
    assert checkpoint.ok, checkpoint
    for host in fleet:
        deploy(host, "v2")
    setup.v2 = setup.trees()
    assert all(setup.v2[name] != v1[name] for name in v1)
    return setup, fleet.snapshot(tmp_path_factory.mktemp("unreachable-at-v2") / "hosts")


@pytest.fixture
def setup(checkpointed: tuple[Setup, Path], clean_fleet: Fleet, tmp_path: Path, run_playbook) -> Setup:
    """Three hosts checkpointed at v1 and now at v2 (put back from the module's copy), with this test's
    audit log and lock directory."""
    made, snapshot = checkpointed
    made.fleet.restore(snapshot)
    return replace(made, tmp=tmp_path, audit_log=tmp_path / "audit.jsonl", run=run_playbook)


def unreachable_record(setup: Setup, run_id: str) -> dict:
    """The audit log's failed record of the unreachable host in run ``run_id``."""
    records = [r for r in setup.audit() if r["run_id"] == run_id and r["event"] == "failed"
               and (r.get("result") or {}).get("unreachable")]
    assert len(records) == 1, setup.audit()
    return records[0]


def assert_rerun_completes(setup: Setup) -> Result:
    """Start the host again; a second rollback completes and every host equals v1."""
    setup.fleet.start_host("h2")
    again = setup.rollback(rollback_to="v1")
    assert again.ok, again
    assert setup.trees() == setup.v1
    last = setup.audit()[-1]
    assert last["event"] == "completed" and last["result"]["failed"] == [], last
    assert sorted(last["result"]["completed"]) == ["h1", "h2", "h3"]
    return again


def test_one_batch_finishes_the_reachable_hosts(setup: Setup) -> None:
    """(The re-run once the host is back: the serial test below, from the same state of the host that was down:
    its safety checkpoint taken, nothing rolled back.)"""
    run = setup.start_rollback(rollback_to="v1")
    preflight = run.wait_for("the safety checkpoint of h2", lambda: any(
        e["event"] == "result" and e["host"] == "h2" and e["status"] == "ok"
        and e["action"].endswith("rollback_plan") and (e["result"].get("safety") or {}).get("layers")
        for e in run.events()))
    setup.fleet.stop_host("h2")
    stopped = time.monotonic()
    result = run.finish()
    print("one batch: pre-flight done after %.1f s; the run failed %.1f s after h2 stopped (total %.1f s)"
          % (preflight, time.monotonic() - stopped, result.duration))

    assert result.rc != 0, result
    assert result.stats["h2"]["unreachable"] == 1, result.stats
    assert result.stats["h1"]["failures"] == 0 and result.stats["h3"]["failures"] == 0, result.stats
    trees = setup.trees()
    assert trees["h1"] == setup.v1["h1"] and trees["h3"] == setup.v1["h3"], "the reachable hosts finished"
    assert trees["h2"] == setup.v2["h2"], "nothing was changed on the unreachable host"
    started = [r for r in setup.audit() if r["event"] == "started"][-1]
    record = unreachable_record(setup, started["run_id"])
    assert record["hosts"] == ["h2"], record
    outcome = [r for r in setup.audit() if r["run_id"] == started["run_id"]][-1]
    assert outcome["event"] == "failed" and outcome["result"]["failed"] == ["h2"], outcome
    assert sorted(outcome["result"]["completed"]) == ["h1", "h3"], outcome


def test_a_host_down_refuses_the_rollback_everywhere_then_serial_batches_stop_at_it_and_a_rerun_completes(
        setup: Setup) -> None:
    """A host down during the pre-flight refuses the rollback on every host; once it is back, a rollback in
    serial batches stops at it when it goes down again during its batch, and a re-run completes."""
    setup.fleet.stop_host("h2")
    result = setup.rollback(rollback_to="v1")

    assert result.rc != 0, result
    assert setup.trees() == setup.v2, "a host the pre-flight could not check stops every host"
    refusal = [e for e in result.events if e.get("status") == "failed"][-1]["result"]["msg"]
    assert "nothing was changed on any host" in refusal and "[h2 / host] unreachable" in refusal, refusal
    record = setup.audit()[-1]
    assert record["event"] == "refused" and list(record["result"]) == ["h2"], record

    # h2 back: the refused run left no lock behind, and this run stops at h2 when it goes down in its batch.
    setup.fleet.start_host("h2")
    run = setup.start_rollback(rollback_to="v1", rollback_serial=1)
    first_batch = run.wait_for("h1 rolled back", lambda: tree(setup.fleet["h1"]) == setup.v1["h1"])
    setup.fleet.stop_host("h2")
    stopped = time.monotonic()
    result = run.finish()
    print("serial=1: h1 at v1 after %.1f s; the run failed %.1f s after h2 stopped (total %.1f s)"
          % (first_batch, time.monotonic() - stopped, result.duration))

    assert result.rc != 0, result
    assert result.stats["h2"]["unreachable"] == 1 and result.stats["h1"]["failures"] == 0, result.stats
    assert "fatal: [h2]: UNREACHABLE!" in result.stdout
    trees = setup.trees()
    assert trees["h1"] == setup.v1["h1"], "the batch before the outage completed"
    assert trees["h2"] == setup.v2["h2"], "nothing was changed on the unreachable host"
    assert trees["h3"] == setup.v2["h3"], "later batches did not run (max_fail_percentage 0)"
    started = [r for r in setup.audit() if r["event"] == "started"][-1]
    record = unreachable_record(setup, started["run_id"])
    assert record["hosts"] == ["h2"] and record["result"]["host"] == "h2", record
    assert "Connection refused" in record["result"]["problem"] or "ssh" in record["result"]["problem"], record
    assert not [r for r in setup.audit() if r["run_id"] == started["run_id"] and r["event"] == "completed"]

    again = assert_rerun_completes(setup)
    print("serial=1: re-run completed in %.1f s" % again.duration)
