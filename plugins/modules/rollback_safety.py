#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rollback_safety
short_description: Take the safety checkpoint of a host before a rollback - every host layer in one run
version_added: 0.1.0
description:
  - Captures the host's current state into one checkpoint labelled O(label) (C(safety/<run id>) in the
    C(rollback) role), in one module run - the managed paths (as M(gitops.rollback.checkpoint) captures
    them), the current release (as M(gitops.rollback.release) O(gitops.rollback.release#module:state=recorded)
    records it) and a dump of each database (as M(gitops.rollback.db_backup) takes it), in that order.
  - Only the layers in O(layers) that are configured here are captured (paths given, a release root,
    database entries). The Terraform state is snapshotted on the controller by
    M(gitops.rollback.terraform_state), not here.
  - A failure of any layer fails the task at once; the layers captured before it stay in the checkpoint.
  - With O(state=absent), removes what a safety checkpoint taken in the plan's run created (the C(journal) that
    M(gitops.rollback.rollback_preview) returned in RV(gitops.rollback.rollback_preview#module:safety)), under the
    store lock, and the store is then byte for byte what it was before it. When another writer stored a checkpoint
    since, only the safety checkpoint's manifest goes and its objects are left to the next garbage collection.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
  - gitops.rollback.store
options:
  label:
    description: Label of the checkpoint that receives every layer (created by the first one).
    type: str
    required: true
  state:
    description: C(present) takes the safety checkpoint; C(absent) removes what O(journal) names.
    type: str
    choices: [present, absent]
    default: present
  journal:
    description:
      - With O(state=absent), the journal of the capture to undo - C(created) (store paths, each checked against
        the store's layout), C(checkpoints) (the manifests before it) and C(touched).
    type: dict
    default: {}
  reason:
    description: Why the checkpoint is taken (recorded in its manifest).
    type: str
    default: safety checkpoint before rollback
  layers:
    description: Layers to capture (C(flags), C(config), C(release), C(database); others are ignored).
    type: list
    elements: str
    default: [flags, config, release, database]
  paths:
    description:
      - Managed directories of the config layer, or with O(roots) managed directories and paths below them.
    type: list
    elements: path
    default: []
  roots:
    description:
      - The managed directories O(paths) lie in (the C(roots) of the rollback plan's config step). A path of
        O(paths) below one of them is captured alone - the checkpoint's root is narrowed to it (its C(scope)) and
        a restore of the safety checkpoint puts back that path and nothing else of the root.
      - Empty - every path of O(paths) is a managed directory, captured whole.
    type: list
    elements: path
    default: []
  exclude:
    description: Glob patterns of paths under O(paths) left out of the capture.
    type: list
    elements: str
    default: []
  release_root:
    description: Release root of the release layer (empty for none).
    type: path
    default: ""
  databases:
    description:
      - Database entries of the database layer, with the connection options of M(gitops.rollback.db_backup)
        (C(engine), C(database), C(login_host), C(login_port), C(login_user), C(login_unix_socket),
        C(client_bin_dir), C(client_charset)) and optional C(format) and C(dump_extra_args); other keys of the
        entry (C(migrations_dir), C(method)...) are ignored. No password (see O(database_passwords)).
    type: list
    elements: dict
    default: []
  database_passwords:
    description:
      - The password of each database entry that needs one, by the entry's position in O(databases)
        (C("0"), C("1"), ...), as the filter C(gitops.rollback.database_passwords) returns it. Never returned.
    type: dict
    default: {}
  flags:
    description:
      - Flag sets of the flags layer, each with the options of M(gitops.rollback.feature_flags) (C(backend),
        C(path), C(etcd_endpoints), C(etcd_prefix), ...); other keys (C(off)) are ignored. No password (see
        O(flags_passwords)).
    type: list
    elements: dict
    default: []
  flags_passwords:
    description: The etcd password of each flag set that needs one, by the entry's position in O(flags). Never returned.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    details: Says what each layer would capture; nothing is written.
  diff_mode:
    support: none
seealso:
  - module: gitops.rollback.checkpoint
  - module: gitops.rollback.db_backup
  - module: gitops.rollback.rollback_plan
"""

EXAMPLES = r"""
- name: Safety checkpoint of every host layer before the rollback
  gitops.rollback.rollback_safety:
    label: safety/rollback-20261203T120000Z-4711
    reason: safety checkpoint before rollback to v2.3.0
    paths: [/etc/app]
    release_root: /srv/app
    databases:
      - {engine: postgresql, database: app, login_user: app}
    database_passwords: {"0": "{{ vault_app_db_password }}"}
"""

RETURN = r"""
label:
  description: The checkpoint's label.
  returned: always
  type: str
  sample: safety/rollback-20261203T120000Z-4711
checkpoint:
  description: The checkpoint's id (null in check mode when it does not exist yet, or when nothing was captured).
  returned: always
  type: str
  sample: 20261203T120001.123Z-a1b2c3
layers:
  description: The layers captured, in order.
  returned: always
  type: list
  elements: str
  sample: [config, release, database]
config:
  description: The capture of the managed paths - C(changed), C(checkpoint) and the capture's C(stats).
  returned: when the config layer was captured
  type: dict
  sample: {changed: true, checkpoint: 20261203T120001.123Z-a1b2c3, stats: {entries: 12, bytes: 4096, hashed: 12, new_blobs: 0}}
release:
  description: The release recorded - C(changed), C(checkpoint) and the C(release) id that is current.
  returned: when the release layer was captured
  type: dict
  sample: {changed: true, checkpoint: 20261203T120001.123Z-a1b2c3, release: 20261202T190000.000Z}
database:
  description: The backups, each as M(gitops.rollback.db_backup) returns RV(gitops.rollback.db_backup#module:backup).
  returned: when the database layer was captured
  type: dict
  sample: {changed: true, backups: [{name: postgresql/app, format: custom, sha256: "ab12..."}]}
removed:
  description: With O(state=absent), how many store entries were removed.
  returned: with O(state=absent)
  type: int
  sample: 7
identical:
  description: With O(state=absent), whether the store is again byte for byte what it was before the capture.
  returned: with O(state=absent)
  type: bool
  sample: true
"""

from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.common.lock import default_owner
from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import with_passwords
from ansible_collections.gitops.rollback.plugins.module_utils.controller.safety import SafetyRequest, take_safety_checkpoint
from ansible_collections.gitops.rollback.plugins.module_utils.controller.safety_journal import discard
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


def main() -> None:
    argument_spec = dict(
        label=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        journal=dict(type="dict", default={}),
        reason=dict(type="str", default="safety checkpoint before rollback"),
        layers=dict(type="list", elements="str", default=["flags", "config", "release", "database"]),
        paths=dict(type="list", elements="path", default=[]),
        roots=dict(type="list", elements="path", default=[]),
        exclude=dict(type="list", elements="str", default=[]),
        release_root=dict(type="path", default=""),
        databases=dict(type="list", elements="dict", default=[]),
        database_passwords=dict(type="dict", default={}, no_log=True),
        flags=dict(type="list", elements="dict", default=[]),
        flags_passwords=dict(type="dict", default={}, no_log=True),
    )
    module = RollbackModule(argument_spec, store=True, supports_check_mode=True)
    params = module.params
    if params["state"] == "absent":
        store = Store(params["store_path"], params["encryption_key"] or None)
        module.exit_json(label=params["label"], **module.run(lambda: discard(
            store, params["journal"], default_owner(params["owner"]), params["lock_timeout"], module.check_mode)))
    request = SafetyRequest(
        label=params["label"], reason=params["reason"], layers=params["layers"], store_path=params["store_path"],
        owner=default_owner(params["owner"]), encryption_key=params["encryption_key"] or None,
        lock_timeout=params["lock_timeout"], check_mode=module.check_mode, paths=params["paths"],
        roots=params["roots"], exclude=params["exclude"], release_root=params["release_root"] or "",
        databases=with_passwords(params["databases"], params["database_passwords"]),
        flags=with_passwords(params["flags"], params["flags_passwords"], "etcd_password"))
    module.exit_json(**module.run(lambda: take_safety_checkpoint(request)))


if __name__ == "__main__":
    main()
