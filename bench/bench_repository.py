# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Repository figures: sync to a repository host and rebuild from it, against ``rsync -a`` over the same SSH.

The tree of the checkpoint benchmark (10,000 files / 200 MB; ``--quick``: 1,000 / 20 MB) is
checkpointed into a store; a harness SSH host (an sshd in its own mount namespace on this machine)
is the repository host. Measured in one run, page cache warm, ``sync`` (untimed) before each timed
step: the first sync vs ``rsync -a`` of the tree to the same host; after 1 % of the files changed and
a new checkpoint, the sync vs ``rsync -a`` of the same change (and the bytes sent vs the bytes
changed); the fetch of the checkpoint into an empty store (what a rebuild fetches before it restores)
vs ``rsync -a`` pulling the tree from the repository host. One round each: a first sync can be
timed only once per repository.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import List

REPO = Path(__file__).resolve().parent.parent
REPOSITORY_MOUNT = "/srv/gr-repository"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _engine(workdir: Path):
    """The engine and the harness, imported from this checkout."""
    collections = workdir / "collections" / "ansible_collections" / "gitops"
    collections.mkdir(parents=True)
    (collections / "rollback").symlink_to(REPO)
    sys.path.insert(0, str(workdir / "collections"))
    sys.path.insert(0, str(REPO / "tests"))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils import (
        _checkpoint, _repo_client, _repo_fetch, _repo_sync, _store,
    )
    from harness import start_hosts
    return _checkpoint, SimpleNamespace(client=_repo_client, sync=_repo_sync, fetch=_repo_fetch), _store, start_hosts


def run(workdir: Path, quick: bool) -> List[dict]:
    """Measure sync, incremental sync and rebuild fetch against rsync."""
    bench = _load("bench_checkpoint", REPO / "bench" / "bench_checkpoint.py")
    checkpoint, repository, store_module, start_hosts = _engine(workdir)
    shape = bench.TreeShape(files=1000, total_bytes=20 << 20, symlinks=10, empty_dirs=5) if quick else \
        bench.TreeShape(files=10000, total_bytes=200 << 20, symlinks=100, empty_dirs=40)
    tree = workdir / "tree"
    tree.mkdir()
    files = bench.make_tree(tree, shape)
    store = store_module.Store(str(workdir / "store"))

    def take(label: str) -> None:
        request = checkpoint.CheckpointRequest(roots=[checkpoint.RootSpec(str(tree), [], [])], label=label)
        with store.lock("bench", "checkpoint"):
            checkpoint.create_checkpoint(store, request)

    take("v1")
    fleet = start_hosts(1, workdir / "fleet", managed_dirs=(REPOSITORY_MOUNT,))
    try:
        host = fleet.hosts[0]
        public = (host.root / "ssh_host_ed25519_key.pub").read_text().split()
        spec = repository.client.RepositorySpec.from_options({
            "host": host.address, "port": host.port, "user": "root", "path": REPOSITORY_MOUNT + "/repository",
            "name": "bench", "private_key": fleet.client_key.read_text(),
            "known_hosts": "[%s]:%d %s %s" % (host.address, host.port, public[0], public[1])})
        ssh = "ssh -i %s -p %d -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR" % (
            fleet.client_key, host.port)
        remote = "root@%s:%s/rsync/" % (host.address, REPOSITORY_MOUNT)

        def rsync(source: str, target: str) -> None:
            subprocess.run(["rsync", "-a", "-e", ssh, source, target], check=True, capture_output=True)

        figures = []
        ours = bench.timed(lambda: repository.sync.sync_store(store, spec))
        theirs = bench.timed(lambda: rsync(str(tree) + "/", remote))
        figures.append(bench.side_by_side("first sync vs rsync -a (ssh)", [ours], [theirs], "rsync -a", None))

        before = {path: path.stat().st_mtime_ns for path in files}
        bench.change_files(files, random.Random(7))
        changed = sum(path.stat().st_size for path in files if path.stat().st_mtime_ns != before[path])
        take("v2")
        outcome = {}
        ours = bench.timed(lambda: outcome.update(repository.sync.sync_store(store, spec)))
        theirs = bench.timed(lambda: rsync(str(tree) + "/", remote))
        figures.append(bench.side_by_side("sync after 1 % changed vs rsync -a (ssh)", [ours], [theirs], "rsync -a", 1.5))
        figures.append({"name": "bytes sent after 1 % changed / bytes changed",
                        "value": outcome["objects"]["bytes"] / max(1, changed), "unit": "x", "target": 1.1})

        rebuilt = store_module.Store(str(workdir / "rebuilt"))

        def fetch() -> None:
            repository.fetch.prepare_store(rebuilt, spec)
            with rebuilt.lock("bench", "fetch"):
                repository.fetch.fetch_checkpoint(rebuilt, spec, "v2")

        ours = bench.timed(fetch)
        theirs = bench.timed(lambda: rsync(remote, str(workdir / "pulled") + "/"))
        figures.append(bench.side_by_side("rebuild fetch into an empty store vs rsync -a pull", [ours], [theirs],
                                          "rsync -a", 1.5))
    finally:
        fleet.stop()
    shutil.rmtree(workdir / "store")
    return figures
