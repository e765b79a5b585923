# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The checkpoint repository on another host, reached over SSH (docs/repository.md)."""

    DOCUMENTATION = r"""
options:
  repository:
    description:
      - A checkpoint repository - a directory on a repository host, reached with the system C(ssh) of the
        managed host (no agent, no daemon; the repository host needs C(python3)). It holds the objects of every
        host once and, per host, its manifests (C(hosts/<name>/)). See docs/repository.md.
      - Objects and manifests cross as they are stored; an encrypted store's stay sealed and the key never
        leaves the host.
    type: dict
    suboptions:
      host:
        description:
          - Address or name of the repository host.
        type: str
        required: true
      port:
        description:
          - SSH port of the repository host.
        type: int
        default: 22
      user:
        description:
          - User to log in as on the repository host. Default is the SSH client's (its configuration, else the
            local user).
        type: str
      path:
        description:
          - Absolute path of the repository on the repository host; created (mode 0700) by the first sync when
            its parent exists.
        type: str
        required: true
      name:
        description:
          - The host's namespace in the repository. Default is the managed host's name. A rebuilt host must use
            the name its checkpoints were sent under (the playbooks pass C(inventory_hostname)).
        type: str
      private_key:
        description:
          - Private key (its text, from Ansible Vault) to log in with. It is written to a file of mode 0600 for
            the time of the run and removed; never logged.
          - Default is the host's own keys (C(~/.ssh) of the user running the module).
        type: str
      private_key_file:
        description:
          - Path on the managed host of the private key to log in with. Mutually exclusive with O(repository.private_key).
        type: path
      known_hosts:
        description:
          - C(known_hosts) lines of the repository host's key. Host keys are always checked
            (C(StrictHostKeyChecking=yes)); without this option the managed host's own C(known_hosts) files must
            hold the key.
        type: str
      connect_timeout:
        description:
          - Seconds to wait for the SSH connection.
        type: int
        default: 30
"""
