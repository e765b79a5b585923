# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs matching the doc fragments (one function per fragment, fresh dicts)."""

from __future__ import annotations

from ..common.labels import check_new_label
from ..store.location import DEFAULT_STORE


def store_argument_spec() -> dict:
    """Return the argument spec of the store doc fragment."""
    return dict(
        store_path=dict(type="path", default=DEFAULT_STORE),
        lock_timeout=dict(type="float", default=0),
        owner=dict(type="str"),
        encryption_key=dict(type="str", no_log=True),
    )


def repository_argument_spec(required: bool = False) -> dict:
    """Return the argument spec of the repository doc fragment (``required`` for checkpoint_sync)."""
    return dict(repository=dict(type="dict", required=required, options=dict(
        host=dict(type="str", required=True),
        port=dict(type="int", default=22),
        user=dict(type="str"),
        path=dict(type="str", required=True),
        name=dict(type="str"),
        private_key=dict(type="str", no_log=True),
        private_key_file=dict(type="path"),
        known_hosts=dict(type="str"),
        connect_timeout=dict(type="int", default=30),
    ), mutually_exclusive=[("private_key", "private_key_file")]))


def check_label_options(params: dict, *names: str) -> None:
    """Refuse (BadLabel) the first of the options ``names`` that is set and outside the label grammar."""
    for name in names:
        check_new_label(params.get(name), name)
