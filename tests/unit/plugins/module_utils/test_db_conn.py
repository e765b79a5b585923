# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client options built from the connection parameters."""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.gitops.rollback.plugins.doc_fragments.db_connection import ModuleDocFragment
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection, db_connection_argument_spec


@pytest.mark.parametrize("params,expected", [({}, "utf8mb4"), ({"client_charset": "latin1"}, "latin1")])
def test_every_mariadb_client_is_told_its_character_set(params, expected):
    conn = DbConnection.from_params(dict({"engine": "mysql", "database": "shop", "login_user": "u"}, **params))
    with conn.mysql_args() as args:
        assert args[-1] == "--default-character-set=%s" % expected


def test_doc_fragment_and_argument_spec_name_the_same_options():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    spec = db_connection_argument_spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"]
        assert documented[name].get("default") == option.get("default"), name


def test_mariadb_is_the_mysql_engine_under_another_name():
    """The example inventory writes ``engine: mariadb``: every module accepts it and names the engine mysql."""
    assert "mariadb" in db_connection_argument_spec()["engine"]["choices"]
    conn = DbConnection.from_params({"engine": "mariadb", "database": "shop", "login_user": "shop"})
    assert conn.engine == "mysql" and conn.describe() == "mysql://shop@localhost:default/shop"
