#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: repository_logins
short_description: Bind each managed host's key to its namespace on a checkpoint repository host
version_added: 0.1.0
description:
  - Runs on the repository host (docs/repository.md, "A login bound to its namespace"). Installs the receiver program
    of this collection at O(receiver), owned by root, mode 0644, and writes one C(authorized_keys) line per entry of
    O(logins) for the account O(user) -
    C(restrict,command="python3 -I -S <receiver> --namespace <namespace>" <key>), so that key opens the repository in
    its own namespace only.
  - The lines are kept between two marker comments (C(# BEGIN gitops.rollback repository logins ...) and
    C(# END gitops.rollback repository logins)); the block holds exactly O(logins) (none - the block is removed).
    Every other line of the file is kept as it is.
  - Namespaces and keys are checked before anything is written - a namespace is a host namespace (a letter or digit,
    then letters, digits, C(.) C(_) C(-)), a key is one OpenSSH public key line of a known type whose base64 holds that
    type (its comment is replaced by C(gitops-rollback:<namespace>)). One key may bind one namespace; a managed key
    that a line outside the block holds too is refused (sshd could log it in through that line, unbound).
  - Files are reached through no link - the receiver's directory must belong to root and be writable by nobody else
    (it is made, mode 0755, when missing); the directory of the C(authorized_keys) file and the file are opened
    without following a link (the directory is made, mode 0700, owned by O(user), when missing). Each file is
    replaced atomically, by a new file renamed over it. A new C(authorized_keys) is mode 0600, owned by O(user); an
    existing one keeps its owner and its mode (without group or other write permission).
  - Run it again after upgrading the collection, so the receiver matches what the managed hosts send.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
options:
  user:
    description: The account the managed hosts log in as (it must exist).
    type: str
    required: true
  authorized_keys:
    description: The C(authorized_keys) file to write. Default - C(.ssh/authorized_keys) in the home of O(user).
    type: path
  receiver:
    description:
      - Where the receiver program is installed (an absolute path of letters, digits and C(_ . + -); it is written into
        each forced command). Its directory must belong to root and be writable by nobody else.
    type: path
    default: /usr/local/lib/gitops-rollback/receiver.py
  logins:
    description: The bound logins, one per managed host.
    type: list
    elements: dict
    default: []
    suboptions:
      namespace:
        description: The host's namespace in the repository (its C(repository.name), default its inventory name).
        type: str
        required: true
      public_key:
        description: The host's OpenSSH public key line (the content of its C(.pub) file).
        type: str
        required: true
attributes:
  check_mode:
    support: full
    details: Reports what would change and writes nothing.
  diff_mode:
    support: full
    details: Shows the managed block of C(authorized_keys) (other lines are not shown) and the receiver's checksum, mode and owner.
seealso:
  - module: gitops.rollback.checkpoint_sync
"""

EXAMPLES = r"""
- name: Bind web1 and web2 to their namespaces for the account gitops-repo
  gitops.rollback.repository_logins:
    user: gitops-repo
    logins:
      - namespace: web1
        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH2... root@web1"
      - namespace: web2
        public_key: "{{ hostvars['web2'].gitops_rollback_repository_public_key }}"

- name: Remove every bound login (the receiver stays)
  gitops.rollback.repository_logins:
    user: gitops-repo
    logins: []
"""

RETURN = r"""
logins:
  description: The logins the managed block holds now (or would, in check mode), by namespace.
  returned: success
  type: list
  elements: dict
  sample: [{namespace: web1, key_type: ssh-ed25519, fingerprint: "SHA256:6Bf3Hk2bMUaM1v0SmtQ8H4mQ2sdY1kqQ5kVvrj2m0Ck"}]
receiver:
  description: The receiver program - its path, its SHA-256, and whether it was (or would be) written.
  returned: success
  type: dict
  sample: {path: /usr/local/lib/gitops-rollback/receiver.py, sha256: 3f9a0c..., changed: false}
authorized_keys:
  description:
    - The C(authorized_keys) file, whether it was (or would be) written, and the namespaces whose lines were added or
      removed (a line that changed is in both).
  returned: success
  type: dict
  sample: {path: /home/gitops-repo/.ssh/authorized_keys, changed: true, added: [web3], removed: []}
"""

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.replication.client import receiver_source
from ansible_collections.gitops.rollback.plugins.module_utils.replication.logins import Request, converge, parse_logins


def main() -> None:
    argument_spec = dict(
        user=dict(type="str", required=True),
        authorized_keys=dict(type="path"),
        receiver=dict(type="path", default="/usr/local/lib/gitops-rollback/receiver.py"),
        logins=dict(type="list", elements="dict", default=[], options=dict(
            namespace=dict(type="str", required=True), public_key=dict(type="str", required=True, no_log=False))),
    )
    module = RollbackModule(argument_spec, error_details=RollbackError.PUBLIC, supports_check_mode=True)
    params = module.params

    def run() -> dict:
        logins = parse_logins((entry["namespace"], entry["public_key"]) for entry in params["logins"])
        request = Request(params["user"], params["receiver"], logins, params["authorized_keys"])
        result = converge(request, receiver_source(), module.check_mode)
        if module.diff_mode:
            result["diff"] = request.diffs
        return result

    module.exit_json(**module.run(run))


if __name__ == "__main__":
    main()
