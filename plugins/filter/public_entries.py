# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters public_entries (layer entries without the keys that carry secrets, safe to loop over) and
database_passwords and flags_passwords (each database entry's password, each flag set's etcd password, by
position, for a module's no_log option).

A loop result carries its item, and Ansible prints results at ``-v``: a task that loops over
database or Terraform entries loops over this view and takes the secret from the entry by
``loop_control.index_var``. Documentation: public_entries.yml.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

from ansible.errors import AnsibleFilterError
from ansible_collections.gitops.rollback.plugins.plugin_utils.deferred import deferred

database_password = deferred("controller.plan", "database_password")
database_passwords = deferred("controller.plan", "database_passwords")
flags_passwords = deferred("controller.plan", "flags_passwords")

SECRET_KEYS = frozenset(("login_password", "backend_config_secrets", "password", "token", "encryption_key",
                         "webhook_secret", "etcd_password"))


def public_entries(entries: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Return ``entries`` (a list of dicts) without their secret-bearing keys, in the same order."""
    if not isinstance(entries, (list, tuple)) or not all(isinstance(e, Mapping) for e in entries):
        raise AnsibleFilterError("public_entries expects a list of dictionaries, got %s" % type(entries).__name__)
    return [{key: value for key, value in entry.items() if key not in SECRET_KEYS} for entry in entries]


class FilterModule:
    """gitops.rollback entry filters."""

    def filters(self) -> Dict[str, Any]:
        return {"public_entries": public_entries, "database_passwords": database_passwords,
                "database_password": database_password,
                "flags_passwords": flags_passwords}
