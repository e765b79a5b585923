#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rollback_plan
short_description: Plan the rollback of a host - resolve the target once, per layer, and find every problem
version_added: 0.1.0
description:
  - Reads the host's checkpoint store once (one M(gitops.rollback.rollback_preview) run on the host,
    read-only) and the Terraform stores on the controller, resolves O(target) to one checkpoint id per
    layer, and says what each layer will do, what it needs, what would change (the managed files, the
    release that would become current, the migrations each database would revert, the Terraform
    snapshot's serial), which layers the safety checkpoint must capture, and every problem found.
  - A label names its newest checkpoint. The plan resolves it once, at the start of the run; the
    C(rollback) role passes the resolved ids to every later step, so a checkpoint taken with the same
    label while the rollback runs changes nothing.
  - For a safety checkpoint (C(safety/<run id>)) a layer, or a host, that the checkpoint does not hold
    is skipped with a note (the run that took it did not touch it); database entries are restored
    from the safety checkpoint's dump, never migrated.
  - With O(repository), the same host run first makes the store hold O(target), as
    M(gitops.rollback.checkpoint_sync) O(gitops.rollback.checkpoint_sync#module:state=fetched) does - from the
    repository only when the store lacks it (a rebuilt host) - and returns what it did in RV(fetched). A failed fetch
    fails the task.
  - Never fails for a problem of the plan; the problems are returned so that the caller can report
    those of every host at once.
  - This is an action plugin; it runs on the controller.
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
    description: Layers to roll back, in this order, as a list or a comma-separated string.
    type: raw
    default: [flags, traffic, release, config, database, infrastructure, services]
  run_id:
    description: Id of the rollback run; names the safety checkpoint C(safety/<run id>).
    type: str
    default: ""
  paths:
    description: Managed directories of the config layer, or paths below them (the layer restores only those).
    type: list
    elements: str
    default: []
  release_root:
    description: Release root of the release layer (empty for none).
    type: str
    default: ""
  databases:
    description:
      - Database entries of the database layer (C(engine), C(database), optional C(source_database),
        C(migrations_dir), C(method)) and the connection options of M(gitops.rollback.db_migrate).
        A password (C(login_password), or O(database_passwords)) only reaches the host's preview, which
        reads the migration history; it is never returned.
    type: list
    elements: dict
    default: []
  database_passwords:
    description:
      - Passwords by the database entry's C(name) or C(database) (as C(rollback_database_passwords)),
        before the entry's own C(login_password).
    type: dict
    default: {}
  terraform:
    description:
      - Terraform entries of the infrastructure layer (C(project_path), C(workspace), C(name),
        C(store_path) on the controller). Secrets are not used and not returned.
    type: list
    elements: dict
    default: []
  services:
    description: Services of the services layer (C(name), C(layers)).
    type: list
    elements: dict
    default: []
  traffic:
    description: Whether the host has a traffic layer.
    type: bool
    default: false
  components:
    description:
      - Roll back only these components (a list, or a comma-separated string), each named as the plan shows it
        or by its entry - a database (C(postgresql/app), or the entry's C(database) or C(name)), a Terraform
        project (C(default@infra), its C(name) or C(project_path)), the release root, a flag set
        (C(file:/etc/shop/flags.json), its C(path) or C(etcd_prefix)) or a managed path. Every layer keeps
        the entries named, a layer with none is left out, and the safety checkpoint covers exactly those
        (RV(plan.selection)). Empty - everything.
    type: raw
    default: []
  flags:
    description:
      - Flag sets of the flags layer, each with the options of M(gitops.rollback.feature_flags) (C(backend),
        C(path), C(etcd_endpoints), C(etcd_prefix), C(etcd_user), C(etcd_password), ...), and optionally
        C(off), the flags to turn off instead of restoring the set. The etcd password only reaches the host's
        preview; it is never returned.
    type: list
    elements: dict
    default: []
  safety:
    description:
      - Take the host's safety checkpoint in the same host run as the plan, when this host's own plan is clear and
        something changes (outside check mode) - C(label), and optionally C(reason), C(exclude), C(lock_timeout), as
        M(gitops.rollback.rollback_safety) takes them. What it created is returned in RV(safety), so that a run
        refused by another host's plan can remove it (M(gitops.rollback.rollback_safety) O(gitops.rollback.rollback_safety#module:state=absent)).
        Empty - no safety checkpoint here.
    type: dict
    default: {}
  allowed_paths:
    description:
      - With O(repository), the only paths a checkpoint fetched from the repository may restore (the host's managed
        paths), as M(gitops.rollback.checkpoint_sync) takes them.
    type: list
    elements: path
    default: []
attributes:
  action:
    description: Runs on the controller as an action plugin; reads the host's store with one module call.
    support: full
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Plan the rollback to v2.3.0
  gitops.rollback.rollback_plan:
    target: v2.3.0
    layers: [release, config, database]
    run_id: rollback-20261203T000000Z-1
    paths: [/etc/app]
    release_root: /srv/app
    databases: [{engine: postgresql, database: app, migrations_dir: /srv/app/current/migrations}]
  register: plan

- name: Show it
  ansible.builtin.debug:
    var: plan.plan.steps
"""

RETURN = r"""
fetched:
  description:
    - With O(repository), what the fetch of the target did, as M(gitops.rollback.checkpoint_sync) returns it -
      C(checkpoints), C(fetched) (C(objects), C(bytes); V(0) when the store held the target) and, outside check
      mode, C(recovery) (C(rpo_seconds), C(rto_seconds), C(newest_replicated)).
  returned: when O(repository) is set
  type: dict
  sample: {changed: true, checkpoints: [20261202T190000.123Z-a1b2c3], fetched: {objects: 12, bytes: 48213}}
safety:
  description:
    - The safety checkpoint taken in the plan's host run (O(safety)) - C(layers) captured (empty - none),
      C(checkpoint) (its id) and C(journal), what the capture created in the store.
  returned: always
  type: dict
  sample: {layers: [config, release], checkpoint: 20261203T120001.123Z-a1b2c3, journal: {created: []}}
plan:
  description: The plan of the host.
  returned: always
  type: dict
  contains:
    target:
      description: The target as given.
      type: str
      sample: v2.3.0
    checkpoint:
      description: The id of the host's checkpoint the target resolved to (null when none).
      type: str
      sample: 20261202T190000.123Z-a1b2c3
    layers:
      description: The layers to run on this host, in order.
      type: list
      elements: str
      sample: [release, config, database]
    steps:
      description:
        - Per layer, what it will do (C(action)), what it needs (C(needs)), the checkpoint id it uses and,
          for release, config and database, what the host's preview found (C(preview), C(changed)).
      type: dict
      sample: {config: {checkpoint: 20261202T190000.123Z-a1b2c3, action: restore /etc/app byte-exact}}
    checkpoints:
      description: Per layer, the checkpoint id every later step uses.
      type: dict
      sample: {config: 20261202T190000.123Z-a1b2c3}
    changes:
      description:
        - The layers that will change something, in order (traffic and infrastructure count as changing;
          services when a service's layers change).
      type: list
      elements: str
      sample: [release, config]
    safety:
      description: The layers the safety checkpoint must capture before any change.
      type: list
      elements: str
      sample: [release, config, database]
    safety_host:
      description: Those of RV(plan.safety) captured on the host itself (one M(gitops.rollback.rollback_safety) run).
      type: list
      elements: str
      sample: [release, config, database]
    selection:
      description:
        - Per layer with entries (C(flags), C(config), C(database), C(infrastructure)), the positions in its
          configured list of the entries it rolls back (all of them without O(components)); the layers and the
          safety checkpoint take exactly these.
      type: dict
      sample: {flags: [], config: [], database: [1], infrastructure: []}
    resolved:
      description: What a relative target (C(previous~2:v*)) resolved to on this host; empty for any other target.
      type: str
      sample: "target previous is v2.3.0 (20261202T190000.123Z-a1b2c3) on this host, resolved once: every layer rolls back to that id"
    safety_label:
      description: The label of the safety checkpoint of this run.
      type: str
      sample: safety/rollback-20261203T000000Z-1
    problems:
      description: What stops the rollback, each with its layer.
      type: list
      elements: dict
      sample: [{layer: config, problem: "Checkpoint 'v9' is not in /var/lib/gitops-rollback on web1 (have: v1)."}]
    notes:
      description: Layers skipped and why.
      type: list
      elements: str
      sample: []
    lines:
      description: The plan in words, a line per layer, the safety checkpoint, the notes, then every problem.
      type: list
      elements: str
      sample: ["config: restore /etc/app byte-exact from checkpoint 20261202T190000.123Z-a1b2c3"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gitops.rollback.plugins.module_utils.module.options import (
    repository_argument_spec, store_argument_spec)


def main() -> None:
    """Only reached when the action plugin is bypassed."""
    module = AnsibleModule(
        argument_spec=dict(
            target=dict(type="str", required=True),
            layers=dict(type="raw", default=["flags", "traffic", "release", "config", "database", "infrastructure",
                                             "services"]),
            run_id=dict(type="str", default=""),
            paths=dict(type="list", elements="str", default=[]),
            release_root=dict(type="str", default=""),
            databases=dict(type="list", elements="dict", default=[]),
            database_passwords=dict(type="dict", default={}, no_log=True),
            terraform=dict(type="list", elements="dict", default=[]),
            services=dict(type="list", elements="dict", default=[]),
            traffic=dict(type="bool", default=False),
            flags=dict(type="list", elements="dict", default=[]),
            components=dict(type="raw", default=[]),
            safety=dict(type="dict", default={}),
            allowed_paths=dict(type="list", elements="path", default=[]),
            **repository_argument_spec(),
            **store_argument_spec(),
        ),
        supports_check_mode=True,
    )
    module.fail_json(msg="gitops.rollback.rollback_plan runs on the controller as an action plugin; call it as a task.")


if __name__ == "__main__":
    main()
