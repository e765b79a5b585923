# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by the engine's unit tests."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.store import crypto as _crypto
from ansible_collections.gitops.rollback.plugins.module_utils.store import crypto_legacy as _crypto_legacy


@pytest.fixture
def fast_kdf(monkeypatch):
    """Keep the KDFs cheap in unit tests (the parameters are recorded, so stores stay consistent)."""
    monkeypatch.setattr(_crypto, "SCRYPT", {"n": 1024, "r": 8, "p": 1})
    monkeypatch.setattr(_crypto_legacy, "PBKDF2_ITERATIONS", 10)
