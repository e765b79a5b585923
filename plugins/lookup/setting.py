# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup setting: the value of a shared gitops_rollback_* setting (the table is module_utils/controller/namespace.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: setting
author: gitops.rollback maintainers (@gitops-rollback)
version_added: "0.1.0"
short_description: The value of a shared C(gitops_rollback_*) setting, from its one name
description:
  - Each setting shared by the roles of the collection has one name, C(gitops_rollback_<setting>), from the
    inventory through every role to the modules' option (C(gitops_rollback_store_path) is every module's
    C(store_path)). The roles read it with this lookup.
  - When the setting is not set, a name the roles used before (for example C(checkpoint_store_path) or
    C(rollback_host_store_path) for C(gitops_rollback_store_path), C(checkpoint_paths) for
    C(gitops_rollback_paths)) is still read, with a deprecation
    warning, until version 0.2.0; else the setting's default applies.
  - "Settings (docs/variables.md): C(gitops_rollback_store_path) (default C(/var/lib/gitops-rollback)),
    C(gitops_rollback_encryption_key) (default empty: a plain store); what each host holds - C(gitops_rollback_paths),
    C(gitops_rollback_exclude), C(gitops_rollback_facts), C(gitops_rollback_keep), C(gitops_rollback_release_root),
    C(gitops_rollback_databases), C(gitops_rollback_terraform), C(gitops_rollback_flags), C(gitops_rollback_services),
    C(gitops_rollback_traffic), C(gitops_rollback_repository); and where runs are recorded and who may run them -
    C(gitops_rollback_audit_log), C(gitops_rollback_webhook_url), C(gitops_rollback_webhook_secret),
    C(gitops_rollback_policy)."
options:
  _terms:
    description: The setting's name, with or without the C(gitops_rollback_) prefix.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Capture the managed paths in the store of this host
  gitops.rollback.checkpoint:
    paths: [/etc/app]
    store_path: "{{ lookup('gitops.rollback.setting', 'gitops_rollback_store_path') }}"
"""

RETURN = r"""
_raw:
  description: The value of each setting named.
  type: list
  elements: raw
"""

import copy
from typing import Any, Dict, List, Optional

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display
from ansible_collections.gitops.rollback.plugins.module_utils.controller.namespace import UnknownSetting, setting, source

display = Display()


class LookupModule(LookupBase):
    """Read a shared setting by its one name (an old name with a deprecation warning, else its default)."""

    def run(self, terms: List[Any], variables: Optional[Dict[str, Any]] = None, **kwargs: Any) -> List[Any]:
        variables = variables or {}
        values = []
        for term in terms:
            try:
                variable, warning = source(str(term), lambda name: name in variables)
                default = setting(str(term)).default
            except UnknownSetting as exc:
                raise AnsibleLookupError(str(exc)) from exc
            if warning:
                display.deprecated(warning, version="0.2.0", collection_name="gitops.rollback")  # REMOVED_IN, literal for sanity
            values.append(copy.deepcopy(default) if variable is None else self._templar.template(variables[variable]))
        return values
