# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring only some paths: each must be a managed path of the checkpoint, or nothing is done."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.files.capture import roots_of
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError

MANIFEST = {"id": "20261202T190000.000Z-abcdef", "label": "v1",
            "roots": [{"path": "/srv/app", "tree": None}, {"path": "/etc/app", "tree": None}]}


@pytest.mark.parametrize("only,expected", [((), ["/srv/app", "/etc/app"]), (["/etc/app"], ["/etc/app"]),
                                           (["/srv/app/", "/srv//app"], ["/srv/app"])])
def test_managed_paths_select_their_roots(only, expected):
    assert [root["path"] for root in roots_of(MANIFEST, only)] == expected


@pytest.mark.parametrize("only", [["/srv/other"], ["/srv/app", "/srv/app/index.html"], ["/"], ["/srv"]])
def test_a_path_the_checkpoint_does_not_manage_is_refused_listing_the_managed_ones(only):
    with pytest.raises(RollbackError) as caught:
        roots_of(MANIFEST, only)
    bad = next(path for path in only if path != "/srv/app")
    assert str(caught.value).startswith("%s is not a managed path of checkpoint v1 (%s); it manages: /srv/app, "
                                        "/etc/app. Nothing was changed." % (bad, MANIFEST["id"]))
    assert caught.value.details["available"] == ["/srv/app", "/etc/app"]
