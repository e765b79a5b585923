"""End-to-end: the checkpoint role's one module run per host verifies what it stored and prunes to
gitops_rollback_keep; a damaged object of the checkpoint it reports fails the run, naming the object."""

from __future__ import annotations

import hashlib
import json
import os

from hosts_support import MANAGED

ROLE = "gitops.rollback.checkpoint"


def _checkpoint_play(label: str, content: str, keep: int = 0) -> dict:
    """h1: app.conf changed to ``content``, then the checkpoint role with ``label`` (and a retention count)."""
    role_vars = {"checkpoint_label": label, "gitops_rollback_paths": MANAGED, "gitops_rollback_keep": keep}
    return {"hosts": "h1", "gather_facts": False, "tasks": [
        {"name": "Change the configuration", "ansible.builtin.copy": {"dest": "/etc/app/app.conf", "content": content}},
        {"name": "Checkpoint", "ansible.builtin.include_role": {"name": ROLE}, "vars": role_vars}]}


def _labels(host) -> list:
    """The labels of a host's checkpoints, oldest first."""
    found = [json.loads(path.read_text()) for path in (host.store / "checkpoints").glob("*.json")]
    return [manifest["label"] for manifest in sorted(found, key=lambda manifest: manifest["id"])]


def test_the_role_prunes_to_keep_and_refuses_a_damaged_checkpoint_naming_the_object(checkpointed_fleet, run_playbook):
    h1, h2 = checkpointed_fleet.hosts[0], checkpointed_fleet.hosts[1]
    big = os.urandom(300_000)  # a loose object (not packed), so one file to damage
    (h1.local("/srv/app") / "big.bin").write_bytes(big)

    kept = run_playbook([_checkpoint_play("build-2", "workers=2\n"), _checkpoint_play("build-3", "workers=3\n"),
                         _checkpoint_play("build-4", "workers=4\n", keep=2)])

    assert kept.ok, kept
    # build-2 pruned on h1 only; the release tag v1 is never pruned
    assert _labels(h1) == ["v1", "build-3", "build-4"] and _labels(h2) == ["v1"]
    objects = sorted(path.name for path in (h1.store / "objects").rglob("*") if path.is_file())
    sha = hashlib.sha256(big).hexdigest()
    damaged = next(path for path in (h1.store / "objects").rglob(sha + "*"))
    damaged.write_bytes(b"rotten" + big[6:])

    again = run_playbook([_checkpoint_play("build-4", "workers=4\n", keep=2)])

    assert not again.ok
    assert sha in again.stdout and "hash mismatch" in again.stdout and "state=absent" in again.stdout, again.stdout
    assert _labels(h1) == ["v1", "build-3", "build-4"]  # nothing stored is lost
    assert sorted(path.name for path in (h1.store / "objects").rglob("*") if path.is_file()) == objects
