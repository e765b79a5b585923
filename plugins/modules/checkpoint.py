#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint
short_description: Create, delete, prune and verify checkpoints of a host's managed paths
version_added: 0.1.0
description:
  - Captures managed directories into a content-addressed store on the host. Each entry's type,
    mode, owner, group, size, mtime, SHA-256 and symlink target are recorded; empty directories
    are kept. File contents are stored once, by hash, and shared by every checkpoint.
  - A checkpoint becomes visible only when its manifest is complete; a failure (even a full disk)
    leaves earlier checkpoints intact and no partial checkpoint.
  - A checkpoint carries a O(label) (typically the Git tag it guards), the Git O(commit), a
    O(reason) and its creator. With a O(label) that already names a checkpoint of exactly the
    same state, nothing is created and RV(ignore:changed) is V(false).
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.store
  - gitops.rollback.attributes
options:
  state:
    description:
      - V(present) creates a checkpoint of O(paths).
      - V(absent) deletes the checkpoint named by O(checkpoint) and collects unreferenced objects.
      - V(pruned) deletes the checkpoints a retention policy forgets, then collects unreferenced
        objects. Either the count/age policy (O(keep), O(older_than_days)) or the restic-style
        policy (O(keep_last), O(keep_hourly), O(keep_daily), O(keep_weekly), O(keep_monthly),
        O(keep_yearly), O(keep_within_days), O(keep_labels)); the two cannot be mixed. Whatever the policy,
        the newest checkpoint, the newest safety checkpoint and every checkpoint labelled with a release tag
        (V(v[0-9]*), for example V(v1.2.3)) are never deleted. In check mode nothing is deleted and RV(forgotten) and
        RV(kept) (with the reasons) show what a run would do.
      - V(verified) re-hashes every object of O(checkpoint) (or of all checkpoints) and fails when
        one is missing or corrupted.
      - V(rekeyed) re-encrypts every object and manifest of an encrypted store from
        O(encryption_key) to O(new_encryption_key) under the current scheme (AES-256-GCM, scrypt),
        one file at a time (each replaced atomically). Without O(new_encryption_key) the key stays
        and a store of the earlier scheme moves to the current one. An interrupted rekey is
        finished by running it again with the same keys; until then the store refuses other
        operations. Nothing changes when the store already uses the current scheme and
        O(new_encryption_key).
    type: str
    choices: [present, absent, pruned, verified, rekeyed]
    default: present
  new_encryption_key:
    description:
      - With O(state=rekeyed), the new key of the store (at least 16 characters). Never logged.
      - Default is O(encryption_key), so the rekey only moves the store to the current scheme.
    type: str
  paths:
    description:
      - Absolute paths of the managed directories to capture. Required with O(state=present).
    type: list
    elements: path
  include:
    description:
      - Globs (relative to each path) of files to capture; a glob without C(/) also matches base
        names. Default is every file. Directories are always captured unless excluded.
    type: list
    elements: str
    default: []
  exclude:
    description:
      - Globs of entries to leave out; an excluded directory is left out with its contents.
        Restores leave excluded entries alone.
    type: list
    elements: str
    default: []
  label:
    description:
      - Label of the new checkpoint, usually the Git tag it guards (V(v1.4.0)).
    type: str
  commit:
    description:
      - Git commit the checkpoint belongs to.
    type: str
  reason:
    description:
      - Why the checkpoint is taken.
    type: str
  facts:
    description:
      - Host facts to record in the manifest.
    type: list
    elements: str
    choices: [packages, services]
    default: []
  force:
    description:
      - Create a new checkpoint even when one with the same O(label) holds the same state.
    type: bool
    default: false
  when_changed:
    description:
      - Create the checkpoint only when the managed paths differ from the newest checkpoint of the same
        paths (whatever its label); otherwise report that checkpoint, unchanged. For checkpoints on a
        schedule that should record only changes made outside a deploy.
    type: bool
    default: false
  checkpoint:
    description:
      - Checkpoint id or label, for O(state=absent) and O(state=verified).
    type: str
  verify:
    description:
      - With O(state=present), re-hash every object of the new checkpoint (or of the one found unchanged) in the
        same run, as O(state=verified) does, and fail naming the damaged objects. Not in check mode.
    type: bool
    default: false
  keep:
    description:
      - With O(state=pruned), how many of the newest checkpoints to keep (at least one is kept).
      - With O(state=present), the same prune after the capture (and its O(verify)), in the same run; RV(pruned) says
        what it deleted. The new checkpoint is the newest, so it is kept. The other retention options work the same way
        with O(state=present).
      - Count/age policy; labels do not protect a checkpoint from it.
    type: int
  older_than_days:
    description:
      - With O(state=pruned), delete checkpoints older than this many days.
      - Count/age policy; combined with O(keep), a checkpoint stays only when both keep it.
    type: float
  keep_last:
    description:
      - With O(state=pruned), keep the newest N checkpoints.
      - The restic-style options each keep checkpoints; a checkpoint kept by any of them is kept,
        every other one is deleted. Besides, the newest checkpoint and the newest safety checkpoint
        (kind V(safety) or a label starting with V(safety/), as restores and rollbacks take) are
        always kept.
      - V(0) leaves the rule out, V(-1) means unlimited.
    type: int
  keep_hourly:
    description:
      - With O(state=pruned), for each of the last N hours that hold a checkpoint, keep the newest
        checkpoint of that hour. Hours without a checkpoint do not count. Periods are UTC.
    type: int
  keep_daily:
    description:
      - With O(state=pruned), keep the newest checkpoint of each of the last N days (UTC) that hold one.
    type: int
  keep_weekly:
    description:
      - With O(state=pruned), keep the newest checkpoint of each of the last N ISO weeks (Monday to
        Sunday, UTC) that hold one.
    type: int
  keep_monthly:
    description:
      - With O(state=pruned), keep the newest checkpoint of each of the last N months (UTC) that hold one.
    type: int
  keep_yearly:
    description:
      - With O(state=pruned), keep the newest checkpoint of each of the last N years (UTC) that hold one.
    type: int
  keep_within_days:
    description:
      - With O(state=pruned), keep every checkpoint taken within this many days of the newest
        checkpoint (not of now, so a store nobody writes to does not empty itself).
    type: float
  keep_labels:
    description:
      - With O(state=pruned), keep every checkpoint whose label matches one of these globs
        (case-sensitive; C(*) also matches C(/)), such as release tags.
      - Release tags (V(v[0-9]*)) are kept whatever this option says.
      - Not used by the count/age policy.
    type: list
    elements: str
attributes:
  check_mode:
    support: full
    details: Reports what would be captured or deleted; nothing is written.
  diff_mode:
    support: none
seealso:
  - module: gitops.rollback.checkpoint_info
  - module: gitops.rollback.restore
notes:
  - Hard links are stored as separate files; extended attributes, ACLs and special files
    (devices, sockets, FIFOs) are not captured; the manifest lists the special files it skipped.
"""

EXAMPLES = r"""
- name: Checkpoint the application before deploying v1.4.0
  gitops.rollback.checkpoint:
    paths: [/srv/app, /etc/app]
    exclude: ["*.log", "cache"]
    label: v1.4.0
    commit: "{{ deploy_commit }}"
    reason: pre-deploy
    facts: [packages]

- name: Checkpoint, re-hash what was stored and keep the ten newest, in one run
  gitops.rollback.checkpoint:
    paths: [/srv/app]
    label: v1.4.0
    verify: true
    keep: 10

- name: Keep the ten newest checkpoints
  gitops.rollback.checkpoint:
    state: pruned
    keep: 10

- name: Keep 7 daily, 4 weekly and 12 monthly checkpoints, every release and the newest safety checkpoint
  gitops.rollback.checkpoint:
    state: pruned
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 12
    keep_labels: ["v[0-9]*", "hotfix/*"]

- name: Dry run - list what a policy would delete and why each kept checkpoint stays
  gitops.rollback.checkpoint:
    state: pruned
    keep_last: 5
    keep_within_days: 2
  check_mode: true
  register: retention

- name: Re-hash every stored object of v1.4.0
  gitops.rollback.checkpoint:
    state: verified
    checkpoint: v1.4.0

- name: Checkpoint into an encrypted store (key from Ansible Vault)
  gitops.rollback.checkpoint:
    paths: [/srv/app]
    label: v1.4.0
    store_path: /var/lib/gitops-rollback-enc
    encryption_key: "{{ vault_rollback_store_key }}"

- name: Rotate the store key (rerun with both keys if it was interrupted)
  gitops.rollback.checkpoint:
    state: rekeyed
    store_path: /var/lib/gitops-rollback-enc
    encryption_key: "{{ vault_rollback_store_key }}"
    new_encryption_key: "{{ vault_rollback_store_key_2026 }}"

- name: Move a store encrypted by an earlier release to AES-256-GCM, keeping its key
  gitops.rollback.checkpoint:
    state: rekeyed
    store_path: /var/lib/gitops-rollback-enc
    encryption_key: "{{ gitops_rollback_encryption_key }}"
"""

RETURN = r"""
checkpoint:
  description: Summary of the checkpoint created, found unchanged, deleted or verified.
  returned: when one checkpoint is concerned
  type: dict
  sample:
    id: 20261121T220257.448Z-452f73
    label: v1.4.0
    commit: 3f2c1e0
    reason: pre-deploy
    creator: root@web1
    created: "2026-11-21T22:02:57Z"
    host: web1
    kind: checkpoint
    roots: [/srv/app]
    entries: 1203
    bytes: 52428800
    components: []
stats:
  description: What the capture did.
  returned: state=present
  type: dict
  sample: {entries: 1203, bytes: 52428800, hashed: 12, new_blobs: 3}
deleted:
  description: Ids of the checkpoints deleted (or that would be in check mode).
  returned: state=absent or state=pruned
  type: list
  elements: str
  sample: [20261101T080000.000Z-0a1b2c]
kept:
  description: The checkpoints a prune keeps, newest first, each with the rules that keep it.
  returned: state=pruned
  type: list
  elements: dict
  sample:
    - id: 20261121T220257.448Z-452f73
      label: v1.4.0
      kind: checkpoint
      created: "2026-11-21T22:02:57Z"
      reasons: [newest, daily 2026-11-21, "label matches v[0-9]*"]
forgotten:
  description: The checkpoints a prune deletes (or would delete in check mode), newest first.
  returned: state=pruned
  type: list
  elements: dict
  sample:
    - id: 20261101T080000.000Z-0a1b2c
      label: scheduled/2026-11-01
      kind: checkpoint
      created: "2026-11-01T08:00:00Z"
pruned:
  description: What the prune after the capture deleted (O(keep) with O(state=present)), as O(state=pruned) reports it.
  returned: state=present with a retention option (O(keep), O(keep_last), ...)
  type: dict
  sample: {deleted: [20261101T080000.000Z-0a1b2c], collected: {objects: 14, bytes: 1048576}}
collected:
  description: Objects and bytes freed by garbage collection.
  returned: state=absent or state=pruned, not in check mode
  type: dict
  sample: {objects: 14, bytes: 1048576}
problems:
  description: Damaged or missing objects per checkpoint id (empty when sound).
  returned: state=verified, or state=present with verify when one is damaged
  type: dict
  sample: {"20261121T220257.448Z-452f73": [{object: "ab12...", actual: "cd34...", problem: hash mismatch}]}
rekey:
  description: What a rekey did - objects and manifests re-encrypted, the new key id and scheme, whether it resumed an interrupted one.
  returned: state=rekeyed
  type: dict
  sample: {objects: 1204, manifests: 3, key_id: 4f0c2a9e61d1b0c37a55e2d8c3b1f9aa, scheme: aes-256-gcm-stream/v2, resumed: false}
"""

from typing import Any, Callable

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.module.options import check_label_options

OPERATIONS = {  # state -> the function of files.checkpoint_ops that does it
    "present": "make_checkpoint",
    "absent": "delete_checkpoint",
    "pruned": "prune_checkpoints",
    "verified": "verify_checkpoints",
    "rekeyed": "rekey_store",
}

POLICY_OPTIONS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
                  "keep_within_days", "keep_labels")


def _run(options: dict, operation: Callable[[Any], dict], params: Any) -> dict:
    check_label_options(options, "label")
    return operation(params)


def main() -> None:
    argument_spec = dict(
        state=dict(type="str", default="present", choices=list(OPERATIONS)),
        paths=dict(type="list", elements="path"),
        include=dict(type="list", elements="str", default=[]),
        exclude=dict(type="list", elements="str", default=[]),
        label=dict(type="str"),
        commit=dict(type="str"),
        reason=dict(type="str"),
        facts=dict(type="list", elements="str", default=[], choices=["packages", "services"]),
        force=dict(type="bool", default=False),
        when_changed=dict(type="bool", default=False),
        checkpoint=dict(type="str"),
        verify=dict(type="bool", default=False),
        keep=dict(type="int"),
        older_than_days=dict(type="float"),
        keep_last=dict(type="int"),
        keep_hourly=dict(type="int"),
        keep_daily=dict(type="int"),
        keep_weekly=dict(type="int"),
        keep_monthly=dict(type="int"),
        keep_yearly=dict(type="int"),
        keep_within_days=dict(type="float"),
        keep_labels=dict(type="list", elements="str"),
        new_encryption_key=dict(type="str", no_log=True),
    )
    module = RollbackModule(
        argument_spec,
        store=True,
        error_details=RollbackError.PUBLIC,
        required_if=[
            ("state", "present", ("paths",)),
            ("state", "absent", ("checkpoint",)),
            ("state", "pruned", ("keep", "older_than_days") + POLICY_OPTIONS, True),
            ("state", "rekeyed", ("encryption_key",)),
        ],
        mutually_exclusive=[(legacy, option) for legacy in ("keep", "older_than_days") for option in POLICY_OPTIONS],
        supports_check_mode=True,
    )
    # The engine is imported once the options are known: with an encryption key, the store's key
    # derivation that RollbackModule started runs meanwhile on another core.
    from ansible_collections.gitops.rollback.plugins.module_utils.files import checkpoint_ops  # pylint: disable=import-outside-toplevel

    params = checkpoint_ops.CheckpointParams.from_module(module.params, module.check_mode)
    operation = getattr(checkpoint_ops, OPERATIONS[module.params["state"]])
    result = module.run(lambda: _run(module.params, operation, params))
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
