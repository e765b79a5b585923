# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL database itself: its properties, and the privileges a restore needs.

``pg_restore`` without ``--create`` restores a database's contents only. What belongs to the
database itself (owner, encoding and locale, tablespace, connection limit, template flag,
privileges, comment, ``ALTER DATABASE ... SET`` and ``ALTER ROLE ... IN DATABASE ... SET``) is
read from the catalog when the backup is taken, recorded in the component as ``database_info``,
and applied to the restored copy before it takes the live database's place. The privileges a
restore needs are checked before anything changes, so a restore is refused, naming what is
missing, instead of failing half-way.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

# Settings whose value is a list of identifiers (pg_dump's variable_is_guc_list_quote).
LIST_QUOTED = ("local_preload_libraries", "search_path", "session_preload_libraries", "shared_preload_libraries",
               "temp_tablespaces", "unix_socket_directories")
PROVIDERS = {"c": "libc", "i": "icu", "b": "builtin"}


def ident(name: str) -> str:
    """Quote a PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """Quote a PostgreSQL string literal (standard_conforming_strings on)."""
    return "'" + value.replace("'", "''") + "'"


def untemplate_sql(database: str) -> str:
    """Return the statement that lets ``database`` be dropped when it is a template (a no-op otherwise), to run in
    the same psql call as the drop."""
    body = ("BEGIN IF EXISTS (SELECT 1 FROM pg_database WHERE datname = %s AND datistemplate) THEN EXECUTE %s; "
            "END IF; END" % (literal(database), literal("ALTER DATABASE %s IS_TEMPLATE false" % ident(database))))
    tag, number = "$gr$", 0
    while tag in body:
        number += 1
        tag = "$gr%d$" % number
    return "DO %s%s%s" % (tag, body, tag)


def info_sql(database: str) -> str:
    """Return the query whose one JSON row is the ``database_info`` of ``database``.

    Columns that only some server versions have (locale provider, ICU locale and rules) are read
    through ``to_jsonb`` of the catalog row, so the same query runs on PostgreSQL 13 to 17.
    """
    return (
        "SELECT json_build_object('encoding', pg_encoding_to_char(d.encoding), 'collate', d.datcollate, "
        "'ctype', d.datctype, 'owner', pg_get_userbyid(d.datdba), "
        "'locale_provider', to_jsonb(d) ->> 'datlocprovider', "
        "'locale', coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale'), "
        "'icu_rules', to_jsonb(d) ->> 'daticurules', 'tablespace', t.spcname, "
        "'connection_limit', d.datconnlimit, 'is_template', d.datistemplate, 'acl', d.datacl::text, "
        "'grants', (SELECT json_agg(json_build_object('grantor', pg_get_userbyid(a.grantor), 'grantee', "
        "CASE a.grantee WHEN 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, 'privilege', a.privilege_type, "
        "'grantable', a.is_grantable) ORDER BY a.n) FROM aclexplode(d.datacl) WITH ORDINALITY a(grantor, grantee, "
        "privilege_type, is_grantable, n)), "
        "'comment', shobj_description(d.oid, 'pg_database'), "
        "'settings', (SELECT json_agg(json_build_object('role', CASE s.setrole WHEN 0 THEN NULL "
        "ELSE pg_get_userbyid(s.setrole) END, 'config', s.setconfig) ORDER BY s.setrole) "
        "FROM pg_db_role_setting s WHERE s.setdatabase = d.oid)) "
        "FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s" % literal(database))


# ------------------------------------------------------------------------------------ creation
def create_sql(database: str, info: dict) -> str:
    """Return the CREATE DATABASE statement of an empty copy: encoding, locale, tablespace, owner."""
    sql = "CREATE DATABASE %s TEMPLATE template0" % ident(database)
    if info.get("encoding"):
        sql += " ENCODING %s LC_COLLATE %s LC_CTYPE %s" % (
            literal(info["encoding"]), literal(info["collate"]), literal(info["ctype"]))
    provider = PROVIDERS.get(info.get("locale_provider") or "c", "libc")
    if provider != "libc":
        sql += " LOCALE_PROVIDER %s" % provider
        if info.get("locale"):
            sql += " %s_LOCALE %s" % (provider.upper(), literal(info["locale"]))
        if info.get("icu_rules"):
            sql += " ICU_RULES %s" % literal(info["icu_rules"])
    if info.get("tablespace") and info["tablespace"] != "pg_default":
        sql += " TABLESPACE %s" % ident(info["tablespace"])
    if info.get("owner"):
        sql += " OWNER %s" % ident(info["owner"])
    return sql


# ---------------------------------------------------------------------------------- properties
def split_guc_list(value: str) -> List[str]:
    """Split a list setting's stored value (``app, "$user", public``) into its elements."""
    items, pos = [], 0
    while pos < len(value):
        while pos < len(value) and value[pos] in " \t\n,":
            pos += 1
        if pos >= len(value):
            break
        if value[pos] == '"':
            pos += 1
            item = ""
            while pos < len(value):
                if value[pos] == '"':
                    if value[pos + 1:pos + 2] == '"':
                        item += '"'
                        pos += 2
                        continue
                    pos += 1
                    break
                item += value[pos]
                pos += 1
        else:
            start = pos
            while pos < len(value) and value[pos] not in " \t\n,":
                pos += 1
            item = value[start:pos]
        items.append(item)
    return items


def setting_value(name: str, value: str) -> str:
    """Return the SQL for a stored ``name=value`` setting's value, quoted as pg_dump quotes it."""
    if name.lower() in LIST_QUOTED:
        return ", ".join(literal(item) for item in split_guc_list(value)) or "''"
    return literal(value)


def settings_statements(database: str, settings: Optional[List[dict]]) -> List[str]:
    """Return ALTER DATABASE/ROLE ... SET statements re-creating the recorded settings."""
    statements = []
    for entry in settings or []:
        target = "DATABASE %s" % ident(database) if not entry.get("role") else (
            "ROLE %s IN DATABASE %s" % (ident(entry["role"]), ident(database)))
        statements.append("ALTER %s RESET ALL" % target)
        for item in entry.get("config") or []:
            name, _sep, value = item.partition("=")
            statements.append("ALTER %s SET %s = %s" % (target, ident(name), setting_value(name, value)))
    return statements


def grant_statements(database: str, owner: Optional[str], grants: Optional[List[dict]]) -> List[str]:
    """Return REVOKE/GRANT statements that leave the database's ACL as recorded.

    None means the default ACL (nothing to do on a new database). Otherwise every privilege is
    revoked, then granted again per (grantor, grantee) in the recorded order, so the ACL comes
    back item by item; a grant whose grantor is not the owner is made as that grantor.
    """
    if grants is None:
        return []
    target = ident(database)
    statements = ["REVOKE ALL ON DATABASE %s FROM PUBLIC" % target]
    if owner:
        statements.append("REVOKE ALL ON DATABASE %s FROM %s" % (target, ident(owner)))
    order: List[Tuple[str, Optional[str]]] = []
    privileges: Dict[Tuple[str, Optional[str]], Dict[bool, List[str]]] = {}
    for grant in grants:
        key = (grant["grantor"], grant.get("grantee"))
        if key not in privileges:
            order.append(key)
            privileges[key] = {False: [], True: []}
        privileges[key][bool(grant["grantable"])].append(grant["privilege"])
    for grantor, grantee in order:
        who = ident(grantee) if grantee else "PUBLIC"
        for grantable in (False, True):
            if not privileges[(grantor, grantee)][grantable]:
                continue
            names = ", ".join(privileges[(grantor, grantee)][grantable])
            sql = "GRANT %s ON DATABASE %s TO %s%s" % (names, target, who, " WITH GRANT OPTION" if grantable else "")
            if owner and grantor != owner:
                sql = "SET ROLE %s; %s; RESET ROLE" % (ident(grantor), sql)
            statements.append(sql)
    return statements


def property_statements(database: str, info: dict) -> List[str]:
    """Return the statements that give an existing database the recorded properties (not locale/tablespace)."""
    target = ident(database)
    statements = []
    if info.get("owner"):
        statements.append("ALTER DATABASE %s OWNER TO %s" % (target, ident(info["owner"])))
    if info.get("connection_limit") is not None:
        statements.append("ALTER DATABASE %s CONNECTION LIMIT %d" % (target, int(info["connection_limit"])))
    if "comment" in info:
        statements.append("COMMENT ON DATABASE %s IS %s" % (
            target, literal(info["comment"]) if info["comment"] is not None else "NULL"))
    statements += grant_statements(database, info.get("owner"), info.get("grants"))
    if "settings" in info:
        statements += settings_statements(database, info.get("settings"))
    if info.get("is_template"):
        statements.append("ALTER DATABASE %s IS_TEMPLATE true" % target)
    return statements


def recorded_roles(info: dict) -> List[str]:
    """Return every role the recorded properties name (owner, grantors, grantees, role settings)."""
    roles = {info.get("owner")}
    for grant in info.get("grants") or []:
        roles.update((grant.get("grantor"), grant.get("grantee")))
    roles.update(entry.get("role") for entry in info.get("settings") or [])
    return sorted(role for role in roles if role)


# ---------------------------------------------------------------------------------- privileges
CLIENT_SESSION = "usesysid IS NOT NULL"
"""A row of pg_stat_activity that is a client's session: background workers (autovacuum) have no user, and a
non-superuser sees no backend_type of other roles' sessions. The server ends its own workers for a rename or drop."""


def privileges_sql(database: str, roles: List[str], tablespace: Optional[str], major: int) -> str:
    """Return the query whose one JSON row tells what the login role may do for a restore."""
    can_set = "SET" if major >= 16 else "MEMBER"
    names = "ARRAY[%s]::text[]" % ", ".join(literal(role) for role in roles) if roles else "ARRAY[]::text[]"
    return (
        "SELECT json_build_object('user', r.rolname, 'superuser', r.rolsuper, 'createdb', r.rolcreatedb, "
        "'createrole', r.rolcreaterole, "
        "'signal', pg_has_role(r.oid, (SELECT oid FROM pg_roles WHERE rolname = 'pg_signal_backend'), 'MEMBER'), "
        "'live_owner', (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %(db)s), "
        "'owns_live', (SELECT pg_has_role(r.oid, datdba, 'MEMBER') FROM pg_database WHERE datname = %(db)s), "
        "'roles', (SELECT coalesce(json_object_agg(o.rolname, json_build_object('set', pg_has_role(r.oid, o.oid, "
        "'%(set)s'), 'superuser', o.rolsuper)), '{}') FROM pg_roles o WHERE o.rolname = ANY(%(names)s)), "
        "'tablespace_create', (SELECT has_tablespace_privilege(r.oid, t.oid, 'CREATE') FROM pg_tablespace t "
        "WHERE t.spcname = %(ts)s), "
        "'sessions', (SELECT coalesce(json_agg(json_build_object('pid', a.pid, 'user', a.usename, 'database', "
        "a.datname, 'application', a.application_name, 'client', CASE WHEN a.client_port = -1 THEN 'local socket' "
        "ELSE coalesce(host(a.client_addr), 'an address hidden from this role') END, "
        "'superuser', coalesce(u.rolsuper, false), 'mine', coalesce(pg_has_role(r.oid, a.usesysid, 'MEMBER'), false)) "
        "ORDER BY a.pid), '[]') FROM pg_stat_activity a LEFT JOIN pg_roles u ON u.oid = a.usesysid "
        "WHERE a.datname = %(db)s AND a.pid <> pg_backend_pid() AND a.%(client)s)) "
        "FROM pg_roles r WHERE r.rolname = current_user"
        % {"db": literal(database), "set": can_set, "names": names, "ts": literal(tablespace or "pg_default"),
           "client": CLIENT_SESSION})


RUN_CLIENTS = frozenset(("psql", "pg_dump", "pg_restore", "gitops-rollback", "gitops-rollback-migrate",
                         "gitops-rollback-lock"))
"""Application names of the clients a backup, restore or migration run starts (libpq's defaults and the
migration sessions' own): the sessions a killed run leaves behind for a moment."""


def may_be_a_killed_run(sessions: List[dict]) -> bool:
    """True when every session could be one a killed run left behind (worth waiting for it to end); a
    session of any other application (a service) stays until it is stopped or ended."""
    return all(s.get("application") in RUN_CLIENTS for s in sessions)


def describe_sessions(sessions: List[dict]) -> str:
    """Return 'pid 123 (user app, application psql, from 127.0.0.1)' for each session."""
    return ", ".join("pid %s (user %s, application %s, from %s)" % (
        s["pid"], s["user"], s["application"] or "unnamed", s["client"]) for s in sessions[:10]) + (
        " and %d more" % (len(sessions) - 10) if len(sessions) > 10 else "")


def restore_problems(database: str, info: dict, facts: dict, live: bool, terminate_sessions: bool) -> List[str]:
    """Return what keeps the login role from restoring ``database`` as recorded (empty: nothing).

    ``facts`` is the row of ``privileges_sql``. Each problem names the missing privilege and the
    statement that grants it.
    """
    user, superuser = facts["user"], facts["superuser"]
    problems = []
    if not (superuser or facts["createdb"]):
        problems.append("creating the restored copy needs the CREATEDB attribute, which role %s lacks "
                        "(ALTER ROLE %s CREATEDB)" % (user, ident(user)))
    if live and not (superuser or facts["owns_live"]):
        live_owner = facts["live_owner"]
        problems.append("renaming or dropping the live database %s needs its ownership: it belongs to %s, not to "
                        "%s (GRANT %s TO %s, or log in as %s)"
                        % (database, live_owner, user, ident(live_owner), ident(user), live_owner))
    roles = facts.get("roles") or {}
    missing = [role for role in recorded_roles(info) if role not in roles]
    if missing:
        problems.append("the backup names roles this server does not have: %s (create them first, e.g. from "
                        "pg_dumpall --roles-only)" % ", ".join(missing))
    owner = info.get("owner")
    if owner and owner in roles and owner != user and not (superuser or roles[owner]["set"]):
        problems.append("making the restored database owned by %s, as it was, needs membership in that role "
                        "(GRANT %s TO %s)" % (owner, ident(owner), ident(user)))
    tablespace = info.get("tablespace")
    if tablespace and tablespace != "pg_default":
        if facts.get("tablespace_create") is None:
            problems.append("the backup lives in tablespace %s, which this server does not have (CREATE "
                            "TABLESPACE %s LOCATION '...')" % (tablespace, ident(tablespace)))
        elif not (superuser or facts["tablespace_create"]):
            problems.append("creating the database in tablespace %s needs the CREATE privilege on it (GRANT "
                            "CREATE ON TABLESPACE %s TO %s)" % (tablespace, ident(tablespace), ident(user)))
    others = sorted({entry["role"] for entry in info.get("settings") or [] if entry.get("role")} - {user})
    if others and not superuser:
        if not facts["createrole"] or any(roles.get(role, {}).get("superuser") for role in others):
            problems.append("re-creating the per-role settings of %s in this database (ALTER ROLE ... IN DATABASE "
                            "... SET) needs the CREATEROLE attribute, or SUPERUSER for superuser roles"
                            % ", ".join(others))
    problems += session_problems(database, facts, terminate_sessions)
    return problems


def session_problems(database: str, facts: dict, terminate_sessions: bool) -> List[str]:
    """Return why the sessions connected to ``database`` keep a restore from replacing it."""
    sessions = facts.get("sessions") or []
    if not sessions:
        return []
    if not terminate_sessions:
        return ["%d other session(s) are connected to %s: %s. Stop the application or end them, or set "
                "terminate_sessions=true to have the restore end them"
                % (len(sessions), database, describe_sessions(sessions))]
    if facts["superuser"]:
        return []
    protected = [s for s in sessions if s["superuser"]]
    foreign = [s for s in sessions if not s["mine"] and not s["superuser"]]
    problems = []
    if protected:
        problems.append("only a superuser can end the superuser sessions connected to %s: %s"
                        % (database, describe_sessions(protected)))
    if foreign and not facts["signal"]:
        problems.append("ending the sessions of other roles connected to %s (%s) needs membership in "
                        "pg_signal_backend (GRANT pg_signal_backend TO %s)"
                        % (database, describe_sessions(foreign), ident(facts["user"])))
    return problems
