# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of nginx upstream rendering, validation and weight splits."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.release.traffic import (
    Nginx, Server, TrafficError, parse_weights, render, shares, split,
)


def test_render_and_parse_round_trip():
    servers = [Server("127.0.0.1:8001", 3, ("max_fails=3",)), Server("127.0.0.1:8002", 0)]
    text = render("app", servers)
    assert "server 127.0.0.1:8001 weight=3 max_fails=3;" in text
    assert "server 127.0.0.1:8002 down;" in text
    assert parse_weights(text) == {"127.0.0.1:8001": 3, "127.0.0.1:8002": 0}


@pytest.mark.parametrize("upstream,servers,message", [
    ("app; evil", [Server("a:1", 1)], "upstream name"),
    ("app", [Server("a:1; include /etc/x", 1)], "not host"),
    ("app", [Server("a:1", 1, ("weight=5",))], "weight/down"),
    ("app", [Server("a:1", 0), Server("b:1", 0)], "every weight is 0"),
    ("app", [Server("a:1", 1), Server("a:1", 2)], "twice"),
    ("app", [Server("a:1", 5000)], "0..1000"),
    ("app", [], "at least one server"),
])
def test_bad_weights_are_refused(upstream, servers, message):
    with pytest.raises(TrafficError, match=message):
        render(upstream, servers)


@pytest.mark.parametrize("percent,stable,canary,expected", [
    (100, ["s"], ["c"], {"s": 0.0, "c": 100.0}),
    (50, ["s"], ["c"], {"s": 50.0, "c": 50.0}),
    (0, ["s"], ["c"], {"s": 100.0, "c": 0.0}),
    (10, ["s1", "s2", "s3"], ["c"], {"s1": 30.0, "s2": 30.0, "s3": 30.0, "c": 10.0}),
])
def test_split_gives_exact_group_shares(percent, stable, canary, expected):
    assert shares(split(stable, canary, percent)) == expected


def test_split_reduces_weights():
    assert [s.weight for s in split(["s"], ["c"], 50)] == [1, 1]


def test_nginx_argv_is_a_list():
    nginx = Nginx("nginx", ["-p", "/srv/lb", "-c", "/srv/lb/nginx.conf"])
    assert nginx.test_argv() == ["nginx", "-p", "/srv/lb", "-c", "/srv/lb/nginx.conf", "-t", "-q"]
    assert nginx.reload_argv()[-2:] == ["-s", "reload"]
    assert Nginx(reload_command=["systemctl", "reload", "nginx"]).reload_argv() == ["systemctl", "reload", "nginx"]
