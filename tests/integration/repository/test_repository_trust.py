"""What a repository host (not trusted) cannot make a host do: a forged manifest cannot choose where a rebuild writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import Fleet
from test_rebuild_playbook import PLAYBOOK, tree

TASK = "Restore the checkpoint, fetching it from the repository"


def forge_root(repo: Path, host: str, checkpoint_id: str, path: str) -> None:
    """Give the host's manifest in the repository one more root, at ``path``, with the first root's tree (as a
    compromised repository host can: a plain store's manifest is not authenticated)."""
    manifest_path = repo / "hosts" / host / "checkpoints" / (checkpoint_id + ".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["roots"].append(dict(manifest["roots"][0], path=path))
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("forged,refusal", [
    ("/etc/app", "would restore /etc/app, outside the paths this restore may write (/srv/app)"),
    ("/srv/app/../../etc/app", "which has a '.' or '..' part"),
], ids=["outside", "dot-dot"])
def test_a_forged_manifest_cannot_make_a_rebuild_write_outside_the_managed_paths(
        clean_fleet: Fleet, repository_host, repo_path, run_playbook, forged, refusal):
    host = clean_fleet["h1"]
    host.write_text("/srv/app/conf/app.conf", "listen 8080\n")
    taken = host.module("gitops.rollback.checkpoint", {"paths": ["/srv/app"], "label": "v1"}).events[-1]["result"]
    options = repository_host.options(repo_path, name="h1")
    sent = host.module("gitops.rollback.checkpoint_sync", {"repository": options}).events[-1]["result"]
    assert sent.get("checkpoints") == [taken["checkpoint"]["id"]], sent
    forge_root(repository_host.local(repo_path), "h1", taken["checkpoint"]["id"], forged)

    host.wipe()  # the store is gone; the managed files changed since, and /etc/app holds what it holds
    host.write_text("/srv/app/conf/app.conf", "listen 9090\n")
    host.write_text("/etc/app/keep.conf", "not managed by this checkpoint\n")
    managed, outside = tree(host.local("/srv/app")), tree(host.local("/etc/app"))

    result = run_playbook(PLAYBOOK, extra_vars={"checkpoint_label": "v1", "gitops_rollback_hosts": "h1",
                                                "gitops_rollback_repository": options,
                                                "gitops_rollback_paths": ["/srv/app"]})
    assert not result.ok
    refused = result.results(TASK, "h1", status="failed")
    assert refused and refusal in refused[-1]["result"]["msg"], result
    assert "Nothing was fetched or changed" in refused[-1]["result"]["msg"]
    assert tree(host.local("/etc/app")) == outside  # nothing written or removed outside the managed paths
    assert tree(host.local("/srv/app")) == managed  # and the managed files untouched
    assert not list(host.store.glob("**/checkpoints/*.json")), "no manifest fetched into the store"

    # the same rebuild allowed to write /etc/app too (the checkpoint really manages it): restored
    if forged == "/etc/app":
        allowed = run_playbook(PLAYBOOK, extra_vars={"checkpoint_label": "v1", "gitops_rollback_hosts": "h1",
                                                     "gitops_rollback_repository": options,
                                                     "gitops_rollback_paths": ["/srv/app", "/etc/app"]})
        assert allowed.ok, allowed
        assert host.read_text("/etc/app/conf/app.conf") == "listen 8080\n"
        assert not os.path.exists(host.local("/etc/app/keep.conf"))
