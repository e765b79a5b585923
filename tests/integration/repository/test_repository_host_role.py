"""playbooks/repository_host.yml sets up the repository host: each managed host's key is bound to its namespace."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

PLAYBOOK = Path(__file__).resolve().parents[3] / "playbooks" / "repository_host.yml"
MODULE = "gitops.rollback.repository_logins"


def keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair at ``path``; returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return Path(str(path) + ".pub").read_text().strip()


def inventory(tmp_path: Path, repository_host, repo_path: str, keys: dict) -> Path:
    """The repository host in the group ``repository``; web1 and web2 (never connected to) with their public keys,
    web2 under the namespace shop-web2; web3 without a key (left unbound)."""
    hosts = {"web1": {"gitops_rollback_repository_public_key": keys["web1"]},
             "web2": {"gitops_rollback_repository_public_key": keys["web2"],
                      "gitops_rollback_repository": {"name": "shop-web2", "user": "root", "path": repo_path}},
             "web3": {}}
    data = {"all": {
        "vars": {"gitops_rollback_repository": {"user": "root", "path": repo_path}},
        "children": {"repository": {"hosts": {"repohost": repository_host.fleet.host_vars(repository_host.host)}},
                     "app": {"hosts": hosts}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(json.dumps(data))
    return path


def take(eng, store, root: Path) -> dict:
    request = eng.checkpoint.CheckpointRequest(roots=[eng.checkpoint.RootSpec(str(root), [], [])], label="v1")
    with store.lock("test", "checkpoint"):
        return eng.checkpoint.create_checkpoint(store, request)[0]


def test_the_playbook_binds_each_managed_host_to_its_namespace_and_a_second_run_changes_nothing(
        repository_host, repo_path, run_playbook, eng, tmp_path):
    keys = {name: keygen(tmp_path / name, "root@" + name) for name in ("web1", "web2", "spare")}
    authorized_keys = repository_host.fleet.authorized_keys  # the file the repository host's sshd reads
    original = authorized_keys.read_text()  # the harness's own key: Ansible logs in with it
    receiver = "%s-receiver/receiver.py" % repo_path
    extra = {"repository_host_receiver_path": receiver, "repository_host_authorized_keys_file": str(authorized_keys),
             "repository_host_logins": [{"namespace": "spare", "public_key": keys["spare"]}]}  # a login given as a list
    book = inventory(tmp_path, repository_host, repo_path, keys)
    try:
        applied = run_playbook(PLAYBOOK, inventory=book, extra_vars=extra, diff=True)
        assert applied.ok, applied
        result = [event["result"] for event in applied.results(host="repohost") if event["action"] == MODULE][0]
        assert result["changed"] and result["authorized_keys"]["added"] == ["shop-web2", "spare", "web1"], result
        assert "--namespace shop-web2" in result["diff"][1]["after"] and not result["diff"][1]["before"]
        text = authorized_keys.read_text()
        assert text.startswith(original)  # the other key is kept, byte for byte
        assert ('restrict,command="python3 -I -S %s --namespace web1" %s gitops-rollback:web1'
                % (receiver, " ".join(keys["web1"].split()[:2]))) in text.splitlines()
        assert "web3" not in text
        installed = repository_host.local(receiver)
        assert installed.stat().st_mode & 0o777 == 0o644 and installed.stat().st_uid == 0
        assert repository_host.local(repo_path).stat().st_mode & 0o777 == 0o700

        # The bound login syncs into its own namespace, and a hello for another namespace is refused.
        root = tmp_path / "app"
        (root / "conf").mkdir(parents=True)
        (root / "conf" / "app.conf").write_text("listen 8080\n")
        store = eng.store.Store(str(tmp_path / "store"), None)
        taken = take(eng, store, root)
        web1_key = (tmp_path / "web1").read_text()
        own = eng.client.RepositorySpec.from_options(repository_host.options(repo_path, "web1", private_key=web1_key))
        sent = eng.sync.sync_store(store, own)
        assert sent["checkpoints"] == [taken["id"]], sent
        assert (repository_host.local(repo_path) / "hosts" / "web1" / "checkpoints" / (taken["id"] + ".json")).is_file()
        other = eng.client.RepositorySpec.from_options(repository_host.options(repo_path, "shop-web2", private_key=web1_key))
        with pytest.raises(eng.client.RepositoryError, match="bound to host namespace web1, not shop-web2"):
            eng.sync.sync_store(store, other)
        assert not (repository_host.local(repo_path) / "hosts" / "shop-web2").exists()

        # Again, in check and diff mode: nothing would change and nothing is touched.
        before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (authorized_keys, installed)}
        again = run_playbook(PLAYBOOK, inventory=book, extra_vars=extra, check=True, diff=True)
        assert again.ok, again
        assert again.stats["repohost"]["changed"] == 0, again.stats
        bound = [event["result"] for event in again.results(host="repohost") if event["action"] == MODULE]
        assert bound and not bound[0]["changed"] and bound[0]["diff"][1]["before"] == bound[0]["diff"][1]["after"]
        assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in before} == before
    finally:
        authorized_keys.write_text(original)
