"""A host whose store and managed directory are gone is rebuilt from the repository by playbooks/rebuild.yml."""

from __future__ import annotations

import os
from pathlib import Path

from harness import Fleet

PLAYBOOK = Path(__file__).resolve().parents[3] / "playbooks" / "rebuild.yml"


def tree(root: Path) -> dict:
    """Every entry below ``root``: content (files), target (links), and mode."""
    found = {}
    for path in sorted(root.rglob("*")):
        status = path.lstat()
        if path.is_symlink():
            found[str(path.relative_to(root))] = ("link", os.readlink(path), status.st_mode)
        elif path.is_dir():
            found[str(path.relative_to(root))] = ("dir", None, status.st_mode)
        else:
            found[str(path.relative_to(root))] = ("file", path.read_bytes(), status.st_mode)
    return found


def test_a_wiped_host_is_rebuilt_from_the_repository_byte_identical(
        clean_fleet: Fleet, repository_host, repo_path, run_playbook):
    host = clean_fleet["h1"]
    host.write_text("/srv/app/conf/app.conf", "listen 8080\n")
    host.local("/srv/app/bin").mkdir(parents=True)
    host.local("/srv/app/bin/app").write_bytes(os.urandom(700_000))
    host.local("/srv/app/bin/app").chmod(0o750)
    os.symlink("conf/app.conf", host.local("/srv/app/current"))
    taken = host.module("gitops.rollback.checkpoint", {"paths": ["/srv/app"], "label": "v1"}).events[-1]["result"]
    assert taken.get("checkpoint", {}).get("label") == "v1", taken
    options = repository_host.options(repo_path)
    del options["name"]  # the host's own name, as the rebuild's inventory name

    planned = host.module("gitops.rollback.checkpoint_sync", {"repository": options}, check=True).events[-1]["result"]
    assert planned["changed"] and planned["objects"]["sent"] == 3, planned  # the tree and the two files
    assert not repository_host.local(repo_path).exists()
    sent = host.module("gitops.rollback.checkpoint_sync", {"repository": options}).events[-1]["result"]
    assert sent["host"] == "h1" and sent["objects"]["sent"] == planned["objects"]["sent"], sent
    assert options["private_key"] not in str(sent)

    expected = tree(host.local("/srv/app"))
    host.wipe()  # the store and the managed directory are gone
    assert tree(host.local("/srv/app")) == {} and not os.listdir(host.store)

    result = run_playbook(PLAYBOOK, extra_vars={"checkpoint_label": "v1", "gitops_rollback_hosts": "h1",
                                                "gitops_rollback_repository": options,
                                                "gitops_rollback_paths": ["/srv/app"]})
    assert result.ok, result
    rebuilt = result.result("Restore the checkpoint, fetching it from the repository", "h1")
    assert rebuilt["fetched"]["objects"] == sent["objects"]["sent"] and rebuilt["verified"], rebuilt
    recovery = rebuilt["recovery"]
    assert recovery["source"] == "repository" and recovery["newest_replicated"]["id"] == taken["checkpoint"]["id"]
    assert 0 <= recovery["rpo_seconds"] < 600 and 0 < recovery["rto_seconds"] < 600, recovery
    assert tree(host.local("/srv/app")) == expected
    assert options["private_key"].split("\n")[1] not in result.stdout
