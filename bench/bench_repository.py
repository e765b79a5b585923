# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Repository figures: sync to a repository host and rebuild from it, against ``rsync -a`` over the same SSH.

The tree of the checkpoint benchmark (10,000 files / 200 MB; ``--quick``: 1,000 / 20 MB) is
checkpointed into a plain store; a harness SSH host (an sshd in its own mount namespace on this
machine) is the repository host. Measured in one run, page cache warm, ``sync`` (untimed) before
each timed step:

- the first sync vs ``rsync -a`` of the tree to the same host;
- after 1 % of the files changed and a new checkpoint, the sync vs ``rsync -a`` of the same change:
  wall time, CPU time (this process and its children, plus the repository host's sshd and every
  session it ran: ssh, the receiver, rsync's server side) and bytes on the connection vs the bytes
  changed; A/B in the same run, the tree sent whole (``TREE_DELTAS`` off) into a copy of the
  repository made before the change;
- the rebuild of the tree into an empty directory and an empty store (``restore_ops.rebuild``, as the
  restore module with ``repository`` runs it: the trees into the store, the contents streamed into
  the files) vs ``rsync -a`` pulling the tree from the repository host, vs the same followed by ``sync``
  (durable, as the rebuild is), and vs ``restic restore`` from a restic repository on the repository
  host (sftp over the same SSH): every side writes into the same emptied directory after the same
  ``sync``, the order rotated each round, the medians of ``GITOPS_ROLLBACK_BENCH_ROUNDS`` rounds (3;
  ``--quick``: 1) and the median of each round's ratio, each side's rounds kept in bench/results.json;
- with ``GITOPS_ROLLBACK_BENCH_BEFORE=<another checkout of the collection>``: the rebuild of this
  checkout vs that one, each in a child process (``bench/repository_rebuild.py``), alternating, best
  of two rounds.

The syncs one round each: a first sync can be timed only once per repository.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import time
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
REPOSITORY_MOUNT = "/srv/gr-repository"
BEFORE = os.environ.get("GITOPS_ROLLBACK_BENCH_BEFORE")
ROUNDS = int(os.environ.get("GITOPS_ROLLBACK_BENCH_ROUNDS", "3"))  # rebuild rounds, each side once a round
ROUNDS_QUICK = 1
# A virtual machine that reports free pages to its hypervisor (virtio-balloon free page reporting) hands memory
# freed more than about 2 s ago back; the page cache a step fills costs 8x the system time (200 MB: 0.4 s instead
# of 0.05 s) when it comes from such memory. Each rebuild side waits this long after the tree was removed.
COLD_PAUSE = 4.0
# ext4 without a journal (as here) skips, in each inode it allocates, the free inodes deleted in the last 60 s (longer
# while their inode table block is dirty), reading the table block of each: 10,000 files created right after 10,000
# were deleted spend about 4 s of system time there, every side alike. A new host has no such inodes: each side's
# tree is moved aside (removed at the end), not deleted.


_STORES = itertools.count()


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _restic_on(host, key: Path, workdir: Path):
    """restic with its repository on the repository host, reached over sftp with the same key."""
    bench = _load("bench_checkpoint", REPO / "bench" / "bench_checkpoint.py")
    restic = bench.Restic(workdir / "restic-unused")
    command = "ssh -i %s -p %d -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR " \
              "root@%s -s sftp" % (key, host.port, host.address)
    restic.env.update(RESTIC_REPOSITORY="sftp:root@%s:%s/restic" % (host.address, REPOSITORY_MOUNT))
    restic.options = ["-o", "sftp.command=%s" % command]
    return restic


def _engine(workdir: Path):
    """The engine and the harness, imported from this checkout."""
    collections = workdir / "collections" / "ansible_collections" / "gitops"
    collections.mkdir(parents=True)
    (collections / "rollback").symlink_to(REPO)
    sys.path.insert(0, str(workdir / "collections"))
    sys.path.insert(0, str(REPO / "tests"))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.gitops.rollback.plugins.module_utils.files import capture, restore_ops as restore
    from ansible_collections.gitops.rollback.plugins.module_utils.replication import client, fetch, sync
    from ansible_collections.gitops.rollback.plugins.module_utils.store import store
    from harness import start_hosts
    return capture, SimpleNamespace(client=client, sync=sync, fetch=fetch), restore, store, start_hosts


def _cpu(remote_pid: int) -> float:
    """CPU seconds so far of this process and its waited-for children, and of the repository host's sshd tree."""
    here = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for field in ("ru_utime", "ru_stime"))
    with open("/proc/%d/stat" % remote_pid, encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return here + sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _measured(bench, remote_pid: int, action: Callable[[], object]) -> Tuple[float, float]:
    """(wall, CPU) seconds of ``action``, after settling the page cache."""
    bench.settle()
    cpu, wall = _cpu(remote_pid), time.perf_counter()
    action()
    return time.perf_counter() - wall, _cpu(remote_pid) - cpu


def _compared(name: str, ours: Tuple[float, float], theirs: Tuple[float, float], baseline: str,
              target) -> List[dict]:
    return [{"name": name, "ours_s": ours[0], "baseline": baseline, "baseline_s": theirs[0], "target": target},
            {"name": name + ", CPU", "ours_s": ours[1], "baseline": baseline, "baseline_s": theirs[1],
             "target": target}]


def _emptied(tree: Path, aside: Path) -> None:
    """Leave ``tree`` an empty directory, as on a new host: what it held is moved under ``aside``, not deleted
    (COLD_PAUSE and the comment above it), after ``sync`` and the pause."""
    aside.mkdir(exist_ok=True)
    os.rename(tree, aside / str(len(os.listdir(aside))))
    tree.mkdir()
    os.sync()
    time.sleep(COLD_PAUSE)


def _rebuild_before_after(bench, remote_pid: int, workdir: Path, tree: Path, fingerprint, options: dict) -> List[dict]:
    """The rebuild of this checkout vs the one in GITOPS_ROLLBACK_BENCH_BEFORE, each in a child process
    (``bench/repository_rebuild.py``), into an empty directory and an empty store, alternating, ROUNDS rounds
    (the first side alternating too), each side's medians and rounds."""
    times = {"after": [], "before": []}
    for round_number in range(ROUNDS):
        sides = (("before", BEFORE), ("after", str(REPO)))
        for side, checkout in sides[round_number % 2:] + sides[:round_number % 2]:
            _emptied(tree, workdir / "aside")
            argv = [sys.executable, str(REPO / "bench" / "repository_rebuild.py"), checkout,
                    str(workdir / ("child-" + side)), str(workdir / ("store-%s-%d" % (side, round_number))), "v2",
                    json.dumps(options), str(tree)]
            times[side].append(_measured(bench, remote_pid, lambda argv=argv: subprocess.run(argv, check=True)))
            assert bench.fingerprint(tree) == fingerprint, "the %s checkout rebuilt another tree" % side
    after = tuple(statistics.median(value[i] for value in times["after"]) for i in (0, 1))
    before = tuple(statistics.median(value[i] for value in times["before"]) for i in (0, 1))
    figures = _compared("rebuild, this checkout vs before (child processes, median of %d)" % ROUNDS, after, before,
                        "before", None)
    for figure in figures:
        figure["rounds"] = times
    return figures


def _rebuild(repository, restore, store_module, workdir: Path, spec) -> None:
    """The rebuild into the emptied tree and a new, empty store, as the restore module with ``repository`` runs it
    (each round's store a new directory: the one before is not removed in the timed step, see COLD_PAUSE)."""
    rebuilt = store_module.Store(str(workdir / ("rebuilt-%d" % next(_STORES))))
    with repository.fetch.Fetcher(rebuilt, spec) as fetcher:
        fetcher.prepare()
        with rebuilt.lock("bench", "rebuild"):
            restore.rebuild(rebuilt, fetcher, "v2",
                            restore.RestoreOptions(safety_checkpoint=False, allowed_roots=[str(workdir / "tree")]))


def _restic_restore(host, key: Path, workdir: Path, tree: Path, bench) -> Optional[Callable[[], None]]:
    """``restic restore`` of the tree from a restic repository on the repository host, backed up now (untimed)."""
    if not bench.have_restic():
        return None
    restic = _restic_on(host, key, workdir)
    restic.init()
    restic.backup(tree)
    return restic.restore


def _rebuild_rounds(bench, remote_pid: int, tree: Path, aside: Path, fingerprint, rounds: int,
                    sides: Dict[str, Optional[Callable[[], None]]]) -> List[dict]:
    """The rebuild vs each peer, every side into the emptied tree after the same ``sync``, the order rotated
    each round; the medians of wall and CPU time, and each side's rounds (``rounds``)."""
    sides = {name: action for name, action in sides.items() if action is not None}
    names = list(sides)
    times: Dict[str, List[Tuple[float, float]]] = {name: [] for name in names}
    for number in range(rounds):
        for name in names[number % len(names):] + names[:number % len(names)]:
            _emptied(tree, aside)
            times[name].append(_measured(bench, remote_pid, sides[name]))
            assert bench.fingerprint(tree) == fingerprint, "%s made another tree" % name
    medians = {name: tuple(statistics.median(value[i] for value in times[name]) for i in (0, 1)) for name in names}
    figures = []
    for peer, target, label in (("rsync -a", 1.5, "rsync -a pull"), ("restic restore", 1.0, "restic restore (sftp)"),
                                ("rsync -a, then sync", None, "rsync -a pull + sync")):
        if peer in medians:
            figures += _compared("rebuild vs %s, median of %d" % (label, rounds), medians["rebuild"], medians[peer],
                                 peer, target)
            paired = statistics.median(ours[0] / theirs[0] for ours, theirs in zip(times["rebuild"], times[peer]))
            figures.append({"name": "the same, median of each round's wall ratio (sides run one after another)",
                            "value": paired, "unit": "x", "target": None})
    for figure in figures:
        figure["rounds"] = {name: times[name] for name in names}
    return figures


def run(workdir: Path, quick: bool) -> List[dict]:
    """Measure sync, incremental sync and rebuild fetch against rsync."""
    bench = _load("bench_checkpoint", REPO / "bench" / "bench_checkpoint.py")
    checkpoint, repository, restore, store_module, start_hosts = _engine(workdir)
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
        options = {
            "host": host.address, "port": host.port, "user": "root", "path": REPOSITORY_MOUNT + "/repository",
            "name": "bench", "private_key": fleet.client_key.read_text(),
            "known_hosts": "[%s]:%d %s %s" % (host.address, host.port, public[0], public[1])}
        spec = repository.client.RepositorySpec.from_options(options)
        ssh = "ssh -i %s -p %d -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR" % (
            fleet.client_key, host.port)
        remote = "root@%s:%s/rsync/" % (host.address, REPOSITORY_MOUNT)

        def rsync(source: str, target: str) -> None:
            subprocess.run(["rsync", "-a", "-e", ssh, source, target], check=True, capture_output=True)

        figures = []
        pid = host.pid
        ours = bench.timed(lambda: repository.sync.sync_store(store, spec))
        theirs = bench.timed(lambda: rsync(str(tree) + "/", remote))
        figures.append(bench.side_by_side("first sync vs rsync -a (ssh)", [ours], [theirs], "rsync -a", None))
        local_repo = host.local(REPOSITORY_MOUNT)  # a copy of the repository as it is now, for the A/B
        subprocess.run(["cp", "-a", str(local_repo / "repository"), str(local_repo / "repository-whole")], check=True)
        whole = repository.client.RepositorySpec.from_options(dict(options, path=REPOSITORY_MOUNT + "/repository-whole"))

        before = {path: path.stat().st_mtime_ns for path in files}
        bench.change_files(files, random.Random(7))
        changed = sum(path.stat().st_size for path in files if path.stat().st_mtime_ns != before[path])
        take("v2")
        outcome, plain = {}, {}
        ours = _measured(bench, pid, lambda: outcome.update(repository.sync.sync_store(store, spec)))
        theirs = _measured(bench, pid, lambda: rsync(str(tree) + "/", remote))
        repository.sync.TREE_DELTAS = False
        try:
            tree_whole = _measured(bench, pid, lambda: plain.update(repository.sync.sync_store(store, whole)))
        finally:
            repository.sync.TREE_DELTAS = True
        figures += _compared("sync after 1 % changed vs rsync -a (ssh)", ours, theirs, "rsync -a", 1.5)
        figures += _compared("sync after 1 % changed, tree delta vs tree whole", ours, tree_whole, "tree whole", None)
        figures.append({"name": "bytes on the connection after 1 % changed / bytes changed",
                        "value": outcome["wire"]["sent"] / max(1, changed), "unit": "x", "target": 1.1})
        figures.append({"name": "the same, tree sent whole (A/B)",
                        "value": plain["wire"]["sent"] / max(1, changed), "unit": "x", "target": None})
        figures.append({"name": "object bytes sent after 1 % changed / bytes changed",
                        "value": outcome["objects"]["bytes"] / max(1, changed), "unit": "x", "target": 1.1})

        fingerprint = bench.fingerprint(tree)
        figures += _rebuild_rounds(bench, pid, tree, workdir / "aside", fingerprint, ROUNDS_QUICK if quick else ROUNDS, {
            "rebuild": lambda: _rebuild(repository, restore, store_module, workdir, spec),
            "rsync -a": lambda: rsync(remote, str(tree) + "/"),
            "rsync -a, then sync": lambda: (rsync(remote, str(tree) + "/"), os.sync()),
            "restic restore": _restic_restore(host, fleet.client_key, workdir, tree, bench)})
        if BEFORE:
            figures += _rebuild_before_after(bench, pid, workdir, tree, fingerprint, options)
    finally:
        fleet.stop()
    shutil.rmtree(workdir / "store")
    shutil.rmtree(workdir / "aside", ignore_errors=True)
    return figures
