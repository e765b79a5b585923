# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL database properties: the statements that re-create them and the privilege pre-flight."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.db.pg_props import (
    create_sql, grant_statements, privileges_sql, property_statements, restore_problems, setting_value, split_guc_list,
)

FACTS = {"user": "deploy", "superuser": False, "createdb": True, "createrole": False, "signal": False,
         "live_owner": "deploy", "owns_live": True, "roles": {"deploy": {"set": True, "superuser": False}},
         "tablespace_create": True, "sessions": []}


@pytest.mark.parametrize("stored,items", [
    ('app, "$user", public', ["app", "$user", "public"]),
    ('"with ""quote""",x', ['with "quote"', "x"]),
    ("", []),
])
def test_list_settings_split_as_the_server_stores_them(stored, items):
    assert split_guc_list(stored) == items


def test_list_settings_are_quoted_per_element_and_others_as_one_literal():
    assert setting_value("search_path", 'app, "$user"') == "'app', '$user'"
    assert setting_value("work_mem", "8MB") == "'8MB'"
    assert setting_value("application_name", "it's") == "'it''s'"


def test_create_keeps_provider_locale_tablespace_and_owner():
    sql = create_sql("shop", {"encoding": "LATIN1", "collate": "C", "ctype": "C", "locale_provider": "i",
                              "locale": "de", "tablespace": "fast", "owner": "app"})
    assert sql == ("CREATE DATABASE \"shop\" TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                   "LOCALE_PROVIDER icu ICU_LOCALE 'de' TABLESPACE \"fast\" OWNER \"app\"")
    assert "LOCALE_PROVIDER" not in create_sql("shop", {"locale_provider": "c"})  # servers before 15 lack it


def test_acl_comes_back_item_by_item_in_its_order():
    grants = [{"grantor": "own", "grantee": "own", "privilege": p, "grantable": False} for p in ("CREATE", "CONNECT")]
    grants += [{"grantor": "own", "grantee": "w", "privilege": "CONNECT", "grantable": True},
               {"grantor": "own", "grantee": "w", "privilege": "TEMPORARY", "grantable": False},
               {"grantor": "w", "grantee": None, "privilege": "CONNECT", "grantable": False}]
    assert grant_statements("d", "own", grants) == [
        'REVOKE ALL ON DATABASE "d" FROM PUBLIC', 'REVOKE ALL ON DATABASE "d" FROM "own"',
        'GRANT CREATE, CONNECT ON DATABASE "d" TO "own"',
        'GRANT TEMPORARY ON DATABASE "d" TO "w"', 'GRANT CONNECT ON DATABASE "d" TO "w" WITH GRANT OPTION',
        'SET ROLE "w"; GRANT CONNECT ON DATABASE "d" TO PUBLIC; RESET ROLE']
    assert grant_statements("d", "own", None) == []  # the default ACL: nothing to do


def test_properties_reset_what_the_copy_must_not_have_and_set_the_rest():
    statements = property_statements("d", {"owner": "own", "connection_limit": 7, "comment": None, "is_template": True,
                                           "settings": [{"role": "r", "config": ["work_mem=16MB"]}]})
    assert statements == ['ALTER DATABASE "d" OWNER TO "own"', 'ALTER DATABASE "d" CONNECTION LIMIT 7',
                          'COMMENT ON DATABASE "d" IS NULL', 'ALTER ROLE "r" IN DATABASE "d" RESET ALL',
                          'ALTER ROLE "r" IN DATABASE "d" SET "work_mem" = \'16MB\'',
                          'ALTER DATABASE "d" IS_TEMPLATE true']


def test_a_role_with_every_privilege_may_restore():
    assert restore_problems("shop", {"owner": "deploy"}, FACTS, live=True, terminate_sessions=False) == []


@pytest.mark.parametrize("change,info,phrase", [
    ({"createdb": False}, {}, "ALTER ROLE \"deploy\" CREATEDB"),
    ({"owns_live": False, "live_owner": "dba"}, {}, "it belongs to dba, not to deploy (GRANT \"dba\" TO \"deploy\""),
    ({}, {"owner": "ghost"}, "roles this server does not have: ghost"),
    ({"roles": {"deploy": {"set": True, "superuser": False}, "app": {"set": False, "superuser": False}}},
     {"owner": "app"}, "membership in that role (GRANT \"app\" TO \"deploy\")"),
    ({"tablespace_create": None}, {"tablespace": "fast"}, "tablespace fast, which this server does not have"),
    ({"tablespace_create": False}, {"tablespace": "fast"}, "GRANT CREATE ON TABLESPACE \"fast\""),
    ({"roles": {"deploy": {"set": True, "superuser": False}, "r": {"set": True, "superuser": False}}},
     {"settings": [{"role": "r", "config": ["work_mem=1MB"]}]}, "needs the CREATEROLE attribute"),
])
def test_each_missing_privilege_is_named_with_its_grant(change, info, phrase):
    facts = dict(FACTS, **change)
    problems = restore_problems("shop", info, facts, live=True, terminate_sessions=False)
    assert len(problems) == 1 and phrase in problems[0], problems


def test_sessions_are_named_and_ended_only_when_asked_and_allowed():
    sessions = [{"pid": 41, "user": "web", "application": "puma", "client": "10.0.0.5", "superuser": False,
                 "mine": False}]
    facts = dict(FACTS, sessions=sessions)
    refused = restore_problems("shop", {}, facts, live=True, terminate_sessions=False)
    assert "pid 41 (user web, application puma, from 10.0.0.5)" in refused[0] and "terminate_sessions=true" in refused[0]
    refused = restore_problems("shop", {}, facts, live=True, terminate_sessions=True)
    assert "GRANT pg_signal_backend TO \"deploy\"" in refused[0]
    assert restore_problems("shop", {}, dict(facts, signal=True), live=True, terminate_sessions=True) == []
    supers = [dict(sessions[0], superuser=True)]
    refused = restore_problems("shop", {}, dict(facts, signal=True, sessions=supers), live=True, terminate_sessions=True)
    assert "only a superuser" in refused[0]


def test_only_client_sessions_keep_a_restore_from_replacing_the_database():
    """An autovacuum worker on the live database is listed in pg_stat_activity without a user or application;
    the server ends it itself for a rename or drop, so it is no session the restore must wait for or refuse."""
    sql = privileges_sql("shop", [], None, 15)
    sessions = sql[sql.index("'sessions'"):]
    assert "a.usesysid IS NOT NULL" in sessions


def _session(pid: int, application: str) -> dict:
    return {"pid": pid, "user": "web", "application": application, "client": "10.0.0.5", "superuser": False,
            "mine": True}


@pytest.mark.parametrize("application, grace", [("billing-worker", False), ("", False), ("pg_restore", True),
                                                ("psql", True), ("gitops-rollback-migrate", True)])
def test_a_restore_waits_for_sessions_only_when_a_killed_run_may_have_left_them(monkeypatch, application, grace):
    """The grace (a killed run's pg_restore or psql backends end within moments) is not spent on a service's
    session, which stays until it is stopped: that restore is refused at once."""
    import json  # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.db import pg  # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection  # pylint: disable=import-outside-toplevel

    reads = []
    clock = [0.0]

    def fake_sql(_engine, _query, *_args, **_kwargs):
        reads.append(clock[0])
        return [json.dumps(dict(FACTS, sessions=[_session(41, application)]))]

    monkeypatch.setattr(pg.PgEngine, "sql", fake_sql)
    monkeypatch.setattr(pg.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pg.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    engine = pg.PgEngine(DbConnection("postgresql", "shop", host="db1", port=5433, user="deploy"))
    with pytest.raises(pg.DatabaseError, match="pid 41 .*terminate_sessions=true"):
        engine.check_restore("shop", {"owner": "deploy"}, live=True, terminate_sessions=False, version="15.4")
    waited = reads[-1] - reads[0]
    assert waited >= pg.SESSION_GRACE if grace else waited == 0, reads
