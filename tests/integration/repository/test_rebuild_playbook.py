"""A host whose store and managed directory are gone is rebuilt from the repository by playbooks/rebuild.yml; a
forged manifest in the repository cannot choose where a rebuild writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness import Fleet

PLAYBOOK = Path(__file__).resolve().parents[3] / "playbooks" / "rebuild.yml"
TASK = "Restore the checkpoint, fetching it from the repository"


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


def forge_root(repo: Path, host: str, checkpoint_id: str, path: str) -> None:
    """Give the host's manifest in the repository one more root, at ``path``, with the first root's tree (as a
    compromised repository host can: a plain store's manifest is not authenticated)."""
    manifest_path = repo / "hosts" / host / "checkpoints" / (checkpoint_id + ".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["roots"].append(dict(manifest["roots"][0], path=path))
    manifest_path.write_text(json.dumps(manifest))


FORGED = {"h1": ("/etc/app", "would restore /etc/app, outside the paths this restore may write (/srv/app)"),
          "h2": ("/srv/app/../../etc/app", "which has a '.' or '..' part")}
"""The hosts whose manifest in the repository a compromised repository host forged: the root it added, the refusal."""


def test_a_wiped_host_is_rebuilt_byte_identical_and_a_forged_manifest_cannot_make_a_rebuild_write_outside(
        clean_fleet: Fleet, repository_host, repo_path, run_playbook):
    """One rebuild.yml run over three wiped hosts: h3 is rebuilt from the repository byte-identical; the manifests
    of h1 (a root outside the managed paths) and h2 (a root with a '..' part) were forged in the repository, and
    their rebuilds are refused before anything is fetched or written. Then h1's rebuild allowed to write /etc/app
    too (the checkpoint really manages it) restores it."""
    rebuilt_host = clean_fleet["h3"]
    rebuilt_host.write_text("/srv/app/conf/app.conf", "listen 8080\n")
    rebuilt_host.local("/srv/app/bin").mkdir(parents=True)
    rebuilt_host.local("/srv/app/bin/app").write_bytes(os.urandom(700_000))
    rebuilt_host.local("/srv/app/bin/app").chmod(0o750)
    os.symlink("conf/app.conf", rebuilt_host.local("/srv/app/current"))
    for name in FORGED:
        clean_fleet[name].write_text("/srv/app/conf/app.conf", "listen 8080\n")
    taken = {}
    for host in clean_fleet:
        taken[host.name] = host.module("gitops.rollback.checkpoint",
                                       {"paths": ["/srv/app"], "label": "v1"}).events[-1]["result"]
        assert taken[host.name].get("checkpoint", {}).get("label") == "v1", taken
    options = repository_host.options(repo_path)
    del options["name"]  # each host's own name, as the rebuild's inventory name

    planned = rebuilt_host.module("gitops.rollback.checkpoint_sync", {"repository": options},
                                  check=True).events[-1]["result"]
    assert planned["changed"] and planned["objects"]["sent"] == 3, planned  # the tree and the two files
    assert not repository_host.local(repo_path).exists()
    sent = {}
    for host in [rebuilt_host, *(clean_fleet[name] for name in FORGED)]:  # h3 first: it sends what it shares with them
        sent[host.name] = host.module("gitops.rollback.checkpoint_sync", {"repository": options}).events[-1]["result"]
        assert sent[host.name]["host"] == host.name, sent[host.name]
        assert sent[host.name].get("checkpoints") == [taken[host.name]["checkpoint"]["id"]], sent[host.name]
    assert sent["h3"]["objects"]["sent"] == planned["objects"]["sent"], sent
    assert options["private_key"] not in str(sent)
    for name, (forged, _refusal) in FORGED.items():
        forge_root(repository_host.local(repo_path), name, taken[name]["checkpoint"]["id"], forged)

    expected = tree(rebuilt_host.local("/srv/app"))
    clean_fleet.wipe()  # the stores and the managed directories are gone
    assert tree(rebuilt_host.local("/srv/app")) == {} and not os.listdir(rebuilt_host.store)
    untouched = {}
    for name in FORGED:  # the managed files changed since, and /etc/app holds what it holds
        clean_fleet[name].write_text("/srv/app/conf/app.conf", "listen 9090\n")
        clean_fleet[name].write_text("/etc/app/keep.conf", "not managed by this checkpoint\n")
        untouched[name] = (tree(clean_fleet[name].local("/srv/app")), tree(clean_fleet[name].local("/etc/app")))

    result = run_playbook(PLAYBOOK, extra_vars={"checkpoint_label": "v1", "gitops_rollback_hosts": "h1:h2:h3",
                                                "gitops_rollback_repository": options,
                                                "gitops_rollback_paths": ["/srv/app"]})

    assert not result.ok and result.stats["h3"]["failures"] == 0, result
    rebuilt = result.result(TASK, "h3")
    assert rebuilt["fetched"]["objects"] == sent["h3"]["objects"]["sent"] and rebuilt["verified"], rebuilt
    recovery = rebuilt["recovery"]
    assert recovery["source"] == "repository" and recovery["newest_replicated"]["id"] == taken["h3"]["checkpoint"]["id"]
    assert 0 <= recovery["rpo_seconds"] < 600 and 0 < recovery["rto_seconds"] < 600, recovery
    assert tree(rebuilt_host.local("/srv/app")) == expected
    assert options["private_key"].split("\n")[1] not in result.stdout
    for name, (_forged, refusal) in FORGED.items():
        host = clean_fleet[name]
        refused = result.results(TASK, name, status="failed")
        assert refused and refusal in refused[-1]["result"]["msg"], (name, result)
        assert "Nothing was fetched or changed" in refused[-1]["result"]["msg"]
        managed, outside = untouched[name]
        assert tree(host.local("/etc/app")) == outside, name  # nothing written or removed outside the managed paths
        assert tree(host.local("/srv/app")) == managed, name  # and the managed files untouched
        assert not list(host.store.glob("**/checkpoints/*.json")), "no manifest fetched into the store"

    # h1's rebuild allowed to write /etc/app too (the checkpoint really manages it): restored
    allowed = run_playbook(PLAYBOOK, extra_vars={"checkpoint_label": "v1", "gitops_rollback_hosts": "h1",
                                                 "gitops_rollback_repository": options,
                                                 "gitops_rollback_paths": ["/srv/app", "/etc/app"]})
    assert allowed.ok, allowed
    h1 = clean_fleet["h1"]
    assert h1.read_text("/etc/app/conf/app.conf") == "listen 8080\n"
    assert not os.path.exists(h1.local("/etc/app/keep.conf"))
