"""The public_entries filter (plugins/filter/public_entries.py)."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.gitops.rollback.plugins.filter.public_entries import public_entries


def test_secret_keys_are_removed_and_the_rest_kept_in_order():
    entries = [{"engine": "postgresql", "database": "shop", "login_password": "pw-1"},
               {"project_path": "/infra", "backend_config_secrets": {"password": "pw-2"}, "backend_config": {"a": 1}}]
    public = public_entries(entries)
    assert public == [{"engine": "postgresql", "database": "shop"},
                      {"project_path": "/infra", "backend_config": {"a": 1}}]
    assert "pw-" not in repr(public)
    assert entries[0]["login_password"] == "pw-1", "the entries themselves are left as they were"


@pytest.mark.parametrize("bad", ["shop", [{"a": 1}, "b"], None])
def test_anything_but_a_list_of_dicts_is_refused(bad):
    with pytest.raises(AnsibleFilterError, match="list of dictionaries"):
        public_entries(bad)
