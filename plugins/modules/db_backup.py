#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_backup
short_description: Back up a PostgreSQL, MariaDB/MySQL or SQLite database into a checkpoint
version_added: 0.1.0
description:
  - Dumps a database with the engine's own client (C(pg_dump), C(mariadb-dump) or C(mysqldump),
    or SQLite's online backup API) straight into the checkpoint store, hashing it while it is
    written, and records it as a component of a checkpoint (the one labelled O(checkpoint) when
    it exists, so a host checkpoint and its databases share one id and label).
  - Records the dump's SHA-256, size, format, server version and the exact row count of every
    table, read in the same snapshot as the dump (PostgreSQL, SQLite) or from the dump itself as it
    streams into the store (MariaDB/MySQL; marked inexact when a table appeared or went meanwhile).
  - Every stage of every pipeline has its exit status checked, and the dump is checked for
    completeness (C(pg_restore --list) of the archive, or the dump's end marker) before it is
    recorded.
  - Always reports a change (a new backup). In check mode it connects, checks the database
    exists and returns what would be dumped.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.store
  - gitops.rollback.db_connection
  - gitops.rollback.attributes
options:
  checkpoint:
    description:
      - Label (or id) of the checkpoint to attach the backup to. When no checkpoint has it, a new
        checkpoint with this label is created. When not set, a new unlabelled checkpoint is created.
    type: str
    aliases: [label]
  reason:
    description:
      - Why the checkpoint is taken, recorded in a new checkpoint's manifest.
    type: str
  commit:
    description:
      - Git commit recorded in a new checkpoint's manifest.
    type: str
  format:
    description:
      - Dump format. PostgreSQL C(custom) (default), C(directory) (parallel with O(jobs)) or
        C(plain); MariaDB/MySQL C(sql); SQLite C(sqlite) (a copy of the database file).
    type: str
    choices: [custom, directory, plain, sql, sqlite]
  jobs:
    description:
      - Parallel dump jobs (PostgreSQL C(directory) format); also used to hash files in parallel.
    type: int
    default: 1
  compression:
    description:
      - Compress a MariaDB/MySQL dump through this program. PostgreSQL archives are compressed by
        C(pg_dump) itself (see O(compression_level)).
    type: str
    choices: [gzip, zstd]
  compression_level:
    description:
      - Compression level passed to C(pg_dump --compress) or to the compressor.
    type: int
  keep:
    description:
      - Retention. After the backup, keep only the newest O(keep) backups of this database;
        older ones are removed from their checkpoints (a checkpoint left empty is deleted) and
        unreferenced objects are collected. The newest backup is always kept.
    type: int
  older_than:
    description:
      - Retention. After the backup, remove backups of this database older than this duration
        (seconds, or a number followed by V(s), V(m), V(h), V(d) or V(w), for example V(14d)).
    type: str
  maintenance_db:
    description:
      - PostgreSQL database to connect to for server-wide statements.
    type: str
    default: postgres
  when_migrated:
    description:
      - Back up only when the version of the database's M(gitops.rollback.db_migrate) history differs from the
        version its newest backup in the store recorded (whatever that checkpoint's label), or when there is no
        backup of it yet. Otherwise nothing is taken, V(changed=false), and RV(backup) is that newest backup.
      - A database without a history is backed up once, then not again.
    type: bool
    default: false
  dump_extra_args:
    description:
      - PostgreSQL. More C(pg_dump) arguments, one list item each (for example
        V(--exclude-extension=postgis) or V(--no-comments)); write a long option that takes a value as
        V(--name=value). They are recorded in the backup.
      - Refused, with the reason, where they would break the backup's checks or take over what other
        options set, abbreviated or not, C(--file) (the dump goes into the store), C(--format),
        C(--jobs), C(--compress), C(--snapshot), connection options, C(--data-only),
        C(--schema-only), C(--section), C(--table), C(--schema), C(--exclude-table*),
        C(--exclude-schema), C(--no-unlogged-table-data) (a partial dump fails the row count check),
        C(--create), C(--clean), C(--if-exists), C(--version), C(--help).
    type: list
    elements: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Supports PostgreSQL 13 and newer, MariaDB 10.3 and newer, MySQL 8, SQLite 3.
seealso:
  - module: gitops.rollback.db_restore
  - module: gitops.rollback.db_backup_info
"""

EXAMPLES = r"""
- name: Back up the orders database as part of checkpoint v2.4.0
  gitops.rollback.db_backup:
    engine: postgresql
    database: orders
    login_host: db1.internal
    login_user: backup
    login_password: "{{ vault_backup_password }}"
    checkpoint: v2.4.0
    format: directory
    jobs: 4
    keep: 10

- name: Back up a MariaDB database, compressed, keeping two weeks of backups
  gitops.rollback.db_backup:
    engine: mysql
    database: shop
    login_unix_socket: /run/mysqld/mysqld.sock
    checkpoint: v2.4.0
    compression: zstd
    older_than: 14d

- name: Back up an SQLite file while the application writes to it
  gitops.rollback.db_backup:
    engine: sqlite
    database: /srv/app/data/app.db
    checkpoint: v2.4.0
"""

RETURN = r"""
backup:
  description:
    - The recorded backup (in check mode, what would be dumped).
    - C(migration_version) is the version of the database's M(gitops.rollback.db_migrate) history at the
      backup (absent without a history); a revert to this checkpoint goes to it.
  returned: always
  type: dict
  sample:
    name: postgresql/orders
    engine: postgresql
    database: orders
    format: custom
    compression: null
    server_version: "15.20"
    sha256: c82444f7c814f82f1ea04d6724793dfefaa937b8a7f6a616ed2b90de8fdd1dab
    size: 33200
    row_counts: {public.orders: 1000, public.customers: 120}
    row_counts_exact: true
    migration_version: 12
    created: "2026-11-21T22:06:57Z"
    duration_s: 0.565
    checkpoint: 20261121T220657.696Z-42d293
    label: v2.4.0
    objects: 1
    pruned: []
checkpoint:
  description: Id of the checkpoint holding the backup (null in check mode when it would be new).
  returned: always
  type: str
  sample: 20261121T220657.696Z-42d293
migrated:
  description:
    - With O(when_migrated), whether the migration version moved since the newest backup (so a backup was taken).
  returned: when O(when_migrated) is set
  type: bool
  sample: true
commands:
  description: The dump command (connection options and secrets left out).
  returned: always
  type: list
  elements: str
  sample: ["pg_dump --format=c --snapshot=<exported> --dbname orders"]
"""

from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import (
    BackupRequest, backup, plan_backup, summarize_backup, unmigrated_backup,
)
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import (
    DbConnection, canonical_engine, db_connection_argument_spec)
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.common.lock import default_owner
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


def argument_spec() -> dict:
    """Return the module's argument spec."""
    spec = dict(
        checkpoint=dict(type="str", aliases=["label"]),
        reason=dict(type="str"),
        commit=dict(type="str"),
        format=dict(type="str", choices=["custom", "directory", "plain", "sql", "sqlite"]),
        jobs=dict(type="int", default=1),
        compression=dict(type="str", choices=["gzip", "zstd"]),
        compression_level=dict(type="int"),
        keep=dict(type="int"),
        older_than=dict(type="str"),
        maintenance_db=dict(type="str", default="postgres"),
        dump_extra_args=dict(type="list", elements="str"),
        when_migrated=dict(type="bool", default=False),
    )
    spec.update(db_connection_argument_spec())
    return spec


def describe_command(params: dict) -> str:
    """Return the dump command without connection options."""
    engine = canonical_engine(params["engine"])
    if engine == "postgresql":
        fmt = params["format"] or "custom"
        jobs = " --jobs=%d" % params["jobs"] if fmt == "directory" and params["jobs"] > 1 else ""
        extra = "".join(" " + arg for arg in params.get("dump_extra_args") or [])
        return "pg_dump --format=%s%s --snapshot=<exported>%s --dbname %s" % (fmt[0], jobs, extra, params["database"])
    if engine == "mysql":
        tail = " | %s -c" % params["compression"] if params["compression"] else ""
        return "mariadb-dump --single-transaction --routines --triggers --events --hex-blob %s%s" % (
            params["database"], tail)
    return "sqlite3 online backup of %s" % params["database"]


def main() -> None:
    module = RollbackModule(argument_spec(), store=True, supports_check_mode=True)
    params = module.params
    store = Store(params["store_path"], params.get("encryption_key"))
    request = BackupRequest(
        conn=DbConnection.from_params(params), checkpoint=params["checkpoint"], reason=params["reason"],
        commit=params["commit"], fmt=params["format"], jobs=params["jobs"], compression=params["compression"],
        compression_level=params["compression_level"], keep=params["keep"], older_than=params["older_than"],
        maintenance_db=params["maintenance_db"], dump_extra_args=params["dump_extra_args"],
    )
    commands = [describe_command(params)]
    if params["when_migrated"]:
        newest = module.run(lambda: unmigrated_backup(store, request.conn), commands=commands)
        if newest is not None:
            module.exit_json(changed=False, backup=newest, checkpoint=newest["checkpoint"], migrated=False, commands=[],
                             msg="The migration version of %s is %s, as its newest backup (checkpoint %s) recorded: "
                                 "no backup taken." % (newest["name"], newest["current_version"], newest["checkpoint"]))
    if module.check_mode:
        plan = module.run(lambda: plan_backup(store, request), commands=commands)
        module.exit_json(changed=True, backup=plan, checkpoint=plan["checkpoint"], commands=commands,
                         **({"migrated": True} if params["when_migrated"] else {}))
    manifest, component = module.run(
        lambda: backup(store, request, default_owner(params["owner"]), params["lock_timeout"]), commands=commands)
    summary = summarize_backup(manifest, component)
    module.exit_json(changed=True, backup=summary, checkpoint=manifest.id, commands=commands,
                     **({"migrated": True} if params["when_migrated"] else {}))


if __name__ == "__main__":
    main()
