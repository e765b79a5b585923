"""Real-component test harness for the gitops.rollback collection.

Plain Python (no pytest dependency) so it can be used from pytest fixtures
(``tests/integration/conftest.py``) and from benchmark scripts alike.
"""

from __future__ import annotations

from .collection import (
    NO_ANSIBLE_ENV,
    Result,
    collections_path,
    repo_root,
    run_module,
    run_module_process,
    run_playbook,
    run_playbook_json,
    signal_and_wait_argv,
)
from .databases import DatabaseError, MariaDbServer, PgServer, start_mariadb, start_postgres
from .etcd import EtcdServer, start_etcd
from .gitrepo import RepoInfo, add_release, make_repo
from .hosts import STORE_DIR, Fleet, HarnessError, Host, MissingDependencyError, start_hosts
from .repository import REPOSITORY_MOUNT, RepositoryHost, start_repository_host

__all__ = [
    "signal_and_wait_argv",
    "NO_ANSIBLE_ENV",
    "STORE_DIR",
    "DatabaseError",
    "EtcdServer",
    "Fleet",
    "HarnessError",
    "Host",
    "MariaDbServer",
    "MissingDependencyError",
    "PgServer",
    "REPOSITORY_MOUNT",
    "RepoInfo",
    "RepositoryHost",
    "Result",
    "add_release",
    "collections_path",
    "make_repo",
    "repo_root",
    "run_module",
    "run_module_process",
    "run_playbook",
    "run_playbook_json",
    "start_hosts",
    "start_etcd",
    "start_mariadb",
    "start_postgres",
    "start_repository_host",
]
