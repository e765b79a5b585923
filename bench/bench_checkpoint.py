# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checkpoint and restore of a host tree through the real modules, against tar and rsync.

The modules run the way Ansible runs them on a host: a fresh Python process executing
``plugins/modules/<name>.py args.json`` with the collection importable. Every timed run starts
with the page cache warm and no dirty pages left over (``sync`` before, untimed); each figure is
the median of three runs, after one untimed warm-up run of each side.

Figures:
- cold checkpoint (empty store) vs ``tar -cf``, and vs ``tar -cf`` + ``sync`` (the store makes
  its objects durable before it writes a manifest; tar does not);
- incremental checkpoint after 1 % of the files changed vs ``rsync -a --link-dest``;
- restore after 1 % of the files changed, and a full restore into an emptied tree (seconds);
- peak memory (ru_maxrss of the module process) of a checkpoint and of a full restore as the
  tree grows (and of the full restore by the checkout in ``GITOPS_ROLLBACK_BENCH_BEFORE``);
- with ``restic`` installed (Debian package ``restic``): cold ``restic backup`` into a new
  repository, incremental ``restic backup`` after 1 % changed, and ``restic restore latest``
  after 1 % changed, each beside the module's figure (the module should be at least 3x faster);
- with ``GITOPS_ROLLBACK_BENCH_BEFORE=<another checkout of the collection>``: the cold,
  incremental and restore figures of that checkout too, measured in the same rounds on the
  same tree (ours vs before; a change should stay within 10 %), and the CPU time (user and
  system, workers included) of the cold and incremental module runs, steadier than wall time
  on a loaded machine; the incremental figure's CPU time beside restic's (all its threads) too.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Tuple

REPO = Path(__file__).resolve().parent.parent
BEFORE = os.environ.get("GITOPS_ROLLBACK_BENCH_BEFORE")
RESTIC_PASSWORD = "bench-only-password"
ROUNDS = 3
CHANGED_FRACTION = 0.01


# --------------------------------------------------------------------------- the test tree
class TreeShape(NamedTuple):
    """How big a generated tree is."""

    files: int
    total_bytes: int
    symlinks: int
    empty_dirs: int
    max_file: int = 16 * 1024 * 1024


def _sizes(rng: random.Random, shape: TreeShape) -> List[int]:
    """Draw file sizes from a log-normal distribution (many small files, a few large ones)
    and scale them to the wanted total."""
    raw = [min(rng.lognormvariate(8.5, 1.8), shape.max_file) for _file in range(shape.files)]
    scale = shape.total_bytes / sum(raw)
    return [max(0, min(int(size * scale), shape.max_file)) for size in raw]


def _directories(rng: random.Random, count: int) -> List[str]:
    """Return relative directory paths one to four levels deep."""
    dirs: List[str] = []
    for top in range(max(2, count // 25)):
        dirs.append("app%02d" % top)
    while len(dirs) < count:
        parent = rng.choice(dirs)
        if parent.count("/") < 3:
            dirs.append("%s/d%03d" % (parent, len(dirs)))
    return dirs


def make_tree(root: Path, shape: TreeShape, seed: int = 1) -> List[Path]:
    """Create the tree (random content from os.urandom); return its regular files."""
    rng = random.Random(seed)
    dirs = _directories(rng, max(4, shape.files // 30))
    for rel in dirs:
        (root / rel).mkdir(parents=True, exist_ok=True)
    files: List[Path] = []
    for index, size in enumerate(_sizes(rng, shape)):
        path = root / rng.choice(dirs) / ("f%05d%s" % (index, rng.choice([".conf", ".py", ".bin", ".html", ""])))
        path.write_bytes(os.urandom(size))
        files.append(path)
    for index in range(shape.symlinks):
        link = root / rng.choice(dirs) / ("link%03d" % index)
        target = rng.choice(files)
        os.symlink(os.path.relpath(target, link.parent), link)
    for index in range(shape.empty_dirs):
        (root / rng.choice(dirs) / ("empty%03d" % index)).mkdir()
    return files


def change_files(files: List[Path], rng: random.Random, fraction: float = CHANGED_FRACTION) -> None:
    """Rewrite a fraction of the files with new random content of about the same size."""
    for path in rng.sample(files, max(1, int(len(files) * fraction))):
        size = path.stat().st_size
        path.write_bytes(os.urandom(max(1, size + rng.randint(-64, 64))))


def empty_dir(root: Path) -> None:
    """Remove everything inside ``root``."""
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def fingerprint(root: Path) -> Dict[str, Tuple]:
    """Return what must be equal after a restore: type, mode, size, content hash, link target."""
    import hashlib

    seen: Dict[str, Tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                seen[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                seen[rel] = ("dir", st.st_mode, st.st_mtime_ns)
            else:
                with open(full, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                seen[rel] = ("file", st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return seen


# ------------------------------------------------------------------------------ running
class Outcome(NamedTuple):
    """A finished child process."""

    seconds: float
    max_rss_mb: float
    stdout: str
    cpu_s: float = 0.0  # user + system CPU of the process and of the workers it waited for


# Starts a command from a small process and prints its exit code and ru_maxrss (KiB). On Linux a
# child's ru_maxrss also counts the resident set of the process it was started from (the child
# shares that memory until it execs): started from the benchmark runner, which grows to tens of
# MB, every module would show at least the runner's size.
SMALL_PARENT = """
import os, subprocess, sys
with open(sys.argv[1], "wb") as out:
    proc = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
    _pid, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
"""


def run_child_measured(argv: List[str], env: dict, small_parent: bool = False) -> Outcome:
    """Run a process with wait4 to read its own ru_maxrss (KiB on Linux); with ``small_parent``,
    start it from a small process so the figure is the process's own (wall time includes that start)."""
    out_path = Path(env["GR_BENCH_OUT"])
    started = time.perf_counter()
    if small_parent:
        done = subprocess.run([sys.executable, "-c", SMALL_PARENT, str(out_path), *argv], env=env, check=True,
                              stdout=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - started
        words = done.stdout.split()
        returncode, max_rss_kib, cpu_s = int(words[0]), int(words[1]), float(words[2])
    else:
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            _pid, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - started
        returncode, max_rss_kib = os.waitstatus_to_exitcode(status), usage.ru_maxrss
        cpu_s = usage.ru_utime + usage.ru_stime
    text = out_path.read_text(errors="replace")
    if returncode != 0:
        raise RuntimeError("%s failed (rc %s): %s" % (argv, returncode, text[-3000:]))
    return Outcome(seconds, max_rss_kib / 1024.0, text, cpu_s)


class Modules:
    """Runs the collection's modules as Ansible would on a host."""

    def __init__(self, workdir: Path, store: Path, repo: Path = REPO) -> None:
        self.workdir = workdir
        self.store = store
        self.repo = repo
        side = "collections" if repo == REPO else "collections-before"
        collections = workdir / side / "ansible_collections" / "gitops"
        collections.mkdir(parents=True, exist_ok=True)
        link = collections / "rollback"
        if not link.exists():
            link.symlink_to(repo)
        # PYTHONDONTWRITEBYTECODE: the collection's code is compiled at every run, as from Ansible's zip
        # (a run that cached it in __pycache__ would start faster than any run on a host).
        self.env = dict(os.environ, PYTHONPATH=str(workdir / side), LC_ALL="C.UTF-8", PYTHONDONTWRITEBYTECODE="1",
                        GR_BENCH_OUT=str(workdir / "module-output.json"))
        self.calls = 0
        self.small_parent = False  # True for memory figures (see SMALL_PARENT)
        self.last_cpu_s = 0.0  # CPU of the last module run, workers included: steadier than wall time under load

    def run(self, module: str, **args: object) -> Tuple[Outcome, dict]:
        """Run one module with ``args``; return the outcome and the module's result."""
        self.calls += 1
        args_file = self.workdir / ("args-%d.json" % self.calls)
        args = dict(args, store_path=str(self.store))
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        argv = [sys.executable, str(self.repo / "plugins" / "modules" / ("%s.py" % module)), str(args_file)]
        outcome = run_child_measured(argv, self.env, self.small_parent)
        self.last_cpu_s = outcome.cpu_s
        args_file.unlink()
        result = json.loads(outcome.stdout[outcome.stdout.index("{"):])
        if result.get("failed"):
            raise RuntimeError("%s failed: %s" % (module, result.get("msg")))
        return outcome, result

    def checkpoint(self, tree: Path, label: str) -> Outcome:
        """Checkpoint ``tree``."""
        return self.run("checkpoint", paths=[str(tree)], label=label, force=True)[0]

    def restore(self, label: str) -> Outcome:
        """Restore the checkpoint ``label``."""
        outcome, result = self.run("restore", checkpoint=label)
        if not result.get("verified"):
            raise RuntimeError("restore of %s did not verify: %s" % (label, result))
        return outcome


def settle() -> None:
    """Write back dirty pages so the next timed run does not pay for the previous one."""
    os.sync()


def timed(action: Callable[[], object]) -> float:
    """Return the wall time of ``action`` after settling the page cache."""
    settle()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median(values: List[float]) -> float:
    """Median of a list of seconds."""
    return statistics.median(values)


class Restic:
    """restic on a repository of its own (Debian package ``restic``)."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.env = dict(os.environ, RESTIC_PASSWORD=RESTIC_PASSWORD, RESTIC_REPOSITORY=str(repo),
                        RESTIC_CACHE_DIR=str(repo) + "-cache")
        self.options: List[str] = []  # e.g. -o sftp.command=... for a repository on another host
        self.last_cpu_s = 0.0  # user + system CPU of the last command (all of restic's threads)

    def _run(self, *args: str) -> None:
        proc = subprocess.Popen(["restic", "--quiet", *self.options, *args], env=self.env, stdout=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), ["restic", *args])
        self.last_cpu_s = usage.ru_utime + usage.ru_stime

    def init(self) -> None:
        """Start over with an empty repository."""
        shutil.rmtree(self.repo, ignore_errors=True)
        shutil.rmtree(str(self.repo) + "-cache", ignore_errors=True)
        self._run("init")

    def backup(self, tree: Path) -> None:
        """Back ``tree`` up (incremental when the repository has a snapshot of it)."""
        self._run("backup", str(tree))

    def restore(self) -> None:
        """Restore the latest snapshot to where it was taken."""
        self._run("restore", "latest", "--target", "/")


def remove_symlinks(tree: Path) -> None:
    """Remove the tree's symlinks (restic 0.14 cannot restore a symlink over an existing one)."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            if os.path.islink(os.path.join(dirpath, name)):
                os.unlink(os.path.join(dirpath, name))


def have_restic() -> bool:
    """Tell whether restic is installed."""
    return shutil.which("restic") is not None


def side_by_side(name: str, ours: List[float], other: List[float], baseline: str, target: float) -> dict:
    """A figure comparing our median with another side's."""
    return {"name": name, "ours_s": median(ours), "baseline": baseline, "baseline_s": median(other),
            "target": target}


# ---------------------------------------------------------------------------- the figures
def cold_checkpoint(work: Path, tree: Path) -> List[dict]:
    """Cold checkpoint (empty store) vs tar -cf, vs tar -cf + sync, vs restic backup, and vs the
    checkout in GITOPS_ROLLBACK_BENCH_BEFORE."""
    store = work / "store"
    modules = Modules(work, store)
    before = Modules(work, work / "store-before", Path(BEFORE)) if BEFORE else None
    restic = Restic(work / "restic") if have_restic() else None
    archive = work / "out.tar"

    def checkpoint(side: Modules) -> float:
        shutil.rmtree(side.store, ignore_errors=True)
        return timed(lambda: side.checkpoint(tree, "cold"))

    def tar(sync: bool) -> float:
        archive.unlink(missing_ok=True)

        def action() -> None:
            subprocess.run(["tar", "-cf", str(archive), "-C", str(tree), "."], check=True)
            if sync:
                os.sync()
        return timed(action)

    def restic_cold() -> float:
        restic.init()
        return timed(lambda: restic.backup(tree))

    checkpoint(modules), tar(False)  # warm-up, untimed
    if before:
        checkpoint(before)
    ours_s, tar_s, tar_sync_s, before_s, restic_s, ours_cpu, before_cpu = [], [], [], [], [], [], []
    for _round in range(ROUNDS):
        tar_s.append(tar(False))
        ours_s.append(checkpoint(modules))
        ours_cpu.append(modules.last_cpu_s)
        tar_sync_s.append(tar(True))
        if before:
            before_s.append(checkpoint(before))
            before_cpu.append(before.last_cpu_s)
        if restic:
            restic_s.append(restic_cold())
    archive.unlink(missing_ok=True)
    if before:
        shutil.rmtree(before.store)
    figures = [
        {"name": "cold checkpoint vs tar -cf", "ours_s": median(ours_s), "baseline": "tar",
         "baseline_s": median(tar_s), "target": 1.0},
        {"name": "cold checkpoint vs tar -cf + sync", "ours_s": median(ours_s), "baseline": "tar+sync",
         "baseline_s": median(tar_sync_s), "target": 1.0},
    ]
    if restic:
        figures.append(side_by_side("cold checkpoint vs restic backup", ours_s, restic_s, "restic", 1 / 3))
    if before:
        figures.append(side_by_side("cold checkpoint vs before", ours_s, before_s, "before", 1.1))
        figures.append(side_by_side("cold checkpoint CPU vs before", ours_cpu, before_cpu, "before", 1.1))
    return figures


def incremental_checkpoint(work: Path, tree: Path, files: List[Path], rng: random.Random) -> List[dict]:
    """Incremental checkpoint after 1 % changed vs rsync -a --link-dest=<previous>, vs an
    incremental restic backup, and vs the checkout in GITOPS_ROLLBACK_BENCH_BEFORE."""
    modules = Modules(work, work / "store")
    before = Modules(work, work / "store-before", Path(BEFORE)) if BEFORE else None
    restic = Restic(work / "restic") if have_restic() else None
    snapshots = work / "rsync"
    snapshots.mkdir()
    subprocess.run(["rsync", "-a", "%s/" % tree, "%s/" % (snapshots / "0")], check=True)
    if restic:
        restic.init()
        restic.backup(tree)
    if before:
        before.checkpoint(tree, "inc-0")
    ours_s, rsync_s, before_s, restic_s, ours_cpu, before_cpu, restic_cpu = [], [], [], [], [], [], []
    for index in range(1, ROUNDS + 2):  # round 1 is the warm-up
        change_files(files, rng)
        previous, current = snapshots / str(index - 1), snapshots / str(index)
        # The two checkouts take turns at going first after the change, so whatever the order costs
        # (page cache, the other side's writes being flushed) falls on both alike.
        other = timed(lambda: before.checkpoint(tree, "inc-%d" % index)) if before and index % 2 == 0 else 0.0
        ours = timed(lambda: modules.checkpoint(tree, "inc-%d" % index))
        if before and index % 2:
            other = timed(lambda: before.checkpoint(tree, "inc-%d" % index))
        theirs = timed(lambda: subprocess.run(
            ["rsync", "-a", "--link-dest=%s" % previous, "%s/" % tree, "%s/" % current], check=True))
        shutil.rmtree(previous)
        restic_one = timed(lambda: restic.backup(tree)) if restic else 0.0
        if index > 1:
            ours_s.append(ours)
            rsync_s.append(theirs)
            before_s.append(other)
            restic_s.append(restic_one)
            ours_cpu.append(modules.last_cpu_s)
            before_cpu.append(before.last_cpu_s if before else 0.0)
            restic_cpu.append(restic.last_cpu_s if restic else 0.0)
    shutil.rmtree(snapshots)
    figures = [{"name": "incremental checkpoint (1% changed) vs rsync --link-dest", "ours_s": median(ours_s),
                "baseline": "rsync", "baseline_s": median(rsync_s), "target": 0.5}]
    if restic:
        figures.append(side_by_side("incremental checkpoint (1% changed) vs restic backup", ours_s, restic_s,
                                    "restic", 1 / 3))
        figures.append(side_by_side("incremental checkpoint (1% changed) CPU vs restic backup", ours_cpu, restic_cpu,
                                    "restic", None))
    if before:
        figures.append(side_by_side("incremental checkpoint (1% changed) vs before", ours_s, before_s, "before", 1.1))
        figures.append(side_by_side("incremental checkpoint (1% changed) CPU vs before", ours_cpu, before_cpu,
                                    "before", 1.1))
    return figures


def restores(work: Path, tree: Path, files: List[Path], rng: random.Random) -> List[dict]:
    """Restore after 1 % changed (also vs restic restore and vs the checkout in
    GITOPS_ROLLBACK_BENCH_BEFORE), and a full restore into an emptied tree."""
    modules = Modules(work, work / "store")
    modules.checkpoint(tree, "release")
    before = Modules(work, work / "store-before", Path(BEFORE)) if BEFORE else None
    if before:
        before.checkpoint(tree, "release")
    restic = Restic(work / "restic") if have_restic() else None
    if restic:
        restic.init()
        restic.backup(tree)
    expected = fingerprint(tree)
    partial, before_s, restic_s = [], [], []
    for index in range(ROUNDS + 1):
        change_files(files, rng)
        seconds = timed(lambda: modules.restore("release"))
        if before:
            change_files(files, rng)
            other = timed(lambda: before.restore("release"))
        if restic:
            change_files(files, rng)
            remove_symlinks(tree)  # untimed
            restic_one = timed(restic.restore)
            modules.restore("release")  # restic leaves the changed files' times as they were: start clean
        if index:
            partial.append(seconds)
            if before:
                before_s.append(other)
            if restic:
                restic_s.append(restic_one)
    full = []
    for index in range(ROUNDS + 1):
        empty_dir(tree)
        seconds = timed(lambda: modules.restore("release"))
        if index:
            full.append(seconds)
    if fingerprint(tree) != expected:
        raise RuntimeError("the restored tree differs from the checkpointed one")
    figures = [
        {"name": "restore after 1% changed", "value": median(partial), "unit": "s", "target": 1.0},
        {"name": "full restore into an emptied tree", "value": median(full), "unit": "s", "target": None},
    ]
    if restic:
        figures.append(side_by_side("restore after 1% changed vs restic restore", partial, restic_s, "restic", 1 / 3))
    if before:
        figures.append(side_by_side("restore after 1% changed vs before", partial, before_s, "before", 1.1))
    return figures


def memory(work: Path, sizes: List[int]) -> List[dict]:
    """Peak memory of a cold checkpoint and of a full restore at growing tree sizes (2 KiB files)."""
    figures = []
    for count in sizes:
        base = work / ("mem-%d" % count)
        tree = base / "tree"
        tree.mkdir(parents=True)
        make_tree(tree, TreeShape(files=count, total_bytes=count * 2048, symlinks=count // 200,
                                  empty_dirs=count // 500, max_file=256 * 1024), seed=count)
        modules = Modules(base, base / "store")
        modules.small_parent = True
        checkpoint = modules.checkpoint(tree, "mem")
        empty_dir(tree)
        restore = modules.restore("mem")
        figures.append({"name": "checkpoint peak memory, %d files" % count,
                        "value": checkpoint.max_rss_mb, "unit": "MB", "target": 60})
        figures.append({"name": "full restore peak memory, %d files" % count,
                        "value": restore.max_rss_mb, "unit": "MB", "target": 60})
        if BEFORE:  # the same restore of the same store by the other checkout
            empty_dir(tree)
            before_modules = Modules(base, base / "store", Path(BEFORE))
            before_modules.small_parent = True
            before = before_modules.restore("mem")
            figures.append({"name": "full restore peak memory, %d files, before" % count,
                            "value": before.max_rss_mb, "unit": "MB", "target": None})
        shutil.rmtree(base)
    return figures


def run(workdir: Path, quick: bool) -> List[dict]:
    """Build the tree and measure every figure."""
    if shutil.which("rsync") is None or shutil.which("tar") is None:
        raise RuntimeError("The checkpoint benchmark needs tar and rsync: apt-get install -y tar rsync")
    shape = TreeShape(files=1000, total_bytes=20 << 20, symlinks=10, empty_dirs=5) if quick else \
        TreeShape(files=10000, total_bytes=200 << 20, symlinks=100, empty_dirs=40)
    tree = workdir / "tree"
    tree.mkdir()
    files = make_tree(tree, shape)
    rng = random.Random(7)
    figures = cold_checkpoint(workdir, tree)
    figures += incremental_checkpoint(workdir, tree, files, rng)
    figures += restores(workdir, tree, files, rng)
    shutil.rmtree(workdir / "store")
    shutil.rmtree(tree)
    figures += memory(workdir, [250, 1000, 4000] if quick else [2500, 10000, 40000])
    return figures
