"""Proof that the real-component harness works: hosts, databases, git repos, ansible."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from harness import DatabaseError, Fleet, MariaDbServer, MissingDependencyError, PgServer, signal_and_wait_argv
from harness import databases, zygote
from harness.hosts import STORE_DIR
from harness.scheduling import HEAVIEST_FIRST

pytestmark = pytest.mark.harness

WRITE_AND_READ = """\
- name: Harness proof
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Write marker
      ansible.builtin.copy:
        dest: /srv/app/{{{{ inventory_hostname }}}}-{token}.txt
        content: "written on {{{{ inventory_hostname }}}}\\n"
        mode: "0644"
    - name: Write store entry
      ansible.builtin.copy:
        dest: {store}/probe-{token}
        content: "{{{{ inventory_hostname }}}}"
        mode: "0600"
"""


def _reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def test_fleet_shape(fleet: Fleet) -> None:
    assert fleet.names == ["h1", "h2", "h3"]
    addresses = {h.address for h in fleet}
    assert len(addresses) == 3 and "127.0.0.1" not in addresses
    assert all(a.startswith("127.") for a in addresses)
    for host in fleet:
        assert host.running and _reachable(host.address, host.port)
        assert set(host.dirs) == {"/srv/app", "/etc/app", STORE_DIR}
        assert host.local("/srv/app/x/y") == host.dirs["/srv/app"] / "x" / "y"
    assert fleet.inventory is not None and fleet.inventory.exists()


def test_one_playbook_run_writes_and_reads_per_host_files_and_reports_json(clean_fleet: Fleet, run_playbook) -> None:
    """What the harness promises of a playbook run on the fleet: each host its own files and hostname (its own UTS
    namespace, as the fleet's Python sees it: no playbook of the collection gathers facts), a file written locally
    seen by its host only, the fleet's Python with GitPython, JSON results."""
    token = uuid.uuid4().hex[:8]
    clean_fleet["h2"].write_text("/etc/app/app.conf", "port=8080\n")
    more = [
        {"name": "Read app.conf", "ansible.builtin.slurp": {"src": "/etc/app/app.conf"}, "ignore_errors": True},
        {"name": "Python", "ansible.builtin.command": {
            "argv": [clean_fleet.interpreter, "-c", "import git, socket; print(socket.gethostname())"]},
         "changed_when": False},
        {"name": "Echo", "ansible.builtin.command": {"argv": ["echo", "hi"]}, "when": "inventory_hostname == 'h1'"},
    ]
    book = yaml.safe_load(WRITE_AND_READ.format(token=token, store=STORE_DIR))
    book[0]["tasks"] += more
    result = run_playbook(book, json=True)
    assert result.rc == 0, str(result)
    assert set(result.stats) == {"h1", "h2", "h3"}
    assert all(s["failures"] == 0 and s["unreachable"] == 0 for s in result.stats.values()), result.stats

    for host in clean_fleet:
        assert result.result("Write marker", host.name)["changed"] is True
        marker = host.local(f"/srv/app/{host.name}-{token}.txt")
        assert marker.read_text() == f"written on {host.name}\n"
        assert host.store.joinpath(f"probe-{token}").read_text() == host.name
        # the file exists on this host only, not on the others
        assert sorted(p.name for p in host.dirs["/srv/app"].iterdir()) == [f"{host.name}-{token}.txt"]
        assert [p.name for p in host.dirs["/etc/app"].iterdir()] == (["app.conf"] if host.name == "h2" else [])
        assert result.result("Python", host.name)["stdout"] == host.name  # the host's own UTS namespace

    # nothing was written to the real root
    assert not list(Path("/srv/app").glob(f"*-{token}.txt"))
    # the file written locally for h2 is seen by h2 alone
    assert {e["host"]: e["status"] for e in result.results("Read app.conf")} == {"h1": "ignored", "h2": "ok",
                                                                                 "h3": "ignored"}
    assert base64.b64decode(result.result("Read app.conf", "h2")["content"]) == b"port=8080\n"
    # -v with ANSIBLE_CALLBACK_RESULT_FORMAT=json
    assert result.result("Echo", "h1")["stdout"] == "hi"
    assert '"stdout": "hi"' in result.stdout


def test_stop_and_start_host(fleet: Fleet, run_playbook, tmp_path: Path) -> None:
    """One run: a ping of every host (it leaves a ControlPersist master), then the test stops h2 (its sshd and every
    session: unreachable), then it starts h2 again (reachable: a new master). The test stops and starts h2 while
    the run waits on the controller between plays."""
    h2 = fleet["h2"]

    def wait_for_the_test(step: str) -> dict:
        return {"name": step, "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": step, "ansible.builtin.command": {"argv": signal_and_wait_argv(
                tmp_path / (step + "-reached"), tmp_path / (step + "-done"))}, "changed_when": False}]}

    def ping(name: str, **play: object) -> dict:
        return {"name": name, "hosts": "fleet", "gather_facts": False, **play,
                "tasks": [{"name": name, "ansible.builtin.ping": {}}]}

    seen = {}

    def the_test() -> None:
        for step, change in (("stop h2", fleet.stop_host), ("start h2", fleet.start_host)):
            deadline = time.monotonic() + 120
            while not (tmp_path / (step + "-reached")).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            change("h2")
            seen[step] = (h2.running, _reachable(h2.address, h2.port))
            (tmp_path / (step + "-done")).touch()

    helper = threading.Thread(target=the_test, daemon=True)
    helper.start()
    result = run_playbook([ping("first"), wait_for_the_test("stop h2"), ping("down", ignore_unreachable=True),
                           wait_for_the_test("start h2"), ping("up")])
    helper.join(timeout=30)

    assert result.ok, str(result)
    assert seen == {"stop h2": (False, False), "start h2": (True, True)}, seen
    statuses = {name: {e["host"]: e["status"] for e in result.results(name)} for name in ("first", "down", "up")}
    assert statuses == {"first": {"h1": "ok", "h2": "ok", "h3": "ok"},
                        "down": {"h1": "ok", "h2": "unreachable", "h3": "ok"},
                        "up": {"h1": "ok", "h2": "ok", "h3": "ok"}}, statuses


def test_restart_keeps_files_and_hostname(fleet: Fleet) -> None:
    h3 = fleet["h3"]
    h3.write_text("/srv/app/keep.txt", "kept")
    fleet.stop_host("h3")
    fleet.start_host("h3")
    ssh = ["ssh", "-i", str(fleet.client_key), "-p", str(h3.port), "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
           f"root@{h3.address}", "hostname; cat /srv/app/keep.txt"]
    out = subprocess.run(ssh, capture_output=True, text=True, timeout=20, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["h3", "kept"]


def test_restore_puts_back_what_the_snapshot_copied_seen_from_the_host(clean_fleet: Fleet, tmp_path: Path) -> None:
    h2 = clean_fleet["h2"]
    h2.write_text("/etc/app/app.conf", "v1\n").chmod(0o600)
    (h2.local("/srv/app") / "current").symlink_to("/srv/app/releases/v1")
    h2.write_text(STORE_DIR + "/checkpoints/v1.json", "{}")
    snapshot = clean_fleet.snapshot(tmp_path / "snapshot")
    h2.write_text("/etc/app/app.conf", "v2\n").chmod(0o644)
    h2.write_text("/etc/app/stray.conf", "stray")
    (h2.local("/srv/app") / "current").unlink()
    h2.local(STORE_DIR + "/checkpoints/v1.json").unlink()

    clean_fleet.restore(snapshot)

    ssh = ["ssh", "-i", str(clean_fleet.client_key), "-p", str(h2.port), "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", f"root@{h2.address}",
           f"ls /etc/app; stat -c %a /etc/app/app.conf; cat /etc/app/app.conf; readlink /srv/app/current; "
           f"ls {STORE_DIR}/checkpoints"]
    out = subprocess.run(ssh, capture_output=True, text=True, timeout=20, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["app.conf", "600", "v1", "/srv/app/releases/v1", "v1.json"]


def test_a_module_forked_from_the_zygote_runs_inside_its_host_as_a_fresh_interpreter_would(
        clean_fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """host.module runs the module in a child of the harness's zygote, in the host's mount and UTS namespaces:
    it checkpoints the host's own /etc/app (the machine has none); a fresh interpreter (GITOPS_HARNESS_ZYGOTE=0)
    restores those bytes; a run that changes a start-up setting (TZ) gets a fresh interpreter too."""
    h1 = clean_fleet["h1"]
    h1.write_text("/etc/app/app.conf", "zygote v1\n")
    taken = h1.module("gitops.rollback.checkpoint", {"paths": ["/etc/app"], "label": "z1"})
    assert taken.ok and taken.events[-1]["result"]["changed"], taken.events[-1]["result"]
    assert zygote._zygote is not None and zygote._zygote.poll() is None, "the module ran in a child of the zygote"
    h1.write_text("/etc/app/app.conf", "v2\n")
    monkeypatch.setenv("GITOPS_HARNESS_ZYGOTE", "0")
    restored = h1.module("gitops.rollback.restore", {"checkpoint": "z1", "paths": ["/etc/app"]})
    assert restored.ok, restored.events[-1]["result"]
    assert h1.local("/etc/app/app.conf").read_text() == "zygote v1\n"
    monkeypatch.delenv("GITOPS_HARNESS_ZYGOTE")
    assert zygote.run("m", "/", "{}", {**os.environ, "TZ": "UTC+3"}, None, 5, (), "/nonexistent") is None
    assert zygote.run("m", "/", "{}", dict(os.environ), None, 5, ["env", "--"], "/nonexistent") is None


def test_postgres(postgres: PgServer) -> None:
    assert postgres.port != 5432
    assert postgres.psql("SELECT 1 + 1") == "2"
    db = postgres.create_database(f"db_{uuid.uuid4().hex[:8]}")
    postgres.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (41), (1)", db=db)
    assert postgres.psql("SELECT sum(v) FROM t", db=db) == "42"
    assert postgres.psql("SELECT current_user", user=postgres.app_user,
                         password=postgres.app_password) == "app"
    with pytest.raises(DatabaseError, match="password authentication failed"):
        postgres.psql("SELECT 1", user=postgres.app_user, password="wrong-password")


def test_mariadb(mariadb: MariaDbServer) -> None:
    assert mariadb.port != 3306
    assert mariadb.sql("SELECT 1 + 1") == "2"
    db = mariadb.create_database(f"db_{uuid.uuid4().hex[:8]}")
    mariadb.sql("CREATE TABLE t (v INT); INSERT INTO t VALUES (41), (1)", db=db)
    assert mariadb.sql("SELECT SUM(v) FROM t", db=db) == "42"
    with pytest.raises(DatabaseError, match="Access denied"):
        mariadb.sql("SELECT 1", password="wrong-password")


def test_git_repo(git_repo) -> None:
    releases = {
        "v1": {"app.txt": b"version 1\n", "conf/app.conf": b"a=1\n"},
        "v2": {"app.txt": b"version 2\n", "conf/app.conf": b"a=2\n", "new.txt": b"only in v2\n"},
        "v3": {"app.txt": b"version 3\n"},
    }
    repo = git_repo(releases)
    assert list(repo.tags) == ["v1", "v2", "v3"]
    assert len(set(repo.tags.values())) == 3
    assert repo.head == repo.tags["v3"]
    for tag, files in releases.items():
        assert repo.git("cat-file", "-t", tag) == "tag"  # annotated
        assert repo.git("rev-parse", f"{tag}^{{commit}}") == repo.tags[tag]
        assert sorted(repo.git("ls-tree", "-r", "--name-only", tag).splitlines()) == sorted(files)
        for rel, content in files.items():
            assert repo.show(tag, rel) == content
    assert repo.git("rev-parse", "v2^") == repo.tags["v1"]


def test_missing_binaries_name_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(databases.glob, "glob", lambda pattern: [])
    with pytest.raises(MissingDependencyError, match="apt-get install -y postgresql"):
        databases.postgres_bin_dir()
    monkeypatch.setattr(databases.shutil, "which", lambda name: None)
    monkeypatch.setattr(databases.os, "access", lambda path, mode: False)
    with pytest.raises(MissingDependencyError, match="mariadb-server"):
        databases.start_mariadb("/nonexistent")


TOY_MODULE = '''\
import os
import pytest


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    with open({log!r}, "a") as fh:
        fh.write(__name__ + " " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")


@pytest.mark.parametrize("n", range(6))
def test_uses_the_module_fixture(made, n):
    pass
'''


@pytest.mark.deep
def test_with_two_workers_each_module_runs_on_one_worker_so_its_module_fixture_is_made_once(tmp_path: Path) -> None:
    """The demo run and the other module-scoped fixtures are made once per module, not once per worker."""
    toy, log = tmp_path / "toy", tmp_path / "made.log"
    toy.mkdir()
    (toy / "conftest.py").write_text(f"import sys\nsys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
                                     "from harness.scheduling import pytest_xdist_make_scheduler  # noqa: F401\n")
    for name in ("test_one", "test_two", "test_three"):
        (toy / f"{name}.py").write_text(TOY_MODULE.format(log=str(log)))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", "--rootdir",
                           str(toy), str(toy)], capture_output=True, text=True, cwd=toy, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    made = sorted(log.read_text().splitlines())
    assert [line.split()[0] for line in made] == ["test_one", "test_three", "test_two"], made
    assert {line.split()[1] for line in made} == {"gw0", "gw1"}, "both workers had work"


def test_every_module_the_scheduler_puts_first_exists() -> None:
    """A renamed or deleted test module in ``HEAVIEST_FIRST`` would silently lose its place at the front."""
    root = Path(__file__).resolve().parents[2]
    assert [m for m in HEAVIEST_FIRST if not (root / m).is_file()] == []
    assert len(set(HEAVIEST_FIRST)) == len(HEAVIEST_FIRST)
