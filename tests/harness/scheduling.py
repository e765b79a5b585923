"""How pytest-xdist shares the tests among its workers (``-n 2``, as ``./dev.sh`` runs them).

Every test of a module runs on one worker, so a module-scoped fixture (the demo run, a fleet of
twenty hosts, a built collection) is made once, and the modules go out in collection order, which
``order_heaviest_first`` makes longest first: the workers then finish together instead of one of
them starting the demo last. (``--dist loadgroup`` is not used: pytest-xdist 3.8 marks the group
on ``item._nodeid``, which pytest 9 no longer reads, so the groups were silently ignored and each
worker made the demo.)

A conftest uses it with ``from harness.scheduling import pytest_xdist_make_scheduler``.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling

HEAVIEST_FIRST: dict[str, float] = {}
"""Seconds of CPU a module's tests took (measured with ``-n 2``); the modules not named here follow
in their usual order. Only the order depends on these figures."""


class ModuleScheduling(LoadScopeScheduling):
    """Whole modules to each worker, in collection order (not reordered by their number of tests)."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        return nodeid.split("::", 1)[0]


def pytest_xdist_make_scheduler(config: Any, log: Any) -> ModuleScheduling:
    """pytest-xdist hook: the scheduler above whatever ``--dist`` says."""
    return ModuleScheduling(config, log)


def module_of(nodeid: str) -> str:
    """``tests/integration/x/test_y.py`` of a test id."""
    return nodeid.split("::", 1)[0]


def order_heaviest_first(items: list[Any]) -> None:
    """Sort ``items`` (in place, stable) so the modules of ``HEAVIEST_FIRST`` come first, longest first."""
    items.sort(key=lambda item: -HEAVIEST_FIRST.get(module_of(item.nodeid), 0.0))
