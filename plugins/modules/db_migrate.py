#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_migrate
short_description: Apply and revert versioned SQL migrations, with a rollback SQL preview
version_added: 0.1.0
description:
  - Applies the migrations of a directory (C(V0001__create_users.up.sql) and
    C(V0001__create_users.down.sql)) to PostgreSQL, MariaDB/MySQL or SQLite, and reverts them to a
    version, a label (Git tag), by count or to a date.
  - Reads the file layouts of golang-migrate, dbmate and Flyway too (O(layout)), so an existing chain
    runs unchanged. On MariaDB/MySQL each statement reaches the server whole, so procedures and
    triggers need no C(DELIMITER).
  - A history table C(gitops_rollback_migrations) in the target database records version, name,
    SHA-256 of the up and down files, applied time, who applied it, the AWX job id, duration, the
    label and the state (C(applied) or C(dirty)). Labels live in C(gitops_rollback_labels).
  - "Each migration runs in its own transaction on PostgreSQL and SQLite, unless its leading comment
    lines say C(-- gitops-rollback: no-transaction) (for example for C(CREATE INDEX CONCURRENTLY)).
    On MariaDB/MySQL, DDL cannot be rolled back; a migration that fails half-way outside a
    transaction stays recorded as C(dirty) and every later run refuses with the recovery steps until
    O(operation=resolve) marks it."
  - Check mode returns in RV(sql) the exact scripts that would run, in order (the rollback SQL
    preview); a real run returns the scripts it ran.
  - A revert refuses, before running anything, when an applied migration's files changed since it
    was applied (unless O(force)), or when it would cross an irreversible migration; then the
    message names the checkpoint database backup to restore instead. An apply refuses such drift
    too (unless O(allow_drift)); O(operation=repair) accepts reviewed changes.
  - A lock (PostgreSQL advisory lock, MariaDB C(GET_LOCK), SQLite immediate transaction, plus an
    owner row with an expiry in C(gitops_rollback_lock)) keeps two runs apart. The lock of a
    crashed run is recovered without manual SQL.
  - See C(docs/migrations.md) in the collection for file naming and the history table.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.db_connection
  - gitops.rollback.store
  - gitops.rollback.attributes
options:
  operation:
    description:
      - V(status) reports applied, pending, dirty and drifted migrations and the labels.
      - V(apply) applies pending migrations up to O(version) (default the latest).
      - V(revert) reverts to O(checkpoint), O(version), O(label), by O(count) or to O(date) (one of them).
      - V(label) records O(label) for the current version (or O(version)).
      - V(resolve) marks the dirty O(version) as O(resolve_as) after it was repaired by hand.
      - V(verify) proves on a scratch copy of the schema that each pending migration can be
        reverted (up, down, up; the schema after down must equal the schema before up). The
        scratch copy is created and dropped even in check mode; the database is not touched.
      - V(baseline) adopts a database whose schema already is at O(version); it records the
        migrations up to O(version) as applied without running them. The database must have no
        migration history yet.
      - V(repair) accepts the current files of applied migrations whose checksums changed (all of
        them, or only O(version)), after review; the history rows then say C(direction=repair), and the
        table C(gitops_rollback_repairs) keeps the checksums replaced and accepted, who and when.
    type: str
    choices: [status, apply, revert, label, resolve, verify, baseline, repair]
    default: status
  migrations_dir:
    description:
      - Directory of migration files on the managed host. Needed by V(apply), V(revert),
        V(verify); V(status) uses it to list pending and drifted migrations.
      - A revert of migrations whose files are not in this directory uses the down scripts
        recorded in the history table when they were applied.
    type: path
  layout:
    description:
      - How the files of O(migrations_dir) are named.
      - V(gitops) C(V0001__name.up.sql) and C(V0001__name.down.sql).
      - V(golang-migrate) C(000001_name.up.sql) and C(000001_name.down.sql).
      - V(dbmate) one file C(20260101120000_name.sql) with C(-- migrate:up) and C(-- migrate:down) sections.
      - V(flyway) C(V1__name.sql) and the undo script C(U1__name.sql), versions with parts too
        (C(V1.2.3__name.sql), C(V1_2__name.sql) = 1.2), ordered as numbers part by part (1.10 after 1.9);
        repeatable C(R__name.sql) files are ignored with a warning.
      - V(auto) picks the one layout every C(.sql) file of the directory fits, and fails when there is none.
    type: str
    choices: [auto, gitops, golang-migrate, dbmate, flyway]
    default: auto
  version:
    description:
      - V(apply) target version, V(revert) target version (V(0) reverts everything), the version
        to V(label), to V(resolve), to V(baseline) or to V(repair). Given as V(12), V(0012) or V(V0012).
      - With O(layout=flyway), a Flyway version such as V(1.2.3) or V(1_2) (see C(docs/migrations.md) for how
        it is recorded).
    type: str
  label:
    description:
      - The label (Git tag). With V(revert), revert to the version recorded for it; with V(apply),
        record it for the version reached and in the history rows; with V(label), record it.
    type: str
  checkpoint:
    description:
      - With V(revert), revert to the migration version that this checkpoint's backup of the database
        recorded (M(gitops.rollback.db_backup) records it beside the dump), read from O(store_path).
      - Give the checkpoint id (the rollback role passes the id its plan resolved, once), so that a label
        recorded or moved since then does not change what is reverted.
    type: str
  count:
    description:
      - V(revert) the last O(count) applied migrations.
    type: int
  date:
    description:
      - V(revert) every migration applied after this ISO 8601 date or time (UTC unless an offset
        is given), for example V(2026-11-21T14:30:00Z).
    type: str
  force:
    description:
      - Revert even though applied migrations' files changed since (checksum drift); move an
        existing label to another version.
    type: bool
    default: false
  allow_drift:
    description:
      - With V(apply), apply pending migrations even though applied migrations' files changed since
        they were applied (checksum drift); a warning names them. Without it the apply is refused.
    type: bool
    default: false
  resolve_as:
    description:
      - With V(resolve), V(applied) when the whole up script is in effect, V(reverted) when none of it is.
    type: str
    choices: [applied, reverted]
  verify_reversible:
    description:
      - With V(apply), first run V(verify) on the migrations about to be applied and fail before
        applying any of them if one is not reversible.
    type: bool
    default: false
  applied_by:
    description:
      - Who applies, recorded in the history. Default C(user@host) of the managed host.
    type: str
  job_id:
    description:
      - AWX/Tower job id recorded in the history. Default E(AWX_JOB_ID) or E(JOB_ID) of the module's
        environment; pass C({{ awx_job_id | default(omit) }}) from a job template.
    type: str
  lock_ttl:
    description:
      - Seconds after which this run's lock counts as expired; an expired holder's session is ended
        by the next run.
    type: float
    default: 3600
attributes:
  check_mode:
    support: full
    details: Returns in RV(sql) the exact scripts that would run, in order; nothing is sent to the database.
  diff_mode:
    support: full
    details: The database's migration version (or a label's version) before and after.
notes:
  - O(store_path) is only read, to find O(checkpoint) and to name checkpoint database backups when a revert is
    refused.
  - O(owner) is recorded in the lock row (default C(user@host)).
seealso:
  - module: gitops.rollback.checkpoint
"""

EXAMPLES = r"""
- name: Prove the pending migrations can be reverted, then apply them and record the release tag
  gitops.rollback.db_migrate:
    engine: postgresql
    database: shop
    login_host: db1.example.com
    login_user: migrator
    login_password: "{{ vault_migrator_password }}"
    migrations_dir: /srv/app/current/migrations
    operation: apply
    verify_reversible: true
    label: v2.4.0
    job_id: "{{ awx_job_id | default(omit) }}"

- name: Show the rollback SQL without running it
  gitops.rollback.db_migrate:
    engine: postgresql
    database: shop
    migrations_dir: /srv/app/current/migrations
    operation: revert
    label: v2.3.0
  check_mode: true
  register: preview

- name: Revert the last two migrations of an SQLite database
  gitops.rollback.db_migrate:
    engine: sqlite
    database: /var/lib/app/app.sqlite
    migrations_dir: /srv/app/current/migrations
    operation: revert
    count: 2

- name: Adopt a database created before db_migrate managed it (its schema is at migration 20230301)
  gitops.rollback.db_migrate:
    engine: postgresql
    database: shop
    migrations_dir: /srv/app/current/db/migrations
    layout: golang-migrate
    operation: baseline
    version: "20230301"

- name: Accept a reviewed change of an applied migration's files
  gitops.rollback.db_migrate:
    engine: postgresql
    database: shop
    migrations_dir: /srv/app/current/migrations
    operation: repair
    version: "7"

- name: Mark a half-applied MariaDB migration as reverted after undoing it by hand
  gitops.rollback.db_migrate:
    engine: mysql
    database: shop
    operation: resolve
    version: "17"
    resolve_as: reverted
"""

RETURN = r"""
operation:
  description: The operation carried out.
  returned: always
  type: str
  sample: revert
version:
  description: The database's migration version after the operation (0 when none is applied).
  returned: always
  type: int
  sample: 12
version_before:
  description: The version before the operation.
  returned: when operation is apply or revert
  type: int
  sample: 20
target_version:
  description: The version the operation goes to.
  returned: when operation is apply or revert
  type: int
  sample: 12
sql:
  description:
    - The scripts run (or, in check mode, to run), one per migration, in run order, exactly as sent
      to the database, including the transaction and history statements.
  returned: always
  type: list
  elements: str
  sample: ["BEGIN;\nDROP TABLE t20;\nDELETE FROM gitops_rollback_migrations WHERE version = 20;\nCOMMIT;\n"]
migrations:
  description: The migrations run (or to run), in order, with direction and the SQL of the file.
  returned: when operation is apply or revert
  type: list
  elements: dict
  sample: [{version: 20, name: add_t20, direction: down, sql: "DROP TABLE t20;\n", transaction: true}]
history:
  description: The history rows (without the recorded down scripts).
  returned: when operation is status
  type: list
  elements: dict
  sample: [{version: 1, name: create_users, state: applied, applied_at: "2026-11-21T14:30:00.000000Z",
            applied_by: "root@web1", job_id: "42", duration_ms: 3, label: v2.4.0}]
pending:
  description: Migrations in O(migrations_dir) not applied yet.
  returned: when operation is status
  type: list
  elements: dict
  sample: [{version: 21, name: add_index, irreversible: false}]
labels:
  description: Recorded labels and their versions.
  returned: when operation is status
  type: list
  elements: dict
  sample: [{label: v2.3.0, version: 12}]
dirty:
  description: Versions recorded dirty.
  returned: when operation is status
  type: list
  elements: int
  sample: []
drift:
  description: Applied migrations whose files changed since they were applied.
  returned: when operation is status or apply
  type: list
  elements: dict
  sample: [{version: 7, name: add_orders, files: [V0007__add_orders.down.sql]}]
layout:
  description: The layout O(migrations_dir) was read with (detected when O(layout=auto)).
  returned: when migrations_dir is given
  type: str
  sample: golang-migrate
ignored:
  description: Files of O(migrations_dir) that were not run, each with the reason (Flyway repeatable migrations).
  returned: when migrations_dir is given
  type: list
  elements: str
  sample: ["R__views.sql: a Flyway repeatable migration; db_migrate runs versioned migrations only, ..."]
baselined:
  description: The migrations V(baseline) recorded as applied without running them.
  returned: when operation is baseline
  type: list
  elements: dict
  sample: [{version: 1, name: create_users}]
repaired:
  description:
    - The applied migrations whose changed files V(repair) accepted, each with the checksums it replaced
      (C(checksum_before), C(down_checksum_before)), the ones it recorded (C(checksum_after),
      C(down_checksum_after)) and who accepted them (C(repaired_by)).
    - The same, with the time, is kept in the table C(gitops_rollback_repairs) of the database, one row per
      accepted change (the history row keeps only the current checksums).
  returned: when operation is repair
  type: list
  elements: dict
  sample:
    - version: 7
      name: add_orders
      files: [V0007__add_orders.down.sql]
      checksum_before: 9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab
      checksum_after: 9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab
      down_checksum_before: 1b4f0e9851971998e732078544c96b36c3d01cedf7caa332359d6f1d83567014
      down_checksum_after: 60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
      repaired_by: deploy@ci1
verified:
  description: The migrations proven reversible on a scratch copy.
  returned: when operation is verify, or apply with verify_reversible
  type: list
  elements: dict
  sample: [{version: 21, name: add_index, reversible: true, checked: "up, down, up"}]
lock_recovered:
  description: The owner of a stale lock this run recovered.
  returned: when a stale lock was recovered
  type: dict
  sample: {owner: "root@web1", host: web1, pid: 4242, expires_at: "2026-11-21T15:30:00Z"}
"""

from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import db_connection_argument_spec
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrate import run_operation
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrate_plan import OPERATIONS, Params
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrate_layouts import LAYOUTS
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.module.options import check_label_options


def argument_spec() -> dict:
    """Return the module's argument spec."""
    spec = dict(
        operation=dict(type="str", default="status", choices=list(OPERATIONS)),
        migrations_dir=dict(type="path"),
        layout=dict(type="str", default="auto", choices=list(LAYOUTS)),
        version=dict(type="str"),
        label=dict(type="str"),
        checkpoint=dict(type="str"),
        count=dict(type="int"),
        date=dict(type="str"),
        force=dict(type="bool", default=False),
        allow_drift=dict(type="bool", default=False),
        resolve_as=dict(type="str", choices=["applied", "reverted"]),
        verify_reversible=dict(type="bool", default=False),
        applied_by=dict(type="str"),
        job_id=dict(type="str"),
        lock_ttl=dict(type="float", default=3600),
    )
    spec.update(db_connection_argument_spec())
    return spec


def _run(params: dict, check_mode: bool) -> dict:
    if params["operation"] in ("apply", "label", "baseline"):  # a label to record; revert looks one up
        check_label_options(params, "label")
    return run_operation(Params.from_module(params, check_mode))


def main() -> None:
    module = RollbackModule(
        argument_spec(),
        store=True,
        error_details=("dirty", "drift", "irreversible", "holder", "done", "diff"),
        supports_check_mode=True,
        mutually_exclusive=[("version", "count", "date", "checkpoint"), ("label", "count", "date", "checkpoint")],
        required_if=[
            ("operation", "apply", ("migrations_dir",)),
            ("operation", "revert", ("migrations_dir",)),
            ("operation", "revert", ("checkpoint", "version", "label", "count", "date"), True),
            ("operation", "verify", ("migrations_dir",)),
            ("operation", "label", ("label",)),
            ("operation", "resolve", ("version", "resolve_as")),
            ("operation", "baseline", ("migrations_dir", "version")),
            ("operation", "repair", ("migrations_dir",)),
        ],
    )
    result = module.run(lambda: _run(module.params, module.check_mode))
    if not module.diff_mode:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
