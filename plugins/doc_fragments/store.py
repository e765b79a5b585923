# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options of the checkpoint store shared by every module that reads or writes it."""

    DOCUMENTATION = r"""
options:
  store_path:
    description:
      - Directory of the checkpoint store on the target host. It is created with mode 0700.
    type: path
    default: /var/lib/gitops-rollback
  lock_timeout:
    description:
      - Seconds to wait for another run holding the store lock before failing with its owner.
      - A lock whose process is gone or whose expiry has passed is recovered at once.
    type: float
    default: 0
  owner:
    description:
      - Who is acting, recorded in the lock and the manifest. Default is the remote user and host.
    type: str
  encryption_key:
    description:
      - Key of an encrypted store (at least 16 characters; use a random key kept in Ansible Vault).
        The roles and playbooks of this collection pass the variable C(gitops_rollback_encryption_key).
      - A store created with a key is encrypted and authenticated with AES-256-GCM (in 1 MiB chunks,
        each bound to the object's name and kind), the key stretched with scrypt; objects (file
        contents, trees, database dumps, Terraform states) and manifests are sealed, object names
        are keyed hashes, so identical content is still stored once. See docs/security.md.
      - Required for every operation on an encrypted store; a wrong key is refused before anything
        is read or changed. Given for a store that is not encrypted, it is refused too (an existing
        store cannot be encrypted in place). Never written to disk nor logged.
      - A store encrypted by an earlier release (scheme C(shake256-xor+hmac-sha256+hkdf/v1)) stays
        readable and writable; M(gitops.rollback.checkpoint) with O(gitops.rollback.checkpoint#module:state=rekeyed)
        moves it to the current scheme.
    type: str
requirements:
  - cryptography (the pyca Python package) on the managed host, only for an encrypted store, that
    is when O(encryption_key) is given. Without it such a task fails with a message naming the
    package; plain stores, and reading a store of the earlier scheme, need only the standard library.
"""
