# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's layers built by hand, without the Store facade, for their own unit tests."""

from __future__ import annotations

from typing import NamedTuple, Optional

from ansible_collections.gitops.rollback.plugins.module_utils.store.root import StoreRoot
from ansible_collections.gitops.rollback.plugins.module_utils.store.maintenance import Maintenance
from ansible_collections.gitops.rollback.plugins.module_utils.store.manifests import Manifests
from ansible_collections.gitops.rollback.plugins.module_utils.store.objects import Objects
from ansible_collections.gitops.rollback.plugins.module_utils.store.writes import ObjectWrites


class Layers(NamedTuple):
    base: StoreRoot
    objects: Objects
    writes: ObjectWrites
    manifests: Manifests
    maintenance: Maintenance


def layers(path, key: Optional[str] = None) -> Layers:
    """Return a new store's layers (initialised) at ``path``."""
    base = StoreRoot(str(path), key)
    base.init()
    objects = Objects(base)
    writes = ObjectWrites(objects)
    manifests = Manifests(base, objects, writes)
    return Layers(base, objects, writes, manifests, Maintenance(base, objects, writes, manifests))
