# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One variable namespace: each shared setting has one name, ``gitops_rollback_<setting>``, from the
inventory through every role to the modules' option of the same suffix.

The names the roles used before (``checkpoint_store_path``, ``rollback_host_store_path``, ...) are still
read, with a deprecation warning, until :data:`REMOVED_IN`. The new name wins when both are set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from ..store.location import DEFAULT_STORE

PREFIX = "gitops_rollback_"
#: The release that stops reading the old names.
REMOVED_IN = "0.2.0"


@dataclass(frozen=True)
class Setting:
    """A shared setting: its name, its default and the names it had in the roles before."""

    name: str
    default: Any
    old: Tuple[str, ...] = ()


#: The default audit log on the controller (every entry point writes it unless the inventory names another).
DEFAULT_AUDIT_LOG = "~/.local/state/gitops-rollback/audit.jsonl"


def _settings(*settings: Setting) -> Dict[str, Setting]:
    return {item.name: item for item in settings}


SETTINGS: Dict[str, Setting] = _settings(
    # The store of every host (and the controller's, for Terraform snapshots) and its key.
    Setting(PREFIX + "store_path", DEFAULT_STORE,
            ("rollback_store_path", "checkpoint_store_path", "rollback_host_store_path",
             "rollback_release_store_path", "rollback_database_store_path", "rollback_infrastructure_store_path")),
    Setting(PREFIX + "encryption_key", "", ("rollback_release_encryption_key",)),
    # What each host holds, layer by layer: checkpointed and rolled back under the same names.
    Setting(PREFIX + "paths", [], ("checkpoint_paths",)),
    Setting(PREFIX + "exclude", [], ("checkpoint_exclude",)),
    Setting(PREFIX + "facts", [], ("checkpoint_facts",)),
    Setting(PREFIX + "keep", 0, ("checkpoint_keep",)),
    Setting(PREFIX + "release_root", "", ("rollback_release_root", "checkpoint_release_root")),
    Setting(PREFIX + "databases", [], ("rollback_databases", "checkpoint_databases")),
    Setting(PREFIX + "terraform", [], ("rollback_terraform", "checkpoint_terraform")),
    Setting(PREFIX + "flags", [], ("rollback_flags", "checkpoint_flags")),
    Setting(PREFIX + "services", [], ("rollback_services",)),
    Setting(PREFIX + "traffic", False, ("rollback_traffic",)),
    Setting(PREFIX + "repository", {}, ("rollback_repository",)),
    # Where runs are recorded and announced, and who may run them.
    Setting(PREFIX + "audit_log", DEFAULT_AUDIT_LOG, ("rollback_audit_log",)),
    Setting(PREFIX + "webhook_url", "", ("rollback_webhook_url",)),
    Setting(PREFIX + "webhook_secret", "", ("rollback_webhook_secret",)),
    Setting(PREFIX + "policy", {}, ("rollback_policy",)),
)


class UnknownSetting(KeyError):
    """A name that is not a shared setting."""


def setting(name: str) -> Setting:
    """Return the setting called ``name`` (with or without the ``gitops_rollback_`` prefix)."""
    found = SETTINGS.get(name if name.startswith(PREFIX) else PREFIX + name)
    if found is None:
        raise UnknownSetting("%s is not a shared setting; known: %s" % (name, ", ".join(sorted(SETTINGS))))
    return found


def source(name: str, is_set: Callable[[str], bool]) -> Tuple[Optional[str], Optional[str]]:
    """Return the variable that holds a setting and a deprecation message when it is an old name.

    ``is_set(variable)`` tells whether a variable is set. The result is ``(variable, message)``: the
    setting's own name when set, else the first old name set (with the message), else ``(None, None)``
    (the setting's default applies).
    """
    found = setting(name)
    if is_set(found.name):
        return found.name, None
    for old in found.old:
        if is_set(old):
            return old, ("The variable %s is deprecated: set %s instead (the same value; %s is read until %s)."
                         % (old, found.name, old, REMOVED_IN))
    return None, None


def renamed() -> Dict[str, str]:
    """Return every old name with the name that replaces it."""
    return {old: item.name for item in SETTINGS.values() for old in item.old}
