# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The name a flag set is stored under, without the flags code (the rollback plan names flag sets by it)."""

from __future__ import annotations

import os
from typing import Any, Dict


def component_name(entry: Dict[str, Any]) -> str:
    """The name a flag set is stored under in a checkpoint: ``file:<path>`` or ``etcd:<prefix>``.

    ``entry`` holds the feature_flags options (``backend``, ``path``, ``etcd_prefix``); the rollback
    plan names a flag set of the inventory (``gitops_rollback_flags``) by it, without reading it.
    """
    if entry.get("backend", "file") == "etcd":
        return "etcd:" + str(entry.get("etcd_prefix") or "")
    return "file:" + os.path.normpath(str(entry.get("path") or ""))
