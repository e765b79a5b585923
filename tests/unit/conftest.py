# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Settings for every unit test run."""

from __future__ import annotations

import gc

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what collection built out of the garbage collector's reach.

    ``ansible-test units`` runs each test in a fork of the collecting process. A collection in that child walks
    every object the parent holds and so copies the pages they are on; frozen objects are not walked. Nothing is
    lost: the frozen objects live as long as the run anyway.
    """
    del session
    gc.collect()
    gc.freeze()
