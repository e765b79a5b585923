"""A three-host deployment with every layer (feature flags in files and in etcd, release, config,
PostgreSQL with migrations, Terraform state), for the ordered-rollback drill tests."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from harness import Fleet, PgServer, Result, make_repo, run_playbook
# the one-host site of the hooks tests, made once per worker
from site_support import site, site_at_v2  # noqa: F401 pylint: disable=unused-import

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "playbooks"


def _terraform_support():
    """The Terraform test helpers (tests/integration/terraform/conftest.py), loaded by path."""
    path = REPO / "tests" / "integration" / "terraform" / "conftest.py"
    spec = importlib.util.spec_from_file_location("tf_support", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["tf_support"] = module
    spec.loader.exec_module(module)
    return module


TF = _terraform_support()

MIGRATIONS = {
    1: ("create_customers", "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);",
        "DROP TABLE customers;"),
    2: ("create_orders", "CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers, total numeric);",
        "DROP TABLE orders;"),
    3: ("orders_index", "CREATE INDEX orders_customer ON orders (customer);", "DROP INDEX orders_customer;"),
    4: ("bad_coupons", "CREATE TABLE coupons (code text PRIMARY KEY, pct int);"
        " ALTER TABLE orders ADD COLUMN coupon text;",
        "ALTER TABLE orders DROP COLUMN coupon; DROP TABLE coupons;"),
}


def write_migrations(directory: Path, upto: int) -> None:
    """Write the migration files up to a version."""
    directory.mkdir(parents=True, exist_ok=True)
    for version, (name, up, down) in MIGRATIONS.items():
        if version <= upto:
            (directory / f"V{version:04d}__{name}.up.sql").write_text(up + "\n")
            (directory / f"V{version:04d}__{name}.down.sql").write_text(down + "\n")


#: The database layer as a user would check it (Drill.state).
STATE_QUERIES = {
    "tables": "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname='public'",
    "orders_columns": "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns "
                      "WHERE table_name='orders'",
    "orders": "SELECT json_agg(t ORDER BY id) FROM (SELECT id, customer, total FROM orders) t",
    "customers": "SELECT json_agg(c ORDER BY id) FROM customers c",
    "schema_version": "SELECT max(version) FROM gitops_rollback_migrations",
}


def tree_digest(top: Path) -> dict[str, str]:
    """Relative path -> sha256 (or link target) of everything under a directory."""
    result = {}
    for path in sorted(top.rglob("*")):
        rel = str(path.relative_to(top))
        if path.is_symlink():
            result[rel] = "-> " + str(path.readlink())
        elif path.is_file():
            result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            result[rel] = "dir"
    return result


@dataclass
class Drill:
    """Everything one drill needs: hosts, database, Terraform, and how to run the playbooks."""

    fleet: Fleet
    pg: PgServer
    database: str
    tf: Any
    tmp: Path
    inventory: Path
    audit_log: Path
    lock_dir: Path
    run: Callable[..., Result]
    etcd: Any = None
    etcd_prefix: str = ""

    def vars(self, **extra: Any) -> dict[str, Any]:
        """Extra vars shared by every run."""
        return {"gitops_rollback_audit_log": str(self.audit_log), "rollback_lock_dir": str(self.lock_dir),
                "gitops_rollback_hosts": "fleet", **extra}

    def playbook(self, name: str, check: bool = False, ansible_env: dict | None = None, **extra: Any) -> Result:
        return self.run(PLAYBOOKS / name, inventory=self.inventory, extra_vars=self.vars(**extra),
                        check=check, env={**self.tf.env, **(ansible_env or {})})

    def play(self, tasks: list[dict], hosts: str = "fleet") -> Result:
        result = self.run([{"hosts": hosts, "gather_facts": False, "tasks": tasks}], inventory=self.inventory,
                          env=self.tf.env)
        assert result.ok, result
        return result

    # ----------------------------------------------------------------- deploys
    def deploy(self, tag: str) -> None:
        """Deploy a release in every layer: release dir, config, migrations + data, Terraform."""
        upto = {"v1": 3, "v2": 4}[tag]
        for host in self.fleet:
            (self.tmp / f"flags-{host.name}.json").write_text(json.dumps({"checkout_v2": tag == "v2"}) + "\n")
        if self.etcd is not None:
            self.etcd.ctl("put", self.etcd_prefix + "checkout_v2", json.dumps(tag == "v2"))
            if tag == "v2":
                self.etcd.ctl("put", self.etcd_prefix + "added_in_v2", "true")
        for host in self.fleet:
            build = self.tmp / f"build-{host.name}-{tag}"
            build.mkdir(parents=True, exist_ok=True)
            (build / "VERSION").write_text(f"{tag}\n")
            (build / "app.py").write_text(f"print('{host.name} {tag}')\n")
            host.write_text("/etc/app/app.conf", f"host={host.name}\nrelease={tag}\n")
            if tag == "v2":
                host.write_text("/etc/app/debug.env", "DEBUG=1\n")
        # Set-up, not what the tests prove: the modules run on the hosts without the controller.
        for host in self.fleet:
            done = host.module("gitops.rollback.release",
                               {"root": "/srv/app", "src": f"{self.tmp}/build-{host.name}-{tag}", "label": tag})
            assert done.ok, done
        write_migrations(self.tmp / "migrations", upto)
        done = self.fleet["h1"].module("gitops.rollback.db_migrate", {
            "operation": "apply", "migrations_dir": str(self.tmp / "migrations"), "label": tag,
            "engine": "postgresql", "database": self.database, "login_host": self.pg.host,
            "login_port": self.pg.port, "login_user": self.pg.user})
        assert done.ok, done
        if tag == "v1":
            self.sql("INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace');"
                     " INSERT INTO orders VALUES (10, 1, 9.5), (11, 2, 20)")
        else:
            self.sql("INSERT INTO coupons VALUES ('FREE', 100); UPDATE orders SET coupon = 'FREE'")
        self.tf.deploy(tag)

    def sql(self, statement: str) -> str:
        return self.pg.psql(statement, db=self.database)

    # ----------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """Every layer as a user would check it."""
        hosts = {}
        for host in self.fleet:
            hosts[host.name] = {
                "config": tree_digest(host.local("/etc/app")),
                "current": (host.local("/srv/app") / "current").readlink().name
                if (host.local("/srv/app") / "current").is_symlink() else None,
                "version": (host.local("/srv/app") / "current" / "VERSION").read_text()
                if (host.local("/srv/app") / "current").exists() else None,
                "flags": (self.tmp / f"flags-{host.name}.json").read_text(),
            }
        # one psql process for the whole database layer (each query as psql prints it alone: text, NULL as '')
        database = json.loads(self.sql("SELECT json_build_object(" + ", ".join(
            f"'{key}', coalesce(({query})::text, '')" for key, query in STATE_QUERIES.items()) + ")"))
        tables, columns, rows, customers, version = (database[key] for key in STATE_QUERIES)
        tfstate = self.tf.state()
        flags = self.etcd.ctl("get", "--prefix", self.etcd_prefix) if self.etcd is not None else ""
        return {"hosts": hosts, "etcd_flags": flags, "tables": tables, "orders_columns": columns, "orders": rows,
                "customers": customers, "schema_version": version,
                "tf_release": tfstate["outputs"]["release"]["value"], "tf_lineage": tfstate["lineage"],
                "tf_serial": tfstate["serial"],
                "tf_resources": sorted(r["name"] for r in tfstate["resources"])}

    def stores(self) -> dict[str, dict[str, str]]:
        """Every store, byte for byte: each host's store, the controller's store and the Terraform
        state files (state and backup)."""
        stores = {host.name: tree_digest(host.store) for host in self.fleet}
        tfstate = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in self.tf.project.glob("terraform.tfstate*")}
        return {**stores, "controller": tree_digest(self.tmp / "controller-store"), "terraform": tfstate}

    def audit(self) -> list[dict]:
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()]


def build_drill(fleet: Fleet, pg: PgServer, tmp: Path, git_repo, run, request=None, etcd=None) -> Drill:
    """Three hosts, PostgreSQL and Terraform wired into one inventory, v1 deployed in every layer
    (shared by the drill fixture and bench/bench_rollback.py)."""
    cli = tmp / "terraformrc"
    cli.write_text("")
    localhost = tmp / "localhost.ini"
    localhost.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    tf = TF._make_setup("local", request, tmp, git_repo, cli, localhost, run)
    database = "app_" + secrets.token_hex(4)
    pg.create_database(database)
    common = {
        "gitops_rollback_paths": ["/etc/app"],
        "gitops_rollback_release_root": "/srv/app",
        "gitops_rollback_terraform": [{"project_path": str(tf.project), "store_path": str(tmp / "controller-store"),
                                       "variables": {"labels": TF.LABELS}}],
        "gitops_rollback_services": [{"name": "app", "layers": ["release", "config"],
                                      "command": ["touch", str(tmp / "restarted-{{ inventory_hostname }}")]}],
    }
    hosts = {host.name: dict(fleet.host_vars(host), gitops_rollback_flags=[{"path": str(tmp / f"flags-{host.name}.json")}])
             for host in fleet}
    prefix = "/flags/%s/" % tmp.name
    if etcd is not None:  # h2's application also reads flags from etcd
        hosts["h2"]["gitops_rollback_flags"].append({"backend": "etcd", "etcd_endpoints": [etcd.endpoint],
                                                     "etcd_prefix": prefix})
    hosts["h1"]["gitops_rollback_databases"] = [{
        "engine": "postgresql", "database": database, "login_host": pg.host, "login_port": pg.port,
        "login_user": pg.user, "migrations_dir": str(tmp / "migrations")}]
    inventory = tmp / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "children": {"fleet": {"hosts": hosts, "vars": common}}}}))
    drill = Drill(fleet, pg, database, tf, tmp, inventory, tmp / "audit.jsonl", tmp / "locks", run, etcd, prefix)
    drill.deploy("v1")
    return drill


@dataclass
class DrillSnapshot:
    """A copy of everything a drill is made of, taken once: the hosts' files and stores, the drill's
    directory (flags files, Terraform project and state, controller store, migrations), its database
    and its etcd keys."""

    drill: Drill
    directory: Path
    template_database: str
    etcd_keys: list[tuple[str, str]]

    @classmethod
    def take(cls, drill: Drill, directory: Path) -> "DrillSnapshot":
        drill.fleet.snapshot(directory / "hosts")
        shutil.copytree(drill.tmp, directory / "drill", symlinks=True)
        template = drill.database + "_at_v2"
        drill.pg.psql(f'CREATE DATABASE "{template}" TEMPLATE "{drill.database}"')
        lines = drill.etcd.ctl("get", "--prefix", drill.etcd_prefix).splitlines() if drill.etcd is not None else []
        return cls(drill, directory, template, list(zip(lines[::2], lines[1::2])))

    def restore(self) -> Drill:
        """Put the drill back as it was when the copy was taken; return it."""
        drill = self.drill
        drill.fleet.restore(self.directory / "hosts")
        shutil.rmtree(drill.tmp)
        shutil.copytree(self.directory / "drill", drill.tmp, symlinks=True)
        drill.pg.drop_database(drill.database)
        drill.pg.psql(f'CREATE DATABASE "{drill.database}" TEMPLATE "{self.template_database}"')
        if drill.etcd is not None:
            drill.etcd.ctl("del", "--prefix", drill.etcd_prefix)
            for key, value in self.etcd_keys:
                drill.etcd.ctl("put", key, value)
        return drill


@pytest.fixture(scope="module")
def drill_at_v2(fleet: Fleet, postgres: PgServer, etcd, tmp_path_factory: pytest.TempPathFactory,
                collections_path: Path) -> Iterator[DrillSnapshot]:
    """Made once per module by real runs: three hosts at v1 in every layer, checkpointed as v1 with
    checkpoint.yml, then a bad v2 deployed in every layer; and a copy of all of it (the ``drill``
    fixture puts it back before each test, instead of a checkpoint.yml run per test)."""
    fleet.ensure_running()
    fleet.wipe()
    tmp = tmp_path_factory.mktemp("drill")

    def run(playbook: Any, inventory: Any = None, extra_vars: Any = None, check: bool = False, diff: bool = False,
            env: Any = None, **kwargs: Any) -> Result:
        return run_playbook(playbook, inventory or fleet.inventory, extra_vars, check, diff, env,
                            collections_dir=collections_path, cwd=tmp_path_factory.mktemp("run"), **kwargs)

    def git_repo(releases: dict, name: str = "repo") -> Any:
        return make_repo(tmp / name, releases)

    drill = build_drill(fleet, postgres, tmp, git_repo, run, None, etcd)
    drill.v1 = drill.state()
    checkpoint = drill.playbook("checkpoint.yml", checkpoint_label="v1")
    assert checkpoint.ok, [(e["host"], e["task"], e["result"].get("msg")) for e in checkpoint.events
                           if e.get("status") == "failed"] or checkpoint
    drill.deploy("v2")
    drill.v2 = drill.state()
    snapshot = DrillSnapshot.take(drill, tmp_path_factory.mktemp("drill-at-v2"))
    yield snapshot
    postgres.drop_database(drill.database)
    postgres.drop_database(snapshot.template_database)


@pytest.fixture
def drill(drill_at_v2: DrillSnapshot, clean_fleet: Fleet, run_playbook) -> Drill:
    """Three hosts at v1 in every layer, checkpointed as v1, then a bad v2 deployed in every layer (put
    back from the module's copy before each test)."""
    drill = drill_at_v2.restore()
    drill.run = run_playbook
    return drill
