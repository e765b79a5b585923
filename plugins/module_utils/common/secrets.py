# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets in option values: find them, show their carriers redacted, sign webhook bodies.

A URL carries a secret in its userinfo (``https://user:PASSWORD@host``, or a token alone as user
name: ``https://TOKEN@host``) or in a query parameter with a token-like name (``?token=...``,
``?api_key=...``). :func:`url_secrets` returns those parts so a module can add them to its
``no_log_values`` (Ansible then masks them in every result); :func:`redact_url` is the form used
in messages. Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from typing import List, Optional, Tuple

MASK = "********"
SIGNATURE_HEADER = "X-Gitops-Rollback-Signature-256"
# Query parameter names whose values are credentials (matched anywhere in the name, any case).
SECRET_PARAMETER = re.compile(r"token|key|secret|passw|pwd|auth|sig|credential|session", re.I)
_SCHEMES_WITH_TOKEN_USERS = ("http", "https")


def _split(url: str) -> Optional[urllib.parse.SplitResult]:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    return parts if parts.scheme and parts.netloc else None


def _userinfo(netloc: str) -> Tuple[str, Optional[str], Optional[str], str]:
    """(userinfo, user, password, host) of a netloc; user and password None when absent."""
    userinfo, sep, host = netloc.rpartition("@")
    if not sep:
        return "", None, None, netloc
    user, colon, password = userinfo.partition(":")
    return userinfo, user, password if colon else None, host


def url_secrets(url: Optional[str]) -> List[str]:
    """The secret parts of a URL: the password (or a lone HTTP user name) and token-like query values."""
    parts = _split(url or "")
    if parts is None:
        return []
    found = []
    _info, user, password, _host = _userinfo(parts.netloc)
    if password:
        found += [password, urllib.parse.unquote(password)]
    elif user and parts.scheme.lower() in _SCHEMES_WITH_TOKEN_USERS:
        found += [user, urllib.parse.unquote(user)]
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=False):
        if SECRET_PARAMETER.search(name):
            found += [value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)]
    return sorted({item for item in found if item})


def redact_url(url: Optional[str], origin_only: bool = False) -> str:
    """The URL with its secrets masked; ``origin_only`` keeps scheme, host and port (webhook URLs)."""
    text = url or ""
    parts = _split(text)
    if parts is None:
        return MASK if text else ""
    _info, user, password, host = _userinfo(parts.netloc)
    if origin_only:
        return "%s://%s/%s" % (parts.scheme, host, "..." if parts.path.strip("/") or parts.query else "")
    if password is not None:
        netloc = "%s:%s@%s" % (user, MASK, host)
    elif user and parts.scheme.lower() in _SCHEMES_WITH_TOKEN_USERS:
        netloc = "%s@%s" % (MASK, host)
    else:
        netloc = parts.netloc
    query = "&".join(
        "%s=%s" % (urllib.parse.quote_plus(name), MASK if SECRET_PARAMETER.search(name) else urllib.parse.quote_plus(value))
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def split_credentials(url: str) -> Tuple[str, Optional[Tuple[str, str]]]:
    """(URL without userinfo, (user, password) or None): urllib cannot send userinfo itself."""
    parts = _split(url)
    if parts is None:
        return url, None
    _info, user, password, host = _userinfo(parts.netloc)
    if user is None:
        return url, None
    bare = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, (urllib.parse.unquote(user), urllib.parse.unquote(password or ""))


def redact_text(text: str, values: List[str]) -> str:
    """``text`` with every one of ``values`` masked, longest first."""
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def signature(body: bytes, secret: str) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_valid(body: bytes, secret: str, header: Optional[str]) -> bool:
    """True when ``header`` is the signature of ``body`` under ``secret`` (constant-time comparison)."""
    return bool(header) and hmac.compare_digest(signature(body, secret), str(header))
