# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollback_preview with a repository fetches the target as checkpoint_sync state=fetched does, before the preview
reads the store (the rollback role's plan no longer runs checkpoint_sync on each host)."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.replication import repository as _repository
from ansible_collections.gitops.rollback.plugins.modules import rollback_preview


def test_the_target_is_fetched_into_the_module_s_store_with_checkpoint_sync_s_options(tmp_path, monkeypatch):
    seen = {}

    def sync_host(store, options, check_mode):
        seen.update(store=store, options=options, check_mode=check_mode)
        return {"changed": False, "checkpoints": ["c1"]}

    monkeypatch.setattr(_repository, "sync_host", sync_host)
    repository = {"host": "backup", "path": "/srv/repository", "name": "h1"}
    params = {"target": "v1", "repository": repository, "allowed_paths": ["/etc/app"], "store_path": str(tmp_path),
              "encryption_key": None, "owner": None, "lock_timeout": 0.0}
    assert rollback_preview.fetch_target(params, True) == {"changed": False, "checkpoints": ["c1"]}
    assert seen["check_mode"] is True and str(seen["store"].root) == str(tmp_path)
    assert seen["options"] == {"state": "fetched", "checkpoints": ["v1"], "repository": repository,
                               "allowed_paths": ["/etc/app"], "encryption_key": None, "owner": None,
                               "lock_timeout": 0.0}
