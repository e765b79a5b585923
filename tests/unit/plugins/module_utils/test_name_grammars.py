# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The grammars that check untrusted names match the whole name: a trailing newline is not part of any."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.db import migrate_layouts, mysql_objects
from ansible_collections.gitops.rollback.plugins.module_utils.release import build, operations, traffic
from ansible_collections.gitops.rollback.plugins.module_utils.replication import receiver
from ansible_collections.gitops.rollback.plugins.module_utils.store import root

GRAMMARS = [
    (receiver.NAME_RE, "ab" * 32), (receiver.ID_RE, "20261203T090000.000Z-abcdef"), (receiver.HOST_RE, "web1"),
    (root.SHA_RE, "ab" * 32), (root.ID_RE, "20261203T090000.000Z-abcdef"),
    (traffic._NAME, "app_backend"), (traffic._ADDRESS, "10.0.0.1:8080"), (traffic._PARAMETER, "max_fails=3"),
    (operations._ID_RE, "v1.4.0"), (build._HEX_RE, "abcdef1"), (mysql_objects._NAME, "utf8mb4"),
    (migrate_layouts.GITOPS_RE, "V1__init.up.sql"), (migrate_layouts.GOLANG_RE, "1_init.up.sql"),
    (migrate_layouts.DBMATE_RE, "20260101_init.sql"), (migrate_layouts.FLYWAY_RE, "V1__init.sql"),
    (migrate_layouts.FLYWAY_REPEATABLE_RE, "R__views.sql"),
]


@pytest.mark.parametrize("grammar,name", GRAMMARS, ids=[grammar.pattern[:30] for grammar, _name in GRAMMARS])
def test_a_name_is_accepted_whole_and_refused_with_a_trailing_newline(grammar, name):
    assert grammar.match(name)
    assert not grammar.match(name + "\n")
