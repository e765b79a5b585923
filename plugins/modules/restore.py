#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: restore
short_description: Bring a host's managed paths back to a checkpoint
version_added: 0.1.0
description:
  - Restores every managed path of a checkpoint (or only O(paths)) byte-exact. Changed files are
    rewritten atomically (temporary file beside the destination, then rename), files added since
    the checkpoint are removed, modes, owners, mtimes, symlinks and empty directories are restored.
  - Before changing anything it verifies the hash of every stored object it will write, and
    refuses a manifest whose paths would escape the managed root (C(..), absolute paths, entries
    below a symlink). It then takes a safety checkpoint of the current state (returned, so the
    restore itself can be rolled back) and, after writing, checks the tree against the checkpoint.
  - A process killed during a restore leaves every file either old or new; running the restore
    again completes it.
  - With O(repository), a checkpoint the store does not hold (or holds only in part) comes from the checkpoint
    repository - only the objects the store lacks, each checked against its name - also onto a host whose store
    is gone (the store is created with the format the host's store had, so an encrypted one opens with the same
    key). A corrupted object in the repository is refused, naming it, before anything is restored.
  - Into empty or missing directories (a rebuild) of a plain store, the contents are streamed from the repository
    straight into the files being restored, each hashed as it is written and checked before anything is renamed
    into place; the store keeps only the checkpoint's trees, not the checkpoint. Otherwise (entries to remove, an
    encrypted store, O(verify_checkpoint)) the checkpoint is fetched into the store first, then restored.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.store
  - gitops.rollback.repository
  - gitops.rollback.attributes
options:
  checkpoint:
    description:
      - Id, id prefix or label of the checkpoint to restore. A label names its newest checkpoint.
    type: str
    required: true
  paths:
    description:
      - Restore only these managed paths of the checkpoint, or paths below them. Default is all of them.
      - A path below a managed path (C(/etc/app/nginx.conf), C(/srv/app/static)) goes back with everything
        below it, and every other entry of its managed path stays as it is now (directories on the way keep
        their metadata). The plan, the diff and the safety checkpoint cover that path and nothing else.
      - A path outside every managed path, a path the checkpoint does not hold, or a directory on the way that
        is now a link or a file, is refused before anything changes, naming the managed paths.
    type: list
    elements: path
    default: []
  allowed_paths:
    description:
      - With O(repository), the only paths the checkpoint may restore - the host's managed paths as the inventory
        configures them (C(gitops_rollback_paths); C(playbooks/rebuild.yml) passes them). Default is O(paths).
      - The repository host is not trusted, and a plain store's manifest names the paths its files go to. A
        checkpoint with a managed path outside these (or that is not an absolute normalised path) is refused
        before anything is fetched or written, naming the path. With O(repository) and neither this nor
        O(paths), a checkpoint that restores files is refused.
      - Without O(repository), the local store is trusted to name its managed paths; when given, these bound
        the restore too.
    type: list
    elements: path
    default: []
  safety_checkpoint:
    description:
      - Take a checkpoint of the current state before changing anything.
    type: bool
    default: true
  verify_checkpoint:
    description:
      - Before planning, re-hash every object of the checkpoint (as O(gitops.rollback.checkpoint#module:state=verified)
        does) and fail, naming each damaged object and what uses it, when one is missing or corrupted.
      - Without it, only the objects the restore will write are verified, and only when it is not in check mode.
      - The pre-flight of the ordered rollback verifies and plans in this one call.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - Reports exactly what would change (RV(changes)) and changes nothing.
      - With O(repository) and a checkpoint the store lacks, reports what would be fetched (RV(fetched)) and
        plans the changes only once the checkpoint is here.
  diff_mode:
    support: full
    details: Unified diffs of text files up to 128 KiB.
seealso:
  - module: gitops.rollback.checkpoint
  - module: gitops.rollback.checkpoint_info
  - module: gitops.rollback.checkpoint_sync
"""

EXAMPLES = r"""
- name: Roll the application files back to v1.3.0
  gitops.rollback.restore:
    checkpoint: v1.3.0
  register: restored

- name: Rebuild a replaced host from the checkpoint repository
  gitops.rollback.restore:
    checkpoint: v1.3.0
    repository:
      host: backup.example.com
      path: /srv/gitops-rollback/repository
      name: "{{ inventory_hostname }}"
      private_key: "{{ vault_repository_ssh_key }}"
      known_hosts: "{{ repository_host_key_line }}"
    allowed_paths: "{{ gitops_rollback_paths }}"

- name: Put back only the nginx configuration of v1.3.0, leaving the rest of /etc/app as it is
  gitops.rollback.restore:
    checkpoint: v1.3.0
    paths: [/etc/app/nginx.conf]

- name: Show what rolling back would change
  gitops.rollback.restore:
    checkpoint: v1.3.0
  check_mode: true
  diff: true
"""

RETURN = r"""
checkpoint:
  description: Summary of the checkpoint restored.
  returned: success
  type: dict
  sample: {id: 20261121T220257.448Z-452f73, label: v1.3.0, roots: [/srv/app], entries: 1203}
changes:
  description: Per managed path, the entries changed (or that would change), in tree order; at most 1000 per path.
  returned: success
  type: dict
  sample:
    /srv/app:
      - {op: update, path: index.html, type: file, reasons: [content, mtime]}
      - {op: delete, path: new.js, type: file, reasons: [extra]}
      - {op: create, path: assets/empty, type: dir, reasons: []}
summary:
  description: Per managed path, how many entries each operation changed (all of them, also when RV(changes) is cut).
  returned: success
  type: dict
  sample: {/srv/app: {update: 12, delete: 1, create: 3}}
safety_checkpoint:
  description: Summary of the checkpoint taken before the restore; null when nothing changed.
  returned: success
  type: dict
  sample: {id: 20261121T230000.001Z-9f8e7d, label: safety/v1.3.0, kind: safety}
verified:
  description: Whether the tree was checked equal to the checkpoint after the restore.
  returned: success
  type: bool
  sample: true
fetched:
  description:
    - With O(repository), the objects fetched from the repository and their bytes (V(0) when the store held the
      whole checkpoint); in check mode the objects that would be fetched, and C(bytes) null.
  returned: when O(repository) is set
  type: dict
  sample: {objects: 1204, bytes: 52428800}
recovery:
  description:
    - With O(repository), outside check mode - where the checkpoint came from (C(local) or C(repository)), the
      host's newest checkpoint in the repository and its age when the restore began (C(rpo_seconds), the
      recovery point, which is how much a rebuild from the repository loses at most; null when the store held
      the checkpoint), and the time the fetch and the restore took (C(rto_seconds)).
  returned: when O(repository) is set, not in check mode
  type: dict
  sample:
    source: repository
    newest_replicated: {id: 20261121T220257.448Z-452f73, created: "2026-11-21T22:02:57Z"}
    rpo_seconds: 3600
    rto_seconds: 42.5
damaged:
  description:
    - When the restore is refused because objects of the checkpoint are damaged or missing, each such object
      (its name, checkpoint, label, problem and the hash its content has now) and, apart, the path it was to
      restore (C(restore_path)). No metadata of the live path is returned.
  returned: failure, when objects of the checkpoint are damaged or missing
  type: list
  elements: dict
  sample:
    - object: 2d27fbdf4e8ca207afbfa388ca9172fbcc6c70e534af2476b3b704f87debadcf
      checkpoint: 20261121T220257.448Z-452f73
      label: v1.4.0
      problem: corrupted
      actual: d121be3103007b41edf96f8262925f8c7d61894afe9a041843b631f69445bc57
      restore_path: /srv/app/index.html
"""

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import CheckpointParams
from ansible_collections.gitops.rollback.plugins.module_utils.files.restore_ops import restore_host
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.module.options import repository_argument_spec


def main() -> None:
    argument_spec = dict(
        checkpoint=dict(type="str", required=True),
        paths=dict(type="list", elements="path", default=[]),
        allowed_paths=dict(type="list", elements="path", default=[]),
        safety_checkpoint=dict(type="bool", default=True),
        verify_checkpoint=dict(type="bool", default=False),
        **repository_argument_spec(),
    )
    module = RollbackModule(argument_spec, store=True, error_details=RollbackError.PUBLIC, supports_check_mode=True)
    params = CheckpointParams.from_module(module.params, module.check_mode, module.diff_mode)
    result = module.run(lambda: restore_host(params))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
