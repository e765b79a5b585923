#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rollback_preview
short_description: Show what a rollback would change on this host, without changing anything
version_added: 0.1.0
description:
  - Lists the host's checkpoint store once, resolves O(target) once, and asks each host layer what it
    would do, in one module run and read-only - the managed paths that would change (after re-hashing
    every object of the checkpoint), the release that would become current, the migrations each
    database would revert (or the dump it would restore).
  - A layer that cannot go back is returned in RV(problems) with its layer; the module does not fail
    for it. M(gitops.rollback.rollback_plan) runs this module on each host and builds the plan from it.
  - Changes nothing, in check mode or not, and takes no lock - unless O(safety) asks for the safety checkpoint, or
    O(repository) names a checkpoint repository and the store lacks the target.
  - With O(repository), first makes the store hold O(target), as M(gitops.rollback.checkpoint_sync)
    O(gitops.rollback.checkpoint_sync#module:state=fetched) does - from the repository only when the store lacks it
    (a rebuilt host); in check mode it only reports what would be fetched. Then the preview reads the store.
  - With O(safety), outside check mode, when this host's own plan (the rules of
    M(gitops.rollback.rollback_plan)) found no problem and something changes, the same run then takes the host's
    safety checkpoint, as M(gitops.rollback.rollback_safety) does, with the store's stat caches left as they are,
    and returns in RV(safety) what it created (its journal); M(gitops.rollback.rollback_safety)
    O(gitops.rollback.rollback_safety#module:state=absent) removes exactly that when another host refuses the run,
    and the store is then byte for byte what it was.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
  - gitops.rollback.store
  - gitops.rollback.repository
options:
  target:
    description: Checkpoint id, id prefix or label (Git tag) to roll back to.
    type: str
    required: true
  layers:
    description: Layers asked for (C(flags), C(release), C(config) and C(database) are previewed here).
    type: list
    elements: str
    default: [flags, release, config, database]
  paths:
    description: Managed directories of the config layer, or paths below them (the layer restores only those).
    type: list
    elements: path
    default: []
  release_root:
    description: Release root of the release layer (empty for none).
    type: path
    default: ""
  databases:
    description:
      - Database entries of the database layer, with the connection options of
        M(gitops.rollback.db_migrate) (C(engine), C(database), C(login_host), C(login_port), C(login_user),
        C(login_unix_socket)) and C(migrations_dir), C(method), C(source_database); no password (see
        O(database_passwords)).
    type: list
    elements: dict
    default: []
  database_passwords:
    description:
      - The password of each database entry that needs one, by the entry's position in O(databases)
        (C("0"), C("1"), ...). Used to read the migration history; never returned.
    type: dict
    default: {}
  flags:
    description:
      - Flag sets of the flags layer, each with the options of M(gitops.rollback.feature_flags) (C(backend),
        C(path), C(etcd_endpoints), C(etcd_prefix), ...) and optionally C(off) (flags to turn off instead of
        restoring); no password (see O(flags_passwords)).
    type: list
    elements: dict
    default: []
  flags_passwords:
    description:
      - The etcd password of each flag set that needs one, by the entry's position in O(flags); never returned.
    type: dict
    default: {}
  allowed_paths:
    description:
      - With O(repository), the only paths a checkpoint fetched from the repository may restore, as
        M(gitops.rollback.checkpoint_sync) takes them.
    type: list
    elements: path
    default: []
  safety:
    description:
      - Take the safety checkpoint in this run (see above). Empty - never.
    type: dict
    suboptions:
      label:
        description: Label of the safety checkpoint (C(safety/<run id>)).
        type: str
        required: true
      reason:
        description: Why the checkpoint is taken (recorded in its manifest).
        type: str
        default: safety checkpoint before rollback
      exclude:
        description: Glob patterns of paths under O(paths) left out of the capture.
        type: list
        elements: str
        default: []
      lock_timeout:
        description: Seconds to wait for the store lock.
        type: float
        default: 0
      changing:
        description: Whether a layer outside the host's store (traffic, infrastructure) changes on this host.
        type: bool
        default: false
attributes:
  check_mode:
    support: full
    details: With O(safety), no safety checkpoint is taken in check mode.
  diff_mode:
    support: none
seealso:
  - module: gitops.rollback.rollback_plan
  - module: gitops.rollback.restore
"""

EXAMPLES = r"""
- name: What would a rollback to v2.3.0 change here?
  gitops.rollback.rollback_preview:
    target: v2.3.0
    paths: [/etc/app]
    release_root: /srv/app
  register: preview
"""

RETURN = r"""
checkpoints:
  description: The store's checkpoints, oldest first, as M(gitops.rollback.checkpoint_info) lists them.
  returned: always
  type: list
  elements: dict
checkpoint:
  description: The id the target resolved to (null when the store has none such).
  returned: always
  type: str
  sample: 20261202T190000.123Z-a1b2c3
previews:
  description: Per layer, what it would do.
  returned: always
  type: dict
  sample:
    config: {changed: true, verified: true, summary: {/etc/app: {update: 1, delete: 1}},
             paths: {/etc/app: [update app.conf, delete debug.env]}}
    release: {changed: true, current: "20261202T1900Z", label: v1, from: "20261203T0800Z", from_label: v2}
    database: {changed: true, databases: [{name: postgresql/app, method: migrate, version_before: 4,
               target_version: 3, reverted: [V0004__add_coupons]}]}
fetched:
  description:
    - With O(repository), what M(gitops.rollback.checkpoint_sync) O(gitops.rollback.checkpoint_sync#module:state=fetched)
      returns - C(checkpoints), C(fetched) (C(objects), C(bytes)) and, outside check mode, C(recovery) (C(rpo_seconds),
      C(rto_seconds), C(newest_replicated)). A failed fetch fails the module, with C(fetch_failed).
  returned: when O(repository) is set
  type: dict
  sample: {changed: false, checkpoints: [20261202T190000.123Z-a1b2c3], fetched: {objects: 0, bytes: 0}}
problems:
  description: What stops a layer from going back, as C({layer, problem}).
  returned: always
  type: list
  elements: dict
safety:
  description:
    - The safety checkpoint taken in this run - C(layers) captured (empty - none taken), C(checkpoint) (its id),
      C(problem) when the capture failed, and C(journal) (C(created), every store path the capture created, C(checkpoints), the manifests before it, and
      C(touched), existing files that changed meanwhile).
  returned: when O(safety) was given, outside check mode
  type: dict
  sample: {layers: [config, release], checkpoint: 20261203T120001.123Z-a1b2c3,
           journal: {created: [checkpoints/20261203T120001.123Z-a1b2c3.json], checkpoints: [], touched: []}}
"""

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.common.lock import default_owner
from ansible_collections.gitops.rollback.plugins.module_utils.controller.preview import (
    PreviewRequest, SafetyAsk, preview_with_safety)
from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import with_passwords
from ansible_collections.gitops.rollback.plugins.module_utils.module.options import repository_argument_spec


def fetch_target(params: dict, check_mode: bool) -> dict:
    """Make the store hold the target, from the repository when it lacks it (checkpoint_sync state=fetched)."""
    # imported here: a preview without a repository never loads the replication code
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.replication.repository import sync_host
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

    store = Store(params["store_path"], params["encryption_key"] or None)
    return sync_host(store, {"state": "fetched", "checkpoints": [params["target"]], "repository": params["repository"],
                             "allowed_paths": params["allowed_paths"], "encryption_key": params["encryption_key"],
                             "owner": params["owner"], "lock_timeout": params["lock_timeout"]}, check_mode)


def main() -> None:
    argument_spec = dict(
        target=dict(type="str", required=True),
        layers=dict(type="list", elements="str", default=["flags", "release", "config", "database"]),
        paths=dict(type="list", elements="path", default=[]),
        release_root=dict(type="path", default=""),
        databases=dict(type="list", elements="dict", default=[]),
        database_passwords=dict(type="dict", default={}, no_log=True),
        flags=dict(type="list", elements="dict", default=[]),
        flags_passwords=dict(type="dict", default={}, no_log=True),
        allowed_paths=dict(type="list", elements="path", default=[]),
        **repository_argument_spec(),
        safety=dict(type="dict", options=dict(
            label=dict(type="str", required=True),
            reason=dict(type="str", default="safety checkpoint before rollback"),
            exclude=dict(type="list", elements="str", default=[]),
            lock_timeout=dict(type="float", default=0),
            changing=dict(type="bool", default=False),
        )),
    )
    module = RollbackModule(argument_spec, store=True, error_details=RollbackError.PUBLIC, supports_check_mode=True)
    params = module.params
    request = PreviewRequest(target=params["target"], layers=params["layers"], store_path=params["store_path"],
                             owner=default_owner(params["owner"]), encryption_key=params["encryption_key"] or None,
                             paths=params["paths"], release_root=params["release_root"] or "",
                             databases=with_passwords(params["databases"], params["database_passwords"]),
                             flags=with_passwords(params["flags"], params["flags_passwords"], "etcd_password"))
    ask = SafetyAsk(**params["safety"]) if params["safety"] else None
    fetched = module.run(lambda: fetch_target(params, module.check_mode), fetch_failed=True) if params["repository"] else None
    outcome = module.run(lambda: preview_with_safety(request, ask, module.check_mode))
    if fetched is not None:
        outcome["fetched"] = fetched
        outcome["changed"] = bool(outcome.get("changed")) or (bool(fetched.get("changed")) and not module.check_mode)
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
