# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a module process imports before it does any work (docs/benchmarks.md, "What a module's imports cost").

Ansible sends a module and its module_utils as source; the host compiles each imported file at every start. Code
that only one path of a module needs (etcd flags, a webhook, the shared PostgreSQL state, one database engine, one
layer of a safety checkpoint or a preview) is imported by that path, not by the module's import: these tests import
each module as Ansible's wrapper does (after ``ansible.module_utils.basic``) and list what got loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from ansible_collections.gitops.rollback.plugins.module_utils.common import errors as _errors

MODULES_DIR = Path(_errors.__file__).resolve().parents[2] / "modules"
MODULE_NAMES = sorted(path.stem for path in MODULES_DIR.glob("*.py") if path.stem != "__init__")
MU = "ansible_collections.gitops.rollback.plugins.module_utils."
#: Loaded by no module's import: HTTP and TLS (Ansible's urls pulls in cryptography's x509), the shared state's
#: driver, PyYAML (YAML flags files only).
NEVER_AT_START = ("ansible.module_utils.urls", "cryptography", "urllib.request", "ssl", "psycopg2", "yaml")
STAT_CACHE = (MU + "store.statcache",)  # a capture's and a restore plan's (the store imports it when they ask)
ENGINES = (MU + "db.pg", MU + "db.mysql", MU + "db.sqlite")
RUN_STATE = (MU + "store.store", MU + "controller.state_pg")  # audit records and run locks use neither by default
#: Per module, what its import must not load (beside NEVER_AT_START): the paths that need it import it.
NOT_AT_START: Dict[str, tuple] = {
    "rollback_safety": ENGINES + STAT_CACHE + tuple(MU + name for name in (
        "db.backup", "files.checkpoint_ops", "files.capture", "release.flags", "release.operations")),
    "rollback_preview": ENGINES + STAT_CACHE + tuple(MU + name for name in (
        "db.backup", "db.migrate", "files.capture", "files.restore_ops", "replication.client", "release.flags",
        "release.operations", "controller.safety")),
    "audit": RUN_STATE,
    "run_lock": RUN_STATE,
    "rollback_run": RUN_STATE,
    "db_backup": ENGINES + STAT_CACHE,
    "db_backup_info": ENGINES + STAT_CACHE,
    "db_restore": ENGINES + STAT_CACHE,
    "db_migrate": ENGINES + STAT_CACHE + (MU + "db.backup", MU + "store.store"),  # the store: a revert to a checkpoint
    "feature_flags": STAT_CACHE,
    "release": STAT_CACHE,
    "terraform_state": STAT_CACHE,
    "restore": (MU + "replication.client", MU + "replication.fetch"),
    "checkpoint_info": (MU + "files.capture",),
    "checkpoint_sync": (MU + "replication.fetch",),
    "rollback_report": tuple(MU + name for name in (
        "controller.state_pg", "report.html", "report.markdown", "report.prometheus")),
    "guard_cooldown": (MU + "controller.state_pg",),
    "health_check": (MU + "store.root",),
    "traffic_weights": (MU + "store.root",),
}
# One interpreter imports Ansible's basic module once, then forks a child per module that imports the module and
# sends back the names in sys.modules.
PROBE = r"""
import json, os, sys
import ansible.module_utils.basic
found = {}
for name in sys.argv[1:]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        __import__("ansible_collections.gitops.rollback.plugins.modules." + name)
        os.write(write_end, json.dumps(sorted(sys.modules)).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    found[name] = json.loads(b"".join(chunks) or b"null")
print(json.dumps(found))
"""


def loaded() -> Dict[str, List[str]]:
    """Module name -> the names in sys.modules once it is imported (None: its import failed)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    done = subprocess.run([sys.executable, "-c", PROBE] + MODULE_NAMES, env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def test_no_module_import_loads_code_that_only_some_runs_need():
    """One test, one probe of every module: ``ansible-test units`` runs each test in a fork of its own, where a
    fixture of module scope (the probe, a second of CPU) would be made again for every parametrized case."""
    problems = {}
    for name, modules in loaded().items():
        if modules is None:
            problems[name] = "its import failed"
            continue
        found = set(modules)
        early = [wanted for wanted in NEVER_AT_START + NOT_AT_START.get(name, ())
                 if wanted in found or any(module.startswith(wanted + ".") for module in found)]
        if early:
            problems[name] = "its import loads %s" % early
    assert len(MODULE_NAMES) > 20, MODULE_NAMES
    assert problems == {}, problems


def test_the_table_names_real_modules():
    assert set(NOT_AT_START) <= set(MODULE_NAMES)
