"""How pytest-xdist shares the tests among its workers (``-n 2``, as ``./dev.sh`` runs them).

Every test of a module runs on one worker, so a module-scoped fixture (the demo run, a fleet of
twenty hosts, a built collection) is made once (and the modules of a ``SHARED_SCOPES`` group run on one
worker together, so the session fixture they share is made once too), and the modules go out in collection order, which
``order_heaviest_first`` makes longest first: the workers then finish together instead of one of
them starting the demo last. (``--dist loadgroup`` is not used: pytest-xdist 3.8 marks the group
on ``item._nodeid``, which pytest 9 no longer reads, so the groups were silently ignored and each
worker made the demo.)

A conftest uses it with ``from harness.scheduling import pytest_xdist_make_scheduler``.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling

HEAVIEST_FIRST = (
    "tests/integration/drill/test_drill.py",  # the demo and three drills: about 240 s in one row
    "tests/integration/rollback/test_ordered_rollback.py",  # the dry runs and the rollbacks: about 280 s
    "tests/integration/faults/test_db_outage.py",
    "tests/integration/packaging/test_molecule.py",  # one scenario of the four layer roles, about 80 s
    "tests/integration/release/test_release.py",  # 4 runs, about 75 s
    "tests/integration/gitops/test_awx_runner.py",  # ansible-runner jobs
    "tests/integration/terraform/test_terraform_state.py",
    "tests/integration/rollback/test_hooks.py",
    "tests/integration/faults/test_kill_mariadb.py",
    "tests/integration/health/test_batch_gate.py",
    "tests/integration/load/test_load.py",
    "tests/integration/gitops/test_config_render.py",
    "tests/integration/health/test_guard.py",  # two guard.yml runs
    "tests/integration/faults/test_unreachable.py",
    "tests/integration/hosts/test_checkpoint_restore.py",
    "tests/integration/health/test_health_gate.py",
    "tests/integration/database/test_role.py",
    "tests/integration/report/test_report.py",
)
"""The modules that take longest, longest first, so the workers finish together instead of one of them
starting a long module last (a fresh-clone run: its Ansible runs, GITOPS_HARNESS_RUN_LOG, and the
component tests' durations); the others follow in their usual order. Only the order depends on this
list."""

SHARED_SCOPES = (
    # the session fixture ``checkpointed_copy`` (two checkpoint.yml runs on the fleet)
    ("tests/integration/gitops/test_awx_runner.py", "tests/integration/gitops/test_awx_cli_dry_run.py",
     "tests/integration/gitops/test_untrusted_payloads.py"),
    # the session fixture ``installed_cli`` (the collection built, installed, and pip-installed into a venv)
    ("tests/integration/gitops/test_hook.py", "tests/integration/gitops/test_readme_quick_start.py",
     "tests/integration/gitops/test_installed_cli.py"),
)
"""Modules that share an expensive session fixture run on one worker, which makes it once for all of them
(each worker that ran one of them made it again)."""

_SCOPES = {module: group[0] for group in SHARED_SCOPES for module in group}


class ModuleScheduling(LoadScopeScheduling):
    """Whole modules to each worker, in collection order (not reordered by their number of tests)."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)


def pytest_xdist_make_scheduler(config: Any, log: Any) -> ModuleScheduling:
    """pytest-xdist hook: the scheduler above whatever ``--dist`` says."""
    return ModuleScheduling(config, log)


def module_of(nodeid: str) -> str:
    """``tests/integration/x/test_y.py`` of a test id."""
    return nodeid.split("::", 1)[0]


def scope_of(nodeid: str) -> str:
    """What runs whole on one worker: the test's module, or the first module of its ``SHARED_SCOPES`` group."""
    module = module_of(nodeid)
    return _SCOPES.get(module, module)


def order_heaviest_first(items: list[Any]) -> None:
    """Sort ``items`` (in place, stable) so the modules of ``HEAVIEST_FIRST`` come first, in its order."""
    rank = {module: index for index, module in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(module_of(item.nodeid), len(rank)))
