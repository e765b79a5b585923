# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Terraform state rollback: snapshot, list, revert forward, verify, apply at a tag.

A snapshot is a checkpoint component::

    {"type": "terraform_state", "name": "<workspace>@<config dir or name>", "blobs": [<sha>],
     "sha256": <sha>, "serial": 7, "lineage": "...", "terraform_version": "1.15.5",
     "resources": 2, "commit": "<config repo commit>", "label": "v1", ...}

A revert never moves a state backwards: it pushes the snapshot's resources as a NEW state
version of the same lineage with serial = current serial + 1, under the backend's state lock,
after saving the current state as a safety snapshot. This runs on the controller.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..common.errors import CheckpointNotFound, IntegrityError, RollbackError
from ..common.fsutil import atomic_write_bytes
from ..common.labels import escape, show_label
from ..store.manifest import Component, Manifest
from ..store.store import Store, check_new_label, utc_now
from .engine import make_engine
from .worktree import config_commit, worktree_at
from .project import TfProject, TfSettings
from .state import (
    content_digest, count_resources, encode_state, parse_state, render_resources, revert_copy,
    state_difference,
)

COMPONENT_TYPE = "terraform_state"
OPERATIONS = ("snapshot", "list", "revert", "preview", "verify", "apply_at")


def terraform_argument_spec() -> dict:
    """Return the argument spec of the terraform doc fragment (a fresh dict)."""
    return dict(
        project_path=dict(type="path"),
        workspace=dict(type="str", default="default"),
        backend_config=dict(type="dict"),
        backend_config_secrets=dict(type="dict", no_log=True),
        backend_config_files=dict(type="list", elements="path"),
        variables=dict(type="dict"),
        variables_files=dict(type="list", elements="path"),
        parallelism=dict(type="int"),
        binary_path=dict(type="path"),
        state_lock_timeout=dict(type="int", default=60),
    )


@dataclass
class TfContext:
    """Everything an operation needs: the store, the engine, the settings and who acts."""

    store: Store
    engine: Any
    settings: TfSettings
    owner: str
    name: str
    store_lock_timeout: float = 0.0
    check_mode: bool = False

    @classmethod
    def build(cls, params: Dict[str, Any], owner: str, check_mode: bool) -> "TfContext":
        """Build the context from module parameters."""
        settings = TfSettings.from_params(params)
        name = "%s@%s" % (settings.workspace, params.get("name") or settings.project_path)
        return cls(Store(params["store_path"], params.get("encryption_key")), make_engine(params.get("binary_path")), settings, owner, name,
                   float(params.get("lock_timeout") or 0), check_mode)

    def project(self, config_dir: Optional[str] = None) -> TfProject:
        """A Terraform runner on the configuration (or on a checkout of it)."""
        return TfProject(self.engine, self.settings, config_dir)

    def store_lock(self, operation: str):
        """The store's writer lock (a context manager)."""
        return self.store.lock(self.owner, "terraform_state %s %s" % (operation, self.name), self.store_lock_timeout)


# ------------------------------------------------------------------ snapshots
def snapshot_entry(manifest: Manifest, component: Component) -> dict:
    """The listing fields of one snapshot."""
    keys = ("name", "sha256", "serial", "lineage", "terraform_version", "resources", "commit", "workspace",
            "backend", "created")
    entry = {key: component.get(key) for key in keys}
    entry.update(checkpoint=manifest.id, label=manifest.label, reason=manifest.fields.get("reason"))
    return entry


def list_snapshots(store: Store, name: Optional[str]) -> List[dict]:
    """Every Terraform snapshot in the store (of ``name`` when given), oldest first."""
    found = []
    for manifest in store.typed_manifests():
        for component in manifest.components_of(COMPONENT_TYPE):
            if name is None or component.name == name:
                found.append(snapshot_entry(manifest, component))
    return found


def find_snapshot(store: Store, ref: str, name: str) -> Tuple[Manifest, Component]:
    """Resolve a checkpoint id or label to (manifest, component of ``name``), or fail listing the choices."""
    try:
        manifest = store.find_manifest(ref)
    except CheckpointNotFound as exc:
        have = list_snapshots(store, name)
        listing = ", ".join(
            "%s (%s, serial %s)" % (show_label(s["label"]) if s["label"] else s["checkpoint"], s["checkpoint"], s["serial"])
            for s in reversed(have)) or "none"
        raise CheckpointNotFound(
            "Terraform snapshot %s is not in %s (snapshots of %s: %s). Run gitops.rollback.terraform_state "
            "with operation=list to see them." % (escape(ref), store.root, name, listing),
            available=have,
        ) from exc
    component = manifest.component(COMPONENT_TYPE, name)
    if component is not None:
        return manifest, component
    others = [str(c.name) for c in manifest.components_of(COMPONENT_TYPE)]
    raise CheckpointNotFound(
        "Checkpoint %s (%s) holds no Terraform state of %s (it has: %s). Give the name or workspace the "
        "snapshot was taken with, or another snapshot (operation=list)."
        % (show_label(manifest.label) if manifest.label else manifest.id, manifest.id, name,
           ", ".join(others) or "none"),
        available=list_snapshots(store, name),
    )


def read_snapshot(store: Store, manifest: Manifest, component: Component) -> dict:
    """Read a snapshot's state after checking its hash; refuse a missing or corrupted blob."""
    sha = (component.blobs or [None])[0]
    where = "Terraform snapshot %s (%s)" % (show_label(manifest.label) if manifest.label else manifest.id, manifest.id)
    try:
        data = store.read_blob(sha)
    except (IntegrityError, OSError) as exc:
        raise IntegrityError(
            "%s cannot be used: %s. Nothing was changed. Revert to another snapshot (operation=list) or take a "
            "new one." % (where, exc), object=sha,
        ) from exc
    state = parse_state(data, where)
    if state is None:
        raise IntegrityError("%s is empty. Nothing was changed." % where)
    return state


def save_snapshot(ctx: TfContext, data: bytes, state: dict, label: Optional[str], reason: str,
                  commit: Optional[str], backend: Optional[str]) -> Tuple[Manifest, Component]:
    """Store state bytes and attach them to the checkpoint labelled ``label`` (new if none); hold the store lock."""
    sha = ctx.store.put_bytes(data)
    manifest = ctx.store.find_optional(label) or ctx.store.new_manifest(
        label=label, reason=reason, creator=ctx.owner, commit=commit, kind="checkpoint")
    component = {
        "type": COMPONENT_TYPE, "name": ctx.name, "blobs": [sha], "sha256": sha,
        "serial": state["serial"], "lineage": state["lineage"], "terraform_version": state.get("terraform_version"),
        "resources": count_resources(state), "commit": commit, "label": label,
        "workspace": ctx.settings.workspace, "project_path": ctx.settings.project_path, "backend": backend,
        "created": utc_now(),
    }
    ctx.store.attach_component(manifest, component)
    return Manifest.from_json(manifest), Component.from_json(component)


def snapshot(ctx: TfContext, label: Optional[str], reason: Optional[str]) -> dict:
    """Pull the current state into the store; unchanged when the labelled checkpoint already holds it."""
    if label is not None and ctx.store.find_optional(label) is None:
        check_new_label(label)  # a new checkpoint gets it: refused before Terraform runs
    with ctx.project() as project:
        project.init()
        data = project.pull()
        state = parse_state(data, "The current state of workspace %r" % ctx.settings.workspace)
        if state is None:
            raise RollbackError("Workspace %r of %s has no state yet, so there is nothing to snapshot. Apply the "
                                "configuration first." % (ctx.settings.workspace, ctx.settings.project_path))
        sha = hashlib.sha256(data).hexdigest()
        existing = ctx.store.find_manifest_optional(label)
        held = existing.component(COMPONENT_TYPE, ctx.name) if existing else None
        if existing and held and held.get("sha256") == sha:
            return {"changed": False, "snapshot": snapshot_entry(existing, held), "commands": project.commands}
        commit = config_commit(ctx.settings.project_path)
        if ctx.check_mode:
            planned = {"checkpoint": existing.id if existing else None, "label": label, "name": ctx.name,
                       "sha256": sha, "serial": state["serial"], "lineage": state["lineage"],
                       "resources": count_resources(state), "commit": commit,
                       "terraform_version": state.get("terraform_version")}
            return {"changed": True, "snapshot": planned, "commands": project.commands}
        with ctx.store_lock("snapshot"):
            manifest, component = save_snapshot(ctx, data, state, label, reason or "terraform state snapshot",
                                                commit, project.backend_type)
        return {"changed": True, "snapshot": snapshot_entry(manifest, component), "commands": project.commands}


# --------------------------------------------------------------------- revert
def _safety_label(ctx: TfContext, action: str) -> str:
    """The label of an automatic safety snapshot: in the label grammar (no ':' from the time)."""
    stamp = utc_now().replace("-", "").replace(":", "")
    return "safety-%s-before-%s-%s" % (ctx.settings.workspace, action, stamp)


def revert(ctx: TfContext, ref: str, force: bool, safety_label: Optional[str], want_diff: bool) -> dict:
    """Push the snapshot's resources as a new state version (same lineage, serial + 1) after a safety snapshot."""
    manifest, component = find_snapshot(ctx.store, ref, ctx.name)
    target = read_snapshot(ctx.store, manifest, component)
    with ExitStack() as stack:
        project = stack.enter_context(ctx.project())
        if not ctx.check_mode:
            stack.enter_context(ctx.store_lock("revert"))
        project.init()
        current_bytes, current, pushed, warnings, result = _against_current(ctx, project, (manifest, component), target,
                                                                            force, want_diff)
        if result["changed"] is False:
            result["commands"] = project.commands
            return result
        if ctx.check_mode:
            result["commands"] = project.commands + [project.engine.describe(
                ["state", "push", "-no-color", *project.lock_args(), *(["-force"] if warnings else []),
                 "<snapshot %s with serial %s>" % (component.fields["sha256"][:12], pushed["serial"])], project.config_dir)]
            return result
        if current is not None:
            label = safety_label or _safety_label(ctx, "revert")
            safety_manifest, safety = save_snapshot(
                ctx, current_bytes, current, label, "safety snapshot before reverting %s to %s" % (ctx.name, ref),
                None, project.backend_type)
            result["safety_snapshot"] = snapshot_entry(safety_manifest, safety)
        state_file = os.path.join(project.scratch, "revert.tfstate")
        atomic_write_bytes(state_file, encode_state(pushed))
        project.push(state_file, force=bool(warnings))
        result["revert"]["to_serial"] = _check_pushed(project, pushed)
        result["commands"] = project.commands
        return result


def _against_current(ctx: TfContext, project, snapshot: tuple, target: dict, force: bool, want_diff: bool) -> tuple:
    """Pull the current state and plan the revert to ``target`` (the ``snapshot``'s manifest and component)
    against it: (state bytes, state, state to push, warnings, result); the result's ``changed`` is False when
    the state already holds the snapshot's resources."""
    current_bytes = project.pull()
    current = parse_state(current_bytes, "The current state of workspace %r" % ctx.settings.workspace)
    pushed, warnings = revert_copy(current, target, force)
    result = _revert_plan(ctx, snapshot[0], snapshot[1], current, target, pushed, warnings, want_diff)
    if current is not None and current["lineage"] == target["lineage"] \
            and content_digest(current) == content_digest(target):
        result.update(changed=False, msg="The state already holds the snapshot's resources; nothing to do.")
        result["revert"]["to_serial"] = current["serial"]
    return current_bytes, current, pushed, warnings, result


def preview(ctx: TfContext, ref: str, label: Optional[str], reason: Optional[str], want_diff: bool) -> dict:
    """What a revert to ``ref`` would do (nothing pushed); then, with ``label`` and outside check mode, the
    current state stored as a snapshot in the checkpoint ``label`` (a rollback's safety checkpoint).

    One state pull serves both. The snapshot is taken only after the preview passed (a revert that
    would be refused stores nothing); ``changed`` says whether the revert would change the state,
    ``safety_snapshot`` what was stored (``changed`` in it: whether the checkpoint gained it).
    """
    manifest, component = find_snapshot(ctx.store, ref, ctx.name)
    target = read_snapshot(ctx.store, manifest, component)
    store_it = bool(label) and not ctx.check_mode
    if store_it and ctx.store.find_optional(label) is None:
        check_new_label(str(label))  # refused before Terraform runs
    with ctx.project() as project:
        project.init()
        current_bytes, current, _pushed, _warnings, result = _against_current(ctx, project, (manifest, component), target,
                                                                              False, want_diff)
        if store_it and current is not None:
            result["safety_snapshot"] = _store_current(ctx, current_bytes, current, str(label),
                                                       reason or "safety snapshot before reverting %s to %s" % (ctx.name, ref),
                                                       project.backend_type)
        result["commands"] = project.commands
        return result


def _store_current(ctx: TfContext, data: bytes, state: dict, label: str, reason: str, backend: Optional[str]) -> dict:
    """Store the pulled state in the checkpoint ``label``; unchanged when it already holds these bytes."""
    existing = ctx.store.find_manifest_optional(label)
    held = existing.component(COMPONENT_TYPE, ctx.name) if existing else None
    if existing and held and held.get("sha256") == hashlib.sha256(data).hexdigest():
        return dict(snapshot_entry(existing, held), changed=False)
    with ctx.store_lock("snapshot"):
        manifest, stored = save_snapshot(ctx, data, state, label, reason, config_commit(ctx.settings.project_path), backend)
    return dict(snapshot_entry(manifest, stored), changed=True)


def _revert_plan(ctx: TfContext, manifest: Manifest, component: Component, current: Optional[dict], target: dict,
                 pushed: dict, warnings: List[str], want_diff: bool) -> dict:
    result: Dict[str, Any] = {
        "changed": True,
        "snapshot": snapshot_entry(manifest, component),
        "revert": {
            "from_serial": current["serial"] if current else None,
            "to_serial": pushed["serial"],
            "snapshot_serial": target["serial"],
            "lineage": pushed["lineage"],
            "previous_lineage": current["lineage"] if current else None,
        },
        "resources": state_difference(current, target),
        "warnings": warnings,
    }
    if want_diff:
        result["diff"] = {
            "before_header": "%s (serial %s)" % (ctx.name, current["serial"] if current else "none"),
            "after_header": "%s (snapshot %s, pushed as serial %s)" % (
                ctx.name, manifest.shown_label, pushed["serial"]),
            "before": render_resources(current, "current state"),
            "after": render_resources(target, "state after revert"),
        }
    return result


def _check_pushed(project: TfProject, pushed: dict) -> int:
    """Pull again, prove the backend holds the snapshot's resources at the pushed serial or above; return it.

    Some backends (the local one) count the push itself as one more write and store serial + 1.
    """
    after = parse_state(project.pull(), "The state after the push")
    if after is None or int(after["serial"]) < int(pushed["serial"]) or content_digest(after) != content_digest(pushed):
        raise IntegrityError(
            "terraform state push reported success but the backend holds serial %s, not the pushed serial %s "
            "with the snapshot's resources. Inspect it with 'terraform state pull'; the previous state is in the "
            "safety snapshot." % (after["serial"] if after else None, pushed["serial"]))
    return int(after["serial"])


# ------------------------------------------------------------ verify, apply_at
def _plan_against(ctx: TfContext, tag: Optional[str], repo: Optional[str], plan_file: Optional[str],
                  stack: ExitStack) -> Tuple[TfProject, TfProject, dict, Optional[str]]:
    """Init the configuration (at ``tag`` in a worktree if given) and plan; return (main, planner, plan, commit)."""
    main = stack.enter_context(ctx.project())
    main.init()
    if not tag:
        plan = main.plan(["-out=%s" % plan_file] if plan_file else [])
        return main, main, plan, config_commit(ctx.settings.project_path)
    config_dir, commit = stack.enter_context(worktree_at(ctx.settings.project_path, repo, tag))
    planner = stack.enter_context(ctx.project(config_dir))
    planner.init()
    extra = ["-state=%s" % main.local_state_path()] if planner.backend_type == "local" and main.local_state_path() else []
    plan = planner.plan(extra + (["-out=%s" % plan_file] if plan_file else []))
    plan["state_args"] = extra
    return main, planner, plan, commit


def verify(ctx: TfContext, tag: Optional[str], repo: Optional[str]) -> dict:
    """Plan with a detailed exit code against the configuration (at ``tag`` if given); report drift."""
    with ExitStack() as stack:
        main, planner, plan, commit = _plan_against(ctx, tag, repo, None, stack)
        plan.pop("state_args", None)
        return {"changed": False, "drift": plan["changes_pending"], "plan": plan, "tag": tag, "commit": commit,
                "commands": main.commands + (planner.commands if planner is not main else [])}


def apply_at(ctx: TfContext, tag: str, repo: Optional[str], safety_label: Optional[str]) -> dict:
    """Apply the configuration as of ``tag`` from a temporary worktree, after a safety snapshot."""
    with ExitStack() as stack:
        if not ctx.check_mode:
            stack.enter_context(ctx.store_lock("apply_at"))
        scratch_plan = os.path.join(stack.enter_context(tempfile.TemporaryDirectory(prefix="gitops-tf-plan-")),
                                    "at-tag.tfplan")
        main, planner, plan, commit = _plan_against(ctx, tag, repo, scratch_plan, stack)
        state_args = plan.pop("state_args", [])
        result: Dict[str, Any] = {"changed": plan["changes_pending"], "plan": plan, "tag": tag, "commit": commit}
        if plan["changes_pending"] and not ctx.check_mode:
            current_bytes = main.pull()
            current = parse_state(current_bytes, "The current state of workspace %r" % ctx.settings.workspace)
            if current is not None:
                label = safety_label or _safety_label(ctx, "apply-%s" % tag)
                manifest, safety = save_snapshot(ctx, current_bytes, current, label,
                                                 "safety snapshot before applying %s at %s" % (ctx.name, tag),
                                                 None, main.backend_type)
                result["safety_snapshot"] = snapshot_entry(manifest, safety)
            result["applied"] = planner.apply_plan(scratch_plan, state_args)
        result["commands"] = main.commands + planner.commands if planner is not main else main.commands
        return result
