# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One rebuild (restore from a repository into an empty directory), run by ``bench_repository`` in a child
process with the engine of a given checkout, for the A/B of two checkouts in the same run.

``python bench/repository_rebuild.py <checkout> <workdir> <store> <label> <repository option as JSON> <the root>``
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    checkout, workdir, store_path, label, options, root = sys.argv[1:7]
    collections = os.path.join(workdir, "ansible_collections", "gitops")
    os.makedirs(collections, exist_ok=True)
    if not os.path.lexists(os.path.join(collections, "rollback")):
        os.symlink(checkout, os.path.join(collections, "rollback"))
    sys.path.insert(0, workdir)
    # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.files import restore, restore_ops
    from ansible_collections.gitops.rollback.plugins.module_utils.replication import client, fetch
    from ansible_collections.gitops.rollback.plugins.module_utils.store import store as store_module
    store = store_module.Store(store_path)
    spec = client.RepositorySpec.from_options(json.loads(options))
    no_safety = restore.RestoreOptions(safety_checkpoint=False)
    if hasattr(no_safety, "allowed_roots"):  # a checkout from before the allowed roots wrote anywhere the manifest said
        no_safety.allowed_roots = [root]
    with fetch.Fetcher(store, spec) as fetcher:
        fetcher.prepare()
        with store.lock("bench", "rebuild"):
            if hasattr(restore_ops, "rebuild"):
                restore_ops.rebuild(store, fetcher, label, no_safety)
            else:  # a checkout from before the rebuild streamed into the tree: fetch, then restore
                fetcher.fetch(label)
                restore.restore_checkpoint(store, store.find(label), no_safety)


if __name__ == "__main__":
    main()
