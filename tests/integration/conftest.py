"""pytest fixtures for real-component tests of gitops.rollback (see tests/harness)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg2
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make tests/harness importable

from harness import (  # noqa: E402
    EtcdServer,
    Fleet,
    MariaDbServer,
    NO_ANSIBLE_ENV,
    MissingDependencyError,
    PgServer,
    RepoInfo,
    RepositoryHost,
    Result,
    collections_path as _collections_path,
    make_repo,
    run_module as _run_module,
    run_module_process,
    run_playbook as _run_playbook,
    run_playbook_json as _run_playbook_json,
    start_etcd,
    start_hosts,
    start_mariadb,
    start_postgres,
    start_repository_host,
)
from harness.cpuacct import register as register_cpu_log  # noqa: E402
from harness.scheduling import order_heaviest_first  # noqa: E402
# the pytest-xdist hook that gives each worker whole modules
from harness.scheduling import pytest_xdist_make_scheduler  # noqa: E402,F401 pylint: disable=unused-import

# Every Ansible run the tests start, also those not through the harness's environment (ansible-runner, molecule,
# the command line tool): a pipelined module run on a local connection reads its payload from standard input,
# one read() per byte when PYTHONUNBUFFERED is set (harness/collection.py, ansible_env).
os.environ.pop("PYTHONUNBUFFERED", None)

FLEET_SIZE = 3

E2E_MARK = "e2e: runs ansible-playbook / ansible (end to end); ./dev.sh test --fast leaves these out"
COMPONENT_MARK = "component: the engine in-process against real servers, no Ansible run (set automatically)"
DEEP_MARK = ("deep: a long component test (big data, a server or process killed at many points, a Terraform "
             "chain); ./dev.sh test --fast leaves these out, the full run has them")
ANSIBLE_FIXTURES = {"run_playbook", "run_module"}
"""Fixtures that start Ansible: a test that uses one (also through another fixture) is ``e2e``."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds (real hosts, databases, Terraform)")
    config.addinivalue_line("markers", "harness: tests of the test harness itself")
    config.addinivalue_line("markers", E2E_MARK)
    config.addinivalue_line("markers", COMPONENT_MARK)
    config.addinivalue_line("markers", DEEP_MARK)
    register_cpu_log(config)  # GITOPS_HARNESS_CPU_LOG: CPU per test (harness/cpuacct.py)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test ``e2e`` (it runs Ansible) or ``component`` (engine and servers only), and put
    the longest modules first (with ``-n``, each module runs whole on one worker: harness/scheduling.py).

    A test is end to end when it asks, directly or through its fixtures, for a fixture that runs
    Ansible, or when its module says so (``pytestmark = pytest.mark.e2e`` for ansible-runner,
    molecule or the command line tool); ``./dev.sh test --fast`` runs the others.
    """
    for item in items:
        if item.get_closest_marker("e2e") is None and ANSIBLE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.component)
    order_heaviest_first(items)


@pytest.fixture(autouse=True)
def _component_tests_run_no_ansible(request: pytest.FixtureRequest) -> Iterator[None]:
    """A component test that starts Ansible through the harness fails, naming the missing mark."""
    if request.node.get_closest_marker("e2e") is not None:
        yield
        return
    os.environ[NO_ANSIBLE_ENV] = request.node.nodeid
    try:
        yield
    finally:
        os.environ.pop(NO_ANSIBLE_ENV, None)


def _start(factory: Callable[[], Any]) -> Any:
    """Start a component; a missing system package is a test failure naming the package, never a skip."""
    try:
        return factory()
    except MissingDependencyError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def harness_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session work directory for hosts, servers and the collections path."""
    return tmp_path_factory.mktemp("harness")


@pytest.fixture(scope="session")
def fleet(harness_dir: Path) -> Iterator[Fleet]:
    """Three running SSH hosts h1..h3; ``fleet.inventory`` is the written inventory file."""
    fleet = _start(lambda: start_hosts(FLEET_SIZE, harness_dir / "fleet"))
    try:
        fleet.write_inventory(harness_dir / "fleet" / "inventory.yml")
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(autouse=True)
def _restart_stopped_hosts(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that used the fleet, restart hosts the test stopped."""
    yield
    if "fleet" in request.fixturenames:
        request.getfixturevalue("fleet").ensure_running()


@pytest.fixture
def clean_fleet(fleet: Fleet) -> Fleet:
    """The session fleet with every managed directory and checkpoint store emptied."""
    fleet.ensure_running()
    fleet.wipe()
    return fleet


@pytest.fixture(scope="session")
def inventory(fleet: Fleet) -> Path:
    """Path of the fleet's inventory (group ``fleet``)."""
    assert fleet.inventory is not None
    return fleet.inventory


@pytest.fixture(scope="session")
def repository_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RepositoryHost]:
    """A checkpoint repository host: one SSH host of its own whose ``/srv/gr-repository`` holds repositories."""
    host = _start(lambda: start_repository_host(tmp_path_factory.mktemp("repository-host")))
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="session")
def postgres(harness_dir: Path) -> Iterator[PgServer]:
    """A throwaway PostgreSQL server (superuser ``postgres`` trusted; ``app`` with ``app_password``)."""
    server = _start(lambda: start_postgres(harness_dir))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb(harness_dir: Path) -> Iterator[MariaDbServer]:
    """A throwaway MariaDB server (``root`` with ``password``)."""
    server = _start(lambda: start_mariadb(harness_dir))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def etcd(harness_dir: Path) -> Iterator[EtcdServer]:
    """A throwaway single-member etcd server (Debian etcd-server)."""
    server = _start(lambda: start_etcd(harness_dir))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def git_repo(tmp_path: Path) -> Callable[..., RepoInfo]:
    """Factory: ``git_repo({"v1": {"app.txt": b"1"}, ...}, name="repo") -> RepoInfo``."""

    def factory(releases: dict[str, dict[str, bytes | str]], name: str = "repo") -> RepoInfo:
        return make_repo(tmp_path / name, releases)

    return factory


@pytest.fixture(scope="session")
def collections_path(harness_dir: Path) -> Path:
    """ANSIBLE_COLLECTIONS_PATH under which ``gitops.rollback`` is this checkout."""
    return _collections_path(harness_dir / "collections")


@pytest.fixture
def run_playbook(request: pytest.FixtureRequest, collections_path: Path, tmp_path: Path) -> Callable[..., Result]:
    """``run_playbook(playbook, inventory=None, extra_vars=None, check=False, diff=False, env=None, **kw)``.

    ``inventory`` defaults to the fleet's (starting the fleet on first use);
    ``playbook`` may be a path, YAML text or a list of plays.
    """

    def run(playbook: Any, inventory: Any = None, extra_vars: Any = None, check: bool = False,
            diff: bool = False, env: Any = None, json: bool = False, **kwargs: Any) -> Result:
        if inventory is None:
            inventory = request.getfixturevalue("fleet").inventory
        kwargs.setdefault("collections_dir", collections_path)
        kwargs.setdefault("cwd", tmp_path)
        runner = _run_playbook_json if json else _run_playbook
        return runner(playbook, inventory, extra_vars, check, diff, env, **kwargs)

    return run


@pytest.fixture
def run_module(request: pytest.FixtureRequest, collections_path: Path) -> Callable[..., Result]:
    """``run_module(pattern, module, args, inventory=None, **kw)`` via ad-hoc ``ansible``."""

    def run(host_pattern: str, module: str, args: Any = None, inventory: Any = None, **kwargs: Any) -> Result:
        if inventory is None:
            inventory = request.getfixturevalue("fleet").inventory
        kwargs.setdefault("collections_dir", collections_path)
        return _run_module(host_pattern, module, args, inventory, **kwargs)

    return run


@pytest.fixture
def run_task(collections_path: Path, tmp_path: Path) -> Callable[..., tuple[Result, dict[str, Any]]]:
    """``run_task(module, args, check=False, diff=False, env=None)`` runs one module of the collection as
    Ansible runs it on a host, without the controller (a component test: see
    :func:`harness.run_module_process`); ``env`` is added to the module's environment (``HOME``,
    ``USER``). Returns ``(result, task_result)``; ``task_result`` is what the module returned plus
    ``status``: ``ok``, or ``ignored`` when the module failed (as a task with ``ignore_errors`` reports it).
    """

    def run(module: str, args: dict[str, Any], check: bool = False, diff: bool = False,
            env: dict[str, str] | None = None) -> tuple[Result, dict[str, Any]]:
        result = run_module_process(module, args, check=check, diff=diff, env=env, collections_dir=collections_path,
                                    cwd=tmp_path)
        event = result.events[-1]
        return result, dict(event["result"], status="ignored" if event["status"] == "failed" else "ok")

    return run


@pytest.fixture
def state_url(postgres: PgServer) -> Iterator[str]:
    """A fresh database of the session's PostgreSQL server for the shared controller state."""
    name = "state_" + secrets.token_hex(4)
    admin = psycopg2.connect(postgres.dsn)
    admin.autocommit = True
    admin.cursor().execute("CREATE DATABASE " + name)
    try:
        yield postgres.dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.cursor().execute("DROP DATABASE %s WITH (FORCE)" % name)
        admin.close()
