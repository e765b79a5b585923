# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Releases: deploying a build and switching ``current``, against what an ansistrano user runs.

* deploy of a 2,000-file / 40 MB build with random content (``state=present``: tree digest, copy,
  shared links, atomic switch, index written with fsync, which on ext4 also flushes the copied
  data) vs ``cp -a`` of the same build, ``sync -f`` (the same durability) and ``ln -sfn`` (the copy
  strategy of ansistrano);
* rollback (``state=rolled_back``: lock, index, atomic rename of a new symlink, marks, fsyncs),
  timed inside one process (the module's own work), with ``ln -sfn`` (a fresh process, which
  unlinks and recreates the link: a window with no ``current``) for reference.

Deploys run in fresh processes (``python -c`` calling the engine as the module does); all in the
same run on the same data; each figure is the median of several runs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENGINE = '''
import sys
from ansible_collections.gitops.rollback.plugins.module_utils.release import operations as r
state, root, arg = sys.argv[1:4]
p = r.ReleaseParams(root=root, owner="bench", shared=["log"], **({"src": arg, "label": sys.argv[4]}
                    if state == "present" else {"to": arg}))
r.apply(state, p)
'''


def _collections(workdir: Path) -> Path:
    top = workdir / "collections"
    link = top / "ansible_collections" / "gitops" / "rollback"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(ROOT)
    return top


def _build(path: Path, files: int, size: int) -> None:
    for index in range(files):
        target = path / ("d%02d" % (index % 50)) / ("f%05d.bin" % index)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(os.urandom(size))


def _timed(argv: list, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env)
    return time.perf_counter() - start


def _switch(root: Path, to: str) -> float:
    """Time one rollback in this process (the module's own work, without interpreter start-up)."""
    collections = str(_collections(root.parent))
    if collections not in sys.path:
        sys.path.insert(0, collections)
    from ansible_collections.gitops.rollback.plugins.module_utils.release import operations as release

    params = release.ReleaseParams(root=str(root), owner="bench", to=to)
    start = time.perf_counter()
    release.apply("rolled_back", params)
    return time.perf_counter() - start


def run(workdir: Path, quick: bool) -> list:
    files, size, rounds = (300, 4096, 3) if quick else (2000, 20 * 1024, 5)
    env = dict(os.environ, PYTHONPATH=str(_collections(workdir)))
    build = workdir / "build"
    _build(build, files, size)
    ours_deploy, base_deploy, ours_switch, base_switch = [], [], [], []
    for attempt in range(rounds):
        root = workdir / ("root%d" % attempt)
        base = workdir / ("base%d" % attempt)
        (base / "releases").mkdir(parents=True)
        for label in ("v1", "v2"):
            ours_deploy.append(_timed([sys.executable, "-c", ENGINE, "present", str(root), str(build), label], env))
            (build / "marker").write_text(label)  # the next label gets other content
            dest = base / "releases" / label
            script = 'cp -a "$1" "$2" && sync -f "$2" && ln -sfn "$2" "$3"'
            base_deploy.append(_timed(["sh", "-c", script, "sh", str(build), str(dest), str(base / "current")], env))
        ours_switch.append(_switch(root, "v1"))
        base_switch.append(_timed(["ln", "-sfn", str(base / "releases" / "v1"), str(base / "current")], env))
        shutil.rmtree(root)
        shutil.rmtree(base)
    return [
        {"name": "deploy %d files / %d MB from a build dir" % (files, files * size >> 20),
         "ours_s": statistics.median(ours_deploy), "baseline": "cp -a + sync -f + ln -sfn",
         "baseline_s": statistics.median(base_deploy), "target": 2.0},
        {"name": "rollback: switch current (lock, index, marks)", "value": statistics.median(ours_switch),
         "unit": "s", "target": 0.1},
        {"name": "ln -sfn (not atomic), for reference", "value": statistics.median(base_switch), "unit": "s",
         "target": None},
    ]
