#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_restore
short_description: Restore a database from a checkpoint and prove it worked
version_added: 0.1.0
description:
  - Restores a PostgreSQL, MariaDB/MySQL or SQLite database from a backup taken by
    M(gitops.rollback.db_backup), found by checkpoint id or label.
  - Before anything is changed it re-hashes every object of the backup (and for PostgreSQL
    archives reads their table of contents with C(pg_restore --list)), checks the engine matches,
    connects to the server and takes the restore lock of the database; a second restore of the same
    database is refused, naming who holds the lock.
  - Then takes a safety backup of the live database into a new checkpoint (kind C(safety)), so the
    restore itself can be undone, restores, and compares every table's row count with the counts
    recorded at backup time.
  - O(mode=replace) replaces the database's content. When it exists, the restore loads beside it
    and swaps the copy in as O(mode=swap) does, dropping the previous content, so a restore killed
    half-way leaves the live database untouched; this needs room for a second copy meanwhile (a
    PostgreSQL or MariaDB name too long for the staging names is dropped and re-created in place
    instead). O(mode=swap) restores beside it into
    C(<database>__gr_restore_<id>), verifies it, and only then swaps names, keeping the previous
    database as C(<database>__gr_old_<UTC time>) (PostgreSQL C(ALTER DATABASE RENAME); MariaDB one
    atomic C(RENAME TABLE) of every table, views, routines, events and triggers re-created
    afterwards; SQLite a file rename).
  - PostgreSQL restores the database itself too, not only its contents, from what the backup
    recorded (owner, encoding, collation, ctype, locale provider and locale, tablespace, connection
    limit, template flag, database privileges, comment, C(ALTER DATABASE ... SET) and C(ALTER ROLE
    ... IN DATABASE ... SET)). They are applied to the restored copy before it takes the live
    database's place.
  - Before anything changes, PostgreSQL checks that O(login_user) holds every privilege the
    restore needs and refuses, naming the missing ones (see O(terminate_sessions) and the notes).
    The recorded properties are first applied to the live database inside a transaction that is
    rolled back, so a property the role may not set is found before the restore starts. A
    C(<database>__gr_restore_<id>) copy is dropped whenever a restore fails.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.store
  - gitops.rollback.db_connection
  - gitops.rollback.attributes
options:
  checkpoint:
    description:
      - Id, id prefix or label of the checkpoint holding the backup.
    type: str
    required: true
  source_database:
    description:
      - Name (SQLite path) of the backed-up database, when it differs from O(database), to restore a
        backup into another database.
    type: str
  mode:
    description:
      - V(replace) restores beside the live database, verifies the copy and renames it into place, then
        drops the previous database (a PostgreSQL or MariaDB name too long for the staging names is dropped
        and re-created in place instead). The C(rollback_database) and C(rollback) roles restore this way
        unless told otherwise.
      - V(swap) does the same but keeps the previous database as C(<database>__gr_old_<UTC time>) (see
        O(keep_old)).
    type: str
    choices: [replace, swap]
    default: replace
  jobs:
    description:
      - Parallel restore jobs (PostgreSQL custom and directory formats). With one job, C(pg_restore)
        runs in a single transaction.
    type: int
    default: 1
  safety_backup:
    description:
      - Back up the live database into a new checkpoint before changing it.
    type: bool
    default: true
  verify_row_counts:
    description:
      - Fail when a table's row count after the restore differs from the count recorded at backup
        time (in swap mode, before the live database is touched).
    type: bool
    default: true
  keep_old:
    description:
      - In swap mode, keep the previous database as C(<database>__gr_old_<UTC time>) (with C(_2), C(_3), ...
        appended when a database or file of that name exists, as after a second swap within the same second). When
        false it is dropped after the swap.
    type: bool
    default: true
  maintenance_db:
    description:
      - PostgreSQL database to connect to for C(CREATE), C(DROP) and C(ALTER DATABASE).
    type: str
    default: postgres
  terminate_sessions:
    description:
      - PostgreSQL. End the other sessions connected to the live database when it is replaced.
      - When false, a restore is refused before anything changes while other sessions are connected,
        naming each one (process id, user, application, client); a session that connects after that
        check and stays connected for 5 s fails the swap, which leaves the live database as it was.
      - Ending sessions of other roles needs membership in C(pg_signal_backend) (or SUPERUSER); a
        superuser's sessions can only be ended by a superuser.
    type: bool
    default: false
  restore_extra_args:
    description:
      - PostgreSQL custom and directory backups. More C(pg_restore) arguments, one list item each
        (for example V(--no-owner), V(--no-privileges) or V(--role=deploy)); write a long option that
        takes a value as V(--name=value).
      - Refused, with the reason, where they would break the restore's checks or take over what
        other options set, abbreviated or not, C(--file) (a script instead of a restore),
        C(--format), C(--jobs), C(--single-transaction), connection options, C(--create),
        C(--clean), C(--data-only), C(--schema-only), C(--section), C(--table), C(--index),
        C(--function), C(--trigger), C(--schema), C(--exclude-schema), C(--use-list), C(--list) (a
        partial restore fails the row count check), C(--version), C(--help). Refused for a plain
        SQL backup, which C(psql) restores.
    type: list
    elements: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows the current and the restored row count of every table.
notes:
  - "PostgreSQL privileges of O(login_user): C(CREATEDB) in every mode (the copy is a new
    database); ownership of the live database (membership in its owner role) to rename and drop it;
    membership in the backed-up owner role to create the copy owned by it; C(CREATE) on the
    backed-up tablespace; C(CREATEROLE) to re-create other roles' per-database settings; with
    O(terminate_sessions), C(pg_signal_backend) for other roles' sessions. A superuser has all of
    them. The safety backup needs what C(pg_dump) needs: read access to every table."
  - In MariaDB swap mode, views, routines, events and triggers are absent for the moment between
    the table move and their re-creation, and the kept old database holds its tables only. Each
    object is re-created in the session it was created in (C(sql_mode), client character set,
    connection and database collation, event time zone). A failed MariaDB swap puts the live
    database back as it was; RV(swap_phase) names the phase (see docs/databases.md).
  - A restore always reports a change; it is not idempotent by design (it replaces data).
seealso:
  - module: gitops.rollback.db_backup
  - module: gitops.rollback.db_backup_info
"""

EXAMPLES = r"""
- name: Roll the orders database back to the v2.3.0 checkpoint with minimal downtime
  gitops.rollback.db_restore:
    engine: postgresql
    database: orders
    login_host: db1.internal
    login_user: postgres
    login_password: "{{ vault_pg_password }}"
    checkpoint: v2.3.0
    mode: swap
    jobs: 4

- name: Show what a restore would do, with the row counts before and after
  gitops.rollback.db_restore:
    engine: mysql
    database: shop
    checkpoint: v2.3.0
  check_mode: true
  diff: true
"""

RETURN = r"""
restore:
  description: What was restored and how it was verified (in check mode, the plan).
  returned: always
  type: dict
  sample:
    checkpoint: 20261121T220657.696Z-42d293
    label: v2.3.0
    database: orders
    mode: swap
    safety_checkpoint: 20261121T230101.120Z-8db17e
    old_database: orders__gr_old_20261121T230102
    verification: {tables: 2, rows: 1120, differences: [], row_counts_exact: true, matched: true}
    duration_s: 1.245
    row_counts: {public.orders: 1000, public.customers: 120}
safety_checkpoint:
  description:
    - Id of the checkpoint holding the database as it was before the restore.
    - Also returned when the restore fails after the safety backup was taken; restore from it with O(checkpoint).
  returned: success, and failure after the safety backup
  type: str
  sample: 20261121T230101.120Z-8db17e
stage:
  description: On a failure while restoring, the step that failed (V(create), V(load), V(verify), V(properties) or V(swap)).
  returned: failure while restoring
  type: str
  sample: load
swap_phase:
  description:
    - On a failure of a MariaDB/MySQL swap, its phase (V(read), V(rehearse), V(prepare), V(move), V(objects) or
      V(cleanup)); up to V(prepare) the live database is untouched, after V(move) or V(objects) it was put back.
  returned: failure while swapping a MariaDB/MySQL database
  type: str
  sample: objects
live_database_touched:
  description: On a failure while restoring, whether the live database was changed (dropped and recreated in
    V(replace) mode without a staged copy, or not put back after a failed MariaDB swap).
  returned: failure while restoring
  type: bool
  sample: false
commands:
  description: The restore command (connection options and secrets left out).
  returned: always
  type: list
  elements: str
  sample: ["pg_restore --exit-on-error --jobs=4 --dbname orders <dump>"]
"""

from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import (
    RestoreRequest, plan_restore, restore,
)
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import DbConnection, db_connection_argument_spec
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.common.lock import default_owner
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


def argument_spec() -> dict:
    """Return the module's argument spec."""
    spec = dict(
        checkpoint=dict(type="str", required=True),
        source_database=dict(type="str"),
        mode=dict(type="str", choices=["replace", "swap"], default="replace"),
        jobs=dict(type="int", default=1),
        safety_backup=dict(type="bool", default=True),
        verify_row_counts=dict(type="bool", default=True),
        keep_old=dict(type="bool", default=True),
        terminate_sessions=dict(type="bool", default=False),
        restore_extra_args=dict(type="list", elements="str"),
        maintenance_db=dict(type="str", default="postgres"),
    )
    spec.update(db_connection_argument_spec())
    return spec


def main() -> None:
    module = RollbackModule(argument_spec(), store=True, supports_check_mode=True, error_details=(
        "differences", "problems", "stage", "swap_phase", "safety_checkpoint", "live_database_touched"))
    params = module.params
    store = Store(params["store_path"], params.get("encryption_key"))
    request = RestoreRequest(
        conn=DbConnection.from_params(params), checkpoint=params["checkpoint"],
        source_database=params["source_database"], mode=params["mode"], jobs=params["jobs"],
        safety_backup=params["safety_backup"], verify_row_counts=params["verify_row_counts"],
        keep_old=params["keep_old"], maintenance_db=params["maintenance_db"],
        terminate_sessions=params["terminate_sessions"], restore_extra_args=params["restore_extra_args"],
    )
    diff = None
    if module.check_mode or module.diff_mode:
        plan = module.run(lambda: plan_restore(store, request))
        diff = {"before": plan.pop("before"), "after": plan.pop("after")}
    if module.check_mode:
        module.exit_json(changed=True, restore=plan, commands=plan["commands"], diff=diff)
    result = module.run(lambda: restore(store, request, default_owner(params["owner"]), params["lock_timeout"]))
    extra = {"diff": diff} if diff else {}
    module.exit_json(changed=True, restore=result, safety_checkpoint=result["safety_checkpoint"],
                     commands=result["commands"], **extra)


if __name__ == "__main__":
    main()
