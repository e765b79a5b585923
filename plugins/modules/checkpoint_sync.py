#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_sync
short_description: Send a host's checkpoints to a checkpoint repository on another host, fetch them back, or prune them there
version_added: 0.1.0
description:
  - Sends the checkpoints of the host's store (or those O(checkpoints) names) that the O(repository) lacks, or
    holds in an earlier version (a component attached since), over SSH. Only objects the repository does not hold
    cross, from whichever host sent them; objects go first and each manifest last, so the repository never shows a
    checkpoint whose objects are incomplete.
  - The repository host checks each object's SHA-256 as it arrives (a plain store's object must hash to its
    name), makes it durable and renames it into place before it answers. A sync that was interrupted (a killed
    run, a lost connection) is completed by running it again; what arrived is not sent again.
  - An encrypted store's objects and manifests cross sealed; the key is used on the host only, to list the objects
    a checkpoint needs, and never sent.
  - M(gitops.rollback.restore) with O(gitops.rollback.restore#module:repository) brings a checkpoint back from the
    repository, also onto a host whose store is gone.
  - With O(state=fetched), the checkpoints O(checkpoints) names are brought back into the local store (created with
    the format the repository recorded for the host when it is gone). Each manifest comes with the objects the
    store lacks, each checked before it is placed. Every layer's restore (files, release, database dumps, Terraform
    states) then works from the local store, so a rollback or a rebuild of a replaced host runs this first.
  - With O(state=pruned), the host's checkpoints in the repository that the O(retention) policy does not keep are
    deleted there (the host reads its manifests, with its key when the store is encrypted, and decides), then
    objects no manifest of any host needs are collected. An object another host's checkpoint needs is never
    deleted.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.store
  - gitops.rollback.repository
  - gitops.rollback.attributes
options:
  state:
    description:
      - V(present) sends checkpoints to the repository.
      - V(fetched) brings the checkpoints O(checkpoints) names from the repository into the local store.
      - V(pruned) applies O(retention) to this host's checkpoints in the repository, then collects garbage there.
    type: str
    choices: [present, fetched, pruned]
    default: present
  retention:
    description:
      - With O(state=pruned), the retention policy, as the options of the same names of
        M(gitops.rollback.checkpoint) with O(gitops.rollback.checkpoint#module:state=pruned) (the count/age policy
        O(retention.keep), O(retention.older_than_days), or the restic-style rules). The newest checkpoint is never
        deleted. Required with O(state=pruned).
    type: dict
    suboptions:
      keep:
        description: How many of the newest checkpoints to keep.
        type: int
      older_than_days:
        description: Delete checkpoints older than this many days.
        type: float
      keep_last:
        description: Keep the newest N checkpoints.
        type: int
      keep_hourly:
        description: Keep the newest checkpoint of each of the last N hours that hold one.
        type: int
      keep_daily:
        description: Keep the newest checkpoint of each of the last N days that hold one.
        type: int
      keep_weekly:
        description: Keep the newest checkpoint of each of the last N ISO weeks that hold one.
        type: int
      keep_monthly:
        description: Keep the newest checkpoint of each of the last N months that hold one.
        type: int
      keep_yearly:
        description: Keep the newest checkpoint of each of the last N years that hold one.
        type: int
      keep_within_days:
        description: Keep every checkpoint within this many days of the newest one.
        type: float
      keep_labels:
        description: Keep every checkpoint whose label matches one of these globs.
        type: list
        elements: str
  gc_grace_hours:
    description:
      - With O(state=pruned), objects younger than this are not collected, so the objects of a sync running
        meanwhile (whose manifests are not recorded yet) stay.
    type: float
    default: 1
  checkpoints:
    description:
      - With O(state=present), ids, id prefixes or labels of the checkpoints to send. Default is every checkpoint of
        the store.
      - With O(state=fetched), the checkpoints to fetch (ids, id prefixes or labels, resolved among the host's
        checkpoints in the repository when the store lacks them); required.
    type: list
    elements: str
    default: []
  allowed_paths:
    description:
      - With O(state=fetched), the managed paths (the host's C(gitops_rollback_paths)) a fetched checkpoint may name.
        The repository host is not trusted, so a checkpoint whose managed roots lie outside them is refused, naming the
        root, before any of its objects is fetched, since a later restore from the local store trusts the roots its
        manifest names. Default is none, so only checkpoints without files (databases, releases, Terraform
        states) are fetched.
    type: list
    elements: path
    default: []
  repository:
    required: true
attributes:
  check_mode:
    support: full
    details:
      - Connects to the repository (creating nothing there) and reports the checkpoints and objects a run would send.
      - With O(state=pruned), reports the checkpoints a run would delete (RV(deleted)) and deletes nothing.
      - With O(state=fetched), reports the checkpoints and the number of objects a run would fetch, creating nothing.
  diff_mode:
    support: none
seealso:
  - module: gitops.rollback.checkpoint
  - module: gitops.rollback.restore
"""

EXAMPLES = r"""
- name: Send every checkpoint of the host to the repository
  gitops.rollback.checkpoint_sync:
    repository:
      host: backup.example.com
      user: gitops-repo
      path: /srv/gitops-rollback/repository
      name: "{{ inventory_hostname }}"
      private_key: "{{ vault_repository_ssh_key }}"
      known_hosts: "{{ repository_host_key_line }}"

- name: Keep 7 daily and 4 weekly checkpoints of this host in the repository, and every release
  gitops.rollback.checkpoint_sync:
    state: pruned
    retention:
      keep_daily: 7
      keep_weekly: 4
      keep_labels: ["v[0-9]*"]
    repository: "{{ gitops_rollback_repository }}"

- name: Send the checkpoint just taken
  gitops.rollback.checkpoint_sync:
    checkpoints: [v1.4.0]
    repository: "{{ gitops_rollback_repository }}"

- name: Bring v1.4.0 back onto a replaced host before rolling every layer back to it
  gitops.rollback.checkpoint_sync:
    state: fetched
    checkpoints: [v1.4.0]
    allowed_paths: "{{ gitops_rollback_paths }}"
    repository: "{{ {'name': inventory_hostname} | combine(gitops_rollback_repository) }}"
"""

RETURN = r"""
checkpoints:
  description: Ids of the checkpoints sent (or that would be, in check mode), oldest first; with O(state=fetched), those
    now in the local store.
  returned: state=present or state=fetched
  type: list
  elements: str
  sample: [20261121T220257.448Z-452f73]
up_to_date:
  description: Ids of the selected checkpoints the repository already held as they are.
  returned: state=present
  type: list
  elements: str
  sample: []
objects:
  description:
    - C(needed) - objects the checkpoints sent need; C(present) - of those, already in the repository (sent by this
      or another host, or before an interruption); C(sent) and C(bytes) - objects sent and the bytes sent for them;
      C(as_delta) - of those, tree objects sent as a delta against the base's tree.
  returned: state=present
  type: dict
  sample: {needed: 1204, present: 1190, sent: 14, as_delta: 1, bytes: 1048576}
base:
  description:
    - The newest checkpoint of this host the repository already held, which the sync built on (tree deltas, the
      list of needed objects as a difference); null when there was none.
  returned: state=present
  type: str
  sample: 20261120T220112.031Z-1f2e3d
wire:
  description: Bytes that crossed the SSH session after the receiver program, each way (requests and objects sent, replies received).
  returned: state=present, not in check mode
  type: dict
  sample: {sent: 1071234, received: 4120}
fetched:
  description: Objects fetched into the local store and their bytes (in check mode, the objects a run would fetch).
  returned: state=fetched
  type: dict
  sample: {objects: 1204, bytes: 209715200}
recovery:
  description:
    - C(rpo_seconds) - the age of the host's newest checkpoint in the repository (C(newest_replicated), its id and
      time), what a rebuild loses at most; C(rto_seconds) - the time the fetch took. Null values when the store
      held everything.
  returned: state=fetched, not in check mode
  type: dict
  sample: {rpo_seconds: 3600, rto_seconds: 12.5, newest_replicated: {id: 20261121T220257.448Z-452f73,
           created: "2026-11-21T22:02:57.448Z"}}
repository:
  description: The repository and namespace (no secrets).
  returned: success
  type: str
  sample: "gitops-repo@backup.example.com:/srv/gitops-rollback/repository (port 22, host namespace web1)"
host:
  description: The host's namespace in the repository.
  returned: success
  type: str
  sample: web1
deleted:
  description: Ids of this host's checkpoints deleted from the repository (or that would be, in check mode).
  returned: state=pruned
  type: list
  elements: str
  sample: [20261101T080000.000Z-0a1b2c]
kept:
  description: The checkpoints the policy keeps, newest first, each with the rules that keep it.
  returned: state=pruned
  type: list
  elements: dict
  sample: [{id: 20261121T220257.448Z-452f73, label: v1.4.0, reasons: [newest]}]
collected:
  description: Objects (of any host) no manifest needs any more, deleted from the repository, and their bytes.
  returned: state=pruned, not in check mode
  type: dict
  sample: {objects: 14, bytes: 1048576}
"""

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.module.options import repository_argument_spec
from ansible_collections.gitops.rollback.plugins.module_utils.replication.repository import sync_host
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


RETENTION = dict(keep=dict(type="int"), older_than_days=dict(type="float"), keep_last=dict(type="int"),
                 keep_hourly=dict(type="int"), keep_daily=dict(type="int"), keep_weekly=dict(type="int"),
                 keep_monthly=dict(type="int"), keep_yearly=dict(type="int"), keep_within_days=dict(type="float"),
                 keep_labels=dict(type="list", elements="str"))


def main() -> None:
    argument_spec = dict(
        state=dict(type="str", default="present", choices=["present", "fetched", "pruned"]),
        checkpoints=dict(type="list", elements="str", default=[]),
        allowed_paths=dict(type="list", elements="path", default=[]),
        retention=dict(type="dict", options=RETENTION),
        gc_grace_hours=dict(type="float", default=1.0),
        **repository_argument_spec(True),
    )
    module = RollbackModule(argument_spec, store=True, error_details=RollbackError.PUBLIC, supports_check_mode=True,
                            required_if=[("state", "pruned", ("retention",)), ("state", "fetched", ("checkpoints",))])
    store = Store(module.params["store_path"], module.params["encryption_key"] or None)
    result = module.run(lambda: sync_host(store, module.params, module.check_mode))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
