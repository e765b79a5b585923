"""Where a restore may write: the check of a manifest's roots (plugins/module_utils/store/allowed_roots.py)."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import UnsafePathError
from ansible_collections.gitops.rollback.plugins.module_utils.store.allowed_roots import (
    allowed_paths, check_roots, root_problem, within)


def manifest(*paths: str, scope=None) -> dict:
    roots = [{"path": path, "tree": "0" * 64} for path in paths]
    if scope is not None:
        roots[0]["scope"] = scope
    return {"id": "20261121T220257.448Z-452f73", "roots": roots}


@pytest.mark.parametrize("path", ["relative/app", "", "/srv/app/../../etc/cron.d", "/srv/./app", "/srv/app/",
                                  "//srv/app", "/srv//app", "/srv/app\0", "/srv/app\n", "/srv/\x1bapp", "..", None, 7])
def test_a_root_that_is_not_an_absolute_normalised_path_is_refused_even_from_a_trusted_store(path):
    assert root_problem(path)
    with pytest.raises(UnsafePathError, match="damaged or forged"):
        check_roots(manifest("/srv/app", path))


@pytest.mark.parametrize("path", ["/", "/srv/app", "/etc/app.d/x y", "/srv/..app", "/srv/app..."])
def test_absolute_normalised_roots_pass(path):
    assert root_problem(path) is None
    check_roots(manifest(path))


def test_a_root_outside_the_allowed_paths_is_refused_naming_it_and_the_way_out():
    with pytest.raises(UnsafePathError) as raised:
        check_roots(manifest("/srv/app", "/etc/cron.d"), ["/srv/app"], source="the repository r")
    message = str(raised.value)
    assert "would restore /etc/cron.d" in message and "(from the repository r)" in message
    assert "allowed_paths" in message and "Nothing was fetched or changed" in message
    assert raised.value.details["available"] == ["/srv/app"]


@pytest.mark.parametrize("root,allowed", [
    ("/srv/app", ["/srv/app"]), ("/srv/app/conf", ["/srv/app"]), ("/srv/app", ["/etc", "/srv"]), ("/x", ["/"]),
])
def test_a_root_at_or_below_an_allowed_path_passes(root, allowed):
    check_roots(manifest(root), allowed)


@pytest.mark.parametrize("root,allowed", [
    ("/srv", ["/srv/app"]), ("/srv/application", ["/srv/app"]), ("/srv/app", []), ("/etc/cron.d", ["/etc/app"]),
])
def test_a_root_above_beside_or_without_an_allowed_path_is_refused(root, allowed):
    with pytest.raises(UnsafePathError, match="outside the paths"):
        check_roots(manifest(root), allowed)


def test_only_the_roots_written_count_and_a_scope_writes_only_below_it():
    forged = manifest("/srv/app", "/etc/cron.d")
    check_roots(forged, ["/srv/app"], written=[forged["roots"][0]])  # a restore narrowed to /srv/app
    scoped = manifest("/etc", scope=["app/nginx.conf"])
    check_roots(scoped, ["/etc/app"], written=scoped["roots"])
    with pytest.raises(UnsafePathError, match="/etc/cron.d"):
        check_roots(manifest("/etc", scope=["app/x", "cron.d"]), ["/etc/app"])


@pytest.mark.parametrize("rel", ["../cron.d", "/etc/cron.d", "a/../../b", "a\0"])
def test_a_scope_that_escapes_its_root_is_refused(rel):
    with pytest.raises(UnsafePathError):
        check_roots(manifest("/srv/app", scope=[rel]))


def test_allowed_paths_are_normalised_and_must_be_absolute():
    assert allowed_paths(["/srv/app/", "/etc//app"]) == ["/srv/app", "/etc/app"]
    assert within("/srv/app/x", allowed_paths(["/srv/app/"]))
    with pytest.raises(UnsafePathError, match="not an absolute path"):
        allowed_paths(["srv/app"])
