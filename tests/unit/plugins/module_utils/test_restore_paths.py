# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring only some paths: each must be a managed path of the checkpoint or lie below one, or nothing is done."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.files.capture import narrow, roots_of
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError

MANIFEST = {"id": "20261202T190000.000Z-abcdef", "label": "v1",
            "roots": [{"path": "/srv/app", "tree": None}, {"path": "/etc/app", "tree": None}]}


@pytest.mark.parametrize("only,expected", [((), ["/srv/app", "/etc/app"]), (["/etc/app"], ["/etc/app"]),
                                           (["/srv/app/", "/srv//app"], ["/srv/app"])])
def test_managed_paths_select_their_roots(only, expected):
    assert [root["path"] for root in roots_of(MANIFEST, only)] == expected
    assert not any("scope" in root for root in roots_of(MANIFEST, only))


@pytest.mark.parametrize("only,scopes", [
    (["/etc/app/nginx.conf"], {"/etc/app": ["nginx.conf"]}),
    (["/srv/app/static", "/etc/app/nginx.conf", "/srv/app/static/css/", "/srv/app/a/../b"],
     {"/srv/app": ["b", "static"], "/etc/app": ["nginx.conf"]}),
    (["/srv/app/static", "/srv/app"], {"/srv/app": None}),  # the whole root wins over a part of it
])
def test_a_path_below_a_managed_root_narrows_that_root_to_it(only, scopes):
    chosen = {root["path"]: root.get("scope") for root in roots_of(MANIFEST, only)}
    assert chosen == scopes


@pytest.mark.parametrize("only", [["/srv/other"], ["/srv/app", "/srv/apple/index.html"], ["/"], ["/srv"],
                                  ["srv/app/index.html"], ["/srv/app/../other"]])
def test_a_path_outside_every_managed_root_is_refused_listing_the_managed_ones(only):
    with pytest.raises(RollbackError) as caught:
        roots_of(MANIFEST, only)
    bad = next(path for path in only if path != "/srv/app")
    assert str(caught.value).startswith("%s is not a managed path of checkpoint v1 (%s) nor below one; it manages: "
                                        "/srv/app, /etc/app. Nothing was changed." % (bad, MANIFEST["id"]))
    assert caught.value.details["available"] == ["/srv/app", "/etc/app"]


def test_a_scoped_record_is_narrowed_further_never_widened():
    assert narrow(["conf.d", "nginx.conf"], None) == ["conf.d", "nginx.conf"]
    assert narrow(["conf.d", "nginx.conf"], ["conf.d/site.conf"]) == ["conf.d/site.conf"]
    assert narrow(["conf.d/site.conf"], ["conf.d"]) == ["conf.d/site.conf"]
    assert narrow(["conf.d"], ["other.conf"]) == []
    scoped = {"id": "20261202T200000.000Z-123456", "label": "safety/r1",
              "roots": [{"path": "/etc/app", "tree": None, "scope": ["nginx.conf"]}]}
    assert roots_of(scoped, ["/etc/app"])[0]["scope"] == ["nginx.conf"]
    with pytest.raises(RollbackError, match="holds nothing of /etc/app/other.conf: it holds only /etc/app/nginx.conf"):
        roots_of(scoped, ["/etc/app/other.conf"])
