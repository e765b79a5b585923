# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which restores load beside the live database, so a killed one never leaves it half restored."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import uses_staging


@pytest.mark.parametrize("engine,mode,live,staged", [
    ("postgresql", "replace", True, True),  # a kill between DROP and the end of the load left no database
    ("postgresql", "swap", True, True),
    ("postgresql", "replace", False, False),  # nothing to protect: restore in place
    ("postgresql", "swap", False, False),
    ("sqlite", "replace", True, True),
    ("sqlite", "replace", False, True),
    ("mysql", "swap", True, True),
    ("mysql", "replace", True, True),  # a kill between DROP DATABASE and the end of the load left it half
    ("mysql", "replace", False, False),
])
def test_staging_protects_every_live_database(engine, mode, live, staged):
    assert uses_staging(engine, mode, live, "shop") is staged


@pytest.mark.parametrize("engine,limit", [("postgresql", 63), ("mysql", 64)])
def test_replace_loads_in_place_when_the_staging_names_would_be_truncated(engine, limit):
    longest = "d" * (limit - len("__gr_old_20261122T010203"))
    assert uses_staging(engine, "replace", True, longest)
    assert not uses_staging(engine, "replace", True, longest + "d")
    assert uses_staging(engine, "swap", True, longest + "d")  # swap refuses it later, naming the limit
