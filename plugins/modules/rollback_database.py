#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rollback_database
short_description: Roll every database of a host back to a checkpoint - revert the migrations, else restore the dump
version_added: 0.1.0
description:
  - For each entry of O(databases), in order, decides how it goes back (O(method) for every database, else
    O(methods) for this one, else the entry's C(method), else C(auto) with a C(migrations_dir) and
    C(restore) without), then runs M(gitops.rollback.db_migrate) O(gitops.rollback.db_migrate#module:operation=revert)
    and/or M(gitops.rollback.db_restore) on the host.
  - C(auto) reverts the migrations and restores the checkpoint's dump when the revert is refused (an
    irreversible migration, no recorded version); C(migrate) only reverts; C(restore) only restores the dump;
    C(skip) leaves the database alone. A migration revert alone is a change.
  - Stops at the first database that fails, with that module's message. The C(rollback_database) role runs
    it for its restore step.
  - This is an action plugin; it runs the database modules on the host.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
  - gitops.rollback.store
options:
  databases:
    description:
      - Database entries (C(engine), C(database), optional C(migrations_dir), C(method), C(source_database),
        C(jobs), C(mode), C(terminate_sessions), C(restore_extra_args)) with the connection options of
        M(gitops.rollback.db_restore); no password (see O(database_passwords)).
    type: list
    elements: dict
    default: []
  database_passwords:
    description: The password of each entry that needs one, by the entry's position in O(databases); never returned.
    type: dict
    default: {}
  checkpoint:
    description: Checkpoint id or label whose dumps are restored, and whose recorded migration version a revert goes back to.
    type: str
    required: true
  label:
    description: The label (Git tag) the migrations are reverted to instead of the checkpoint's recorded version.
    type: str
    default: ""
  method:
    description: How every database goes back; empty - per database.
    type: str
    choices: ["", auto, migrate, restore, skip]
    default: ""
  methods:
    description: How each database goes back, by C(<engine>/<database>) (a plan's choice).
    type: dict
    default: {}
  mode:
    description: Restore mode, unless an entry sets C(mode) (M(gitops.rollback.db_restore)'s O(gitops.rollback.db_restore#module:mode)).
    type: str
    choices: [swap, replace]
    default: replace
  jobs:
    description: Parallel PostgreSQL restore jobs, unless an entry sets C(jobs).
    type: int
    default: 1
  safety_backup:
    description: Back up the live database into a safety checkpoint before restoring over it.
    type: bool
    default: true
attributes:
  action:
    description: Runs on the controller as an action plugin; runs the database modules on the host.
    support: full
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: gitops.rollback.db_migrate
  - module: gitops.rollback.db_restore
"""

EXAMPLES = r"""
- name: Roll the databases back to the checkpoint v2.3.0
  gitops.rollback.rollback_database:
    databases:
      - {engine: postgresql, database: app, migrations_dir: /srv/app/current/migrations}
    database_passwords: {"0": "{{ vault_app_db_password }}"}
    checkpoint: v2.3.0
  register: databases
"""

RETURN = r"""
changed_databases:
  description: The databases changed (C(<engine>/<database>)) and the method that changed each.
  returned: always
  type: dict
  sample: {postgresql/app: auto}
databases:
  description: Per database, in order, its method and the results of the modules that ran (C(migrated), C(restored)).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gitops.rollback.plugins.module_utils.module.options import store_argument_spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            databases=dict(type="list", elements="dict", default=[]),
            database_passwords=dict(type="dict", default={}, no_log=True),
            checkpoint=dict(type="str", required=True),
            label=dict(type="str", default=""),
            method=dict(type="str", default="", choices=["", "auto", "migrate", "restore", "skip"]),
            methods=dict(type="dict", default={}),
            mode=dict(type="str", default="replace", choices=["swap", "replace"]),
            jobs=dict(type="int", default=1),
            safety_backup=dict(type="bool", default=True),
            **store_argument_spec(),
        ),
        supports_check_mode=True,
    )
    module.fail_json(msg="gitops.rollback.rollback_database runs on the controller as an action plugin; call it as a task.")


if __name__ == "__main__":
    main()
