#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_backup_info
short_description: List the database backups in a checkpoint store, or show one
version_added: 0.1.0
description:
  - Lists the database components of the checkpoints on the host, oldest first, optionally
    filtered by engine, database or checkpoint, and optionally re-hashes their objects.
  - Read-only; never reports a change.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.store
  - gitops.rollback.attributes
options:
  engine:
    description:
      - Only list backups of this engine.
      - C(mariadb) is another name of C(mysql).
    type: str
    choices: [postgresql, mysql, sqlite, mariadb]
  database:
    description:
      - Only list backups of this database (SQLite, the file's path).
    type: str
  checkpoint:
    description:
      - Id, id prefix or label of one checkpoint. Fails, listing the checkpoints there are, when
        it is unknown.
    type: str
  verify:
    description:
      - Re-hash every object of each listed backup and report missing or damaged ones.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: gitops.rollback.db_backup
  - module: gitops.rollback.db_restore
"""

EXAMPLES = r"""
- name: List the backups of the orders database
  gitops.rollback.db_backup_info:
    engine: postgresql
    database: orders
  register: found

- name: Check that the backups of v2.3.0 are intact
  gitops.rollback.db_backup_info:
    checkpoint: v2.3.0
    verify: true
"""

RETURN = r"""
backups:
  description: Backups found, oldest first.
  returned: always
  type: list
  elements: dict
  sample:
    - name: postgresql/orders
      engine: postgresql
      database: orders
      format: custom
      compression: null
      server_version: "15.20"
      sha256: c82444f7c814f82f1ea04d6724793dfefaa937b8a7f6a616ed2b90de8fdd1dab
      size: 33200
      row_counts: {public.orders: 1000}
      row_counts_exact: true
      created: "2026-11-21T22:06:57Z"
      checkpoint: 20261121T220657.696Z-42d293
      label: v2.4.0
      checkpoint_created: "2026-11-21T22:06:57Z"
      objects: 1
      verified: true
      problems: []
"""

from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import list_backups
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import ENGINE_CHOICES, canonical_engine
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


def main() -> None:
    argument_spec = dict(
        engine=dict(type="str", choices=list(ENGINE_CHOICES)),
        database=dict(type="str"),
        checkpoint=dict(type="str"),
        verify=dict(type="bool", default=False),
    )
    module = RollbackModule(argument_spec, store=True, error_details=("available",), supports_check_mode=True)
    params = module.params
    engine = canonical_engine(params["engine"]) if params["engine"] else None
    backups = module.run(lambda: list_backups(Store(params["store_path"], params.get("encryption_key")), engine,
                                              params["database"], params["checkpoint"], params["verify"]),
                         available=[])
    module.exit_json(changed=False, backups=backups)


if __name__ == "__main__":
    main()
