"""The shared-state setting: which values select PostgreSQL, and how a URL is shown."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.controller.state_pg import (
    PgState, is_state_url, open_state, redacted)


@pytest.mark.parametrize("value, chosen", [
    ("", False), (None, False), ("postgresql://u:p@db/state", True), ("postgres://db/state", True),
    ("mysql://root@db/state", False), ("/var/lib/state", False), (" postgresql://db", False)])
def test_only_a_postgresql_url_selects_the_shared_state(value, chosen) -> None:
    assert is_state_url(value) is chosen


def test_empty_means_local_files() -> None:
    assert open_state("") is None and open_state(None) is None


def test_any_other_value_is_refused_naming_the_setting_and_without_the_password() -> None:
    with pytest.raises(RollbackError) as caught:
        PgState("mysql://root:s3cret@db/state")
    assert "gitops_rollback_state" in str(caught.value) and "postgresql://" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_a_url_is_shown_without_its_password() -> None:
    assert redacted("postgresql://gr:s3cret@db.example:5432/state") == "postgresql://gr:********@db.example:5432/state"
    assert redacted("postgresql://db/state") == "postgresql://db/state"


@pytest.mark.parametrize("url", [
    "postgresql://gr@db.example/state?password=s3cret&sslmode=require",  # libpq takes the password as a parameter
    "postgresql://gr@db.example/state?sslpassword=s3cret",
    "postgresql://gr:s3c@ret@db.example/state",                          # an unencoded '@' in the password
    "host=db.example dbname=state password=s3cret",                     # a libpq key=value DSN
])
def test_no_form_of_the_state_setting_shows_its_password(url: str) -> None:
    assert "s3cret" not in redacted(url) and "ret@" not in redacted(url)
    with pytest.raises(RollbackError) as caught:
        PgState(url.replace("postgresql://", "postgres-x://"))
    assert "s3cret" not in str(caught.value)
