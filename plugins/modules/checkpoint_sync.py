#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_sync
short_description: Send a host's checkpoints to a checkpoint repository on another host
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
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.store
  - gitops.rollback.repository
  - gitops.rollback.attributes
options:
  checkpoints:
    description:
      - Ids, id prefixes or labels of the checkpoints to send. Default is every checkpoint of the store.
    type: list
    elements: str
    default: []
  repository:
    required: true
attributes:
  check_mode:
    support: full
    details: Connects to the repository (creating nothing there) and reports the checkpoints and objects a run would send.
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

- name: Send the checkpoint just taken
  gitops.rollback.checkpoint_sync:
    checkpoints: [v1.4.0]
    repository: "{{ gitops_rollback_repository }}"
"""

RETURN = r"""
checkpoints:
  description: Ids of the checkpoints sent (or that would be, in check mode), oldest first.
  returned: success
  type: list
  elements: str
  sample: [20261121T220257.448Z-452f73]
up_to_date:
  description: Ids of the selected checkpoints the repository already held as they are.
  returned: success
  type: list
  elements: str
  sample: []
objects:
  description:
    - C(needed) - objects the checkpoints sent need; C(present) - of those, already in the repository (sent by this
      or another host, or before an interruption); C(sent) and C(bytes) - objects sent and their stored size.
  returned: success
  type: dict
  sample: {needed: 1204, present: 1190, sent: 14, bytes: 1048576}
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
"""

from ansible_collections.gitops.rollback.plugins.module_utils._errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils._module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils._options import repository_argument_spec
from ansible_collections.gitops.rollback.plugins.module_utils._repository import sync_host
from ansible_collections.gitops.rollback.plugins.module_utils._store import Store


def main() -> None:
    argument_spec = dict(checkpoints=dict(type="list", elements="str", default=[]), **repository_argument_spec(True))
    module = RollbackModule(argument_spec, store=True, error_details=RollbackError.PUBLIC, supports_check_mode=True)
    store = Store(module.params["store_path"], module.params["encryption_key"] or None)
    result = module.run(lambda: sync_host(store, module.params["repository"], module.params["checkpoints"],
                                          module.check_mode))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
