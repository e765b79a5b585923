# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets inside URLs are found and masked; webhook bodies are signed like GitHub's X-Hub-Signature-256."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.controller import audit as _audit
from ansible_collections.gitops.rollback.plugins.module_utils.common.secrets import (
    MASK, SIGNATURE_HEADER, redact_url, signature, signature_valid, split_credentials, url_secrets)


@pytest.mark.parametrize("url, secrets, shown", [
    ("http://prom:pa%2Fss@prom:9090", ["pa%2Fss", "pa/ss"], "http://prom:********@prom:9090"),
    ("https://ghp_TOKEN@github.com/org/repo.git", ["ghp_TOKEN"], "https://********@github.com/org/repo.git"),
    ("https://app/health?api_key=K1&verbose=1", ["K1"], "https://app/health?api_key=********&verbose=1"),
    ("https://app/x?access_token=a+b&sig=S", ["S", "a b", "a%20b", "a+b"],
     "https://app/x?access_token=********&sig=********"),
    ("ssh://git@host/repo.git", [], "ssh://git@host/repo.git"),
    ("http://127.0.0.1:9090", [], "http://127.0.0.1:9090"),
    ("/srv/git/repo.git", [], MASK),
])
def test_secrets_in_urls_are_found_and_masked(url, secrets, shown):
    assert url_secrets(url) == sorted(secrets)
    assert redact_url(url) == shown


def test_webhook_urls_show_only_their_origin():
    assert redact_url("https://hooks.slack.com/services/T0/B0/XYZ", origin_only=True) == "https://hooks.slack.com/..."
    assert redact_url("https://user:pw@hooks.example.com:8443/", origin_only=True) == "https://hooks.example.com:8443/"


def test_credentials_leave_the_url_for_basic_authentication():
    assert split_credentials("http://prom:p%40ss@127.0.0.1:9090/api") == ("http://127.0.0.1:9090/api", ("prom", "p@ss"))
    assert split_credentials("http://127.0.0.1:9090") == ("http://127.0.0.1:9090", None)


def test_signature_is_github_style_hmac_sha256_of_the_exact_body():
    # GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature(b"Hello, World!", "It's a Secret to Everybody") == expected
    assert signature_valid(b"Hello, World!", "It's a Secret to Everybody", expected)
    assert not signature_valid(b"Hello, World?", "It's a Secret to Everybody", expected)
    assert not signature_valid(b"Hello, World!", "It's a Secret to Everybody", None)


def test_webhook_posts_are_signed_only_with_a_secret():
    body = b'{"event":"started"}'
    assert _audit.webhook_headers(body, "s")[SIGNATURE_HEADER] == signature(body, "s")
    assert SIGNATURE_HEADER not in _audit.webhook_headers(body, None)
