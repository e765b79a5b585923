# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback plan of one host: what ``rollback_to`` resolves to, once, and what each layer will do.

Input: the host's layer settings, the checkpoints of its store and of each Terraform store (as
``checkpoint_info`` lists them, oldest first), the target and the requested layers. Output: for
each layer the checkpoint id it rolls back to (every later step uses the id, never the label
again: a label names its newest checkpoint, and a newer one may appear while the rollback runs),
what the layer will do, what the safety checkpoint must cover, and every problem found, all at
once. Pure Python: no Ansible, no I/O.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .selection import component_name, database_name, layer_list, select_components, terraform_name
from ..common.labels import TARGET_GRAMMAR, LabelError, escape, relative_target, show_label, target_problem

#: Every layer, in the default rollback order: feature flags first, they switch back in seconds.
LAYERS = ("flags", "traffic", "release", "config", "database", "infrastructure", "services")
#: The layers whose state a checkpoint holds (and a safety checkpoint captures).
STORED_LAYERS = ("flags", "release", "config", "database", "infrastructure")
#: The layers read from the host's own store (Terraform snapshots live on the controller).
HOST_STORE_LAYERS = ("flags", "release", "config", "database")
SAFETY_PREFIX = "safety/"
TF_COMPONENT = "terraform_state"
DB_COMPONENT = "database"
FLAGS_COMPONENT = "flags"


@dataclass
class HostSettings:
    """What one host has to roll back, as the inventory configures it (no secrets)."""

    paths: List[str] = field(default_factory=list)
    release_root: str = ""
    databases: List[Dict[str, Any]] = field(default_factory=list)
    terraform: List[Dict[str, Any]] = field(default_factory=list)
    services: List[Dict[str, Any]] = field(default_factory=list)
    traffic: bool = False
    store_path: str = ""
    flags: List[Dict[str, Any]] = field(default_factory=list)

    def configured(self) -> List[str]:
        """Return the layers this host has something to roll back in, in the default order."""
        have = {"flags": bool(self.flags), "traffic": self.traffic, "release": bool(self.release_root), "config": bool(self.paths),
                "database": bool(self.databases), "infrastructure": bool(self.terraform),
                "services": bool(self.services)}
        return [layer for layer in LAYERS if have[layer]]


#: Strategies that let each host run ahead on its own: the layers' order across hosts, the safety checkpoint of
#: every host before any layer and the run's controller steps (once per run) would not hold.
HOST_BY_HOST_STRATEGIES = ("free", "host_pinned")


def strategy_problem(strategy: Optional[str]) -> str:
    """Say why a play's strategy cannot run an ordered rollback ('' when it can: linear, debug, another)."""
    name = str(strategy or "linear").rsplit(".", 1)[-1]
    if name not in HOST_BY_HOST_STRATEGIES:
        return ""
    return ("The %s strategy runs each host on its own, so the layers would not go back in order on every host, nor "
            "would every host's safety checkpoint be taken before any layer changes. Run the rollback with the linear "
            "strategy (the default: unset ANSIBLE_STRATEGY and the play's strategy), with forks and rollback_serial "
            "for many hosts. Nothing was changed." % strategy)


def request_problems(target: Optional[str], layers: Any) -> List[str]:
    """Return what is wrong with a rollback request: no target, a target outside its grammar, or layers that do not exist."""
    problems = []
    if not target:
        problems.append("Give the checkpoint id or Git tag to roll back to with -e rollback_to=<tag>.")
    elif target_problem(target):
        problems.append("rollback_to %s is refused: %s. A target is %s." % (escape(target), target_problem(target),
                                                                            TARGET_GRAMMAR))
    unknown = [name for name in layer_list(layers) if name not in LAYERS]
    if unknown:
        problems.append("rollback_layers may only name %s (got %s)."
                        % (", ".join(LAYERS), ", ".join(escape(name) for name in unknown)))
    return problems


def resolve(checkpoints: Sequence[Dict[str, Any]], ref: str) -> Optional[Dict[str, Any]]:
    """Return the checkpoint ``ref`` names (an id, the newest of a label, a unique id prefix, or a relative
    target such as ``previous~2:v*``, see ``common.labels``), or None.

    The same rules as the store's own look-up, applied to a listing (oldest first).
    """
    if not ref:
        return None
    try:
        relative = relative_target(ref)
    except LabelError:
        return None  # outside the grammar: plan_host reports it
    if relative is not None:
        return relative.pick(checkpoints)
    for checkpoint in checkpoints:
        if checkpoint.get("id") == ref:
            return checkpoint
    labelled = [c for c in checkpoints if c.get("label") == ref]
    if labelled:
        return labelled[-1]
    prefixed = [c for c in checkpoints if len(ref) >= 8 and str(c.get("id", "")).startswith(ref)]
    return prefixed[0] if len(prefixed) == 1 else None


def describe(checkpoints: Sequence[Dict[str, Any]], limit: int = 8) -> str:
    """Return the newest checkpoints as ``label (id)`` for a message."""
    shown = ["%s (%s)" % (show_label(c["label"]), c.get("id")) if c.get("label") else str(c.get("id"))
             for c in reversed(list(checkpoints))]
    more = " and %d more" % (len(shown) - limit) if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more if shown else "none"


def has_component(checkpoint: Dict[str, Any], kind: str, name: str) -> bool:
    """Tell whether a listed checkpoint holds a component of this type and name."""
    return any(c.get("type") == kind and c.get("name") == name for c in checkpoint.get("components") or [])


def covering_root(roots: Sequence[str], path: str) -> Optional[str]:
    """Return the root of a checkpoint a path is or lies below (the nearest), or None."""
    path = os.path.normpath(path)
    found = [root for root in roots if path == os.path.normpath(root) or path.startswith(root.rstrip("/") + "/")]
    return max(found, key=len) if os.path.isabs(path) and found else None


def covers(roots: Sequence[str], path: str) -> bool:
    """Tell whether a path is one of a checkpoint's roots or lies below one (restore narrows a root to it)."""
    return covering_root(roots, path) is not None


def terraform_verify_tag(entry: Dict[str, Any], target: str, snapshot: Dict[str, Any]) -> str:
    """Return the Git tag whose configuration must show no drift after the revert ('' - no tag).

    The entry's ``verify_tag`` (empty: the project path as it is), else the label of the snapshot the target
    resolved to - the tag rolled back to, also when the target was relative (``previous``) or a checkpoint id;
    a safety checkpoint (named so, or resolved to) is no tag.
    """
    label = str(snapshot.get("label") or "")
    if target.startswith(SAFETY_PREFIX) or snapshot.get("kind") == "safety" or label.startswith(SAFETY_PREFIX):
        return ""
    return str(entry.get("verify_tag", label) or "")


def database_method(entry: Dict[str, Any], safety_target: bool) -> str:
    """Decide how a database goes back: ``migrate``, ``auto`` (migrate, else the dump) or ``restore``.

    Without migrations there is only the dump. A safety checkpoint is always restored from its
    dump: it was taken to undo a rollback, and migrations only go down.
    """
    if safety_target or not entry.get("migrations_dir"):
        return "restore"
    method = entry.get("method") or "auto"
    return method if method in ("auto", "migrate", "restore") else "auto"


def component_fields(checkpoint: Dict[str, Any], kind: str, name: str) -> Dict[str, Any]:
    """Return the listed component of this type and name (its recorded fields), or {}."""
    return next((c for c in checkpoint.get("components") or [] if c.get("type") == kind and c.get("name") == name),
                {})


def snapshot_text(snapshot: Dict[str, Any]) -> str:
    """Describe a Terraform snapshot's serial, lineage and resources for the plan ('' when not listed)."""
    if snapshot.get("serial") is None:
        return ""
    return " (serial %s, lineage %s, %s resources)" % (snapshot["serial"], snapshot.get("lineage"),
                                                       snapshot.get("resources", "?"))


def database_needs(entry: Dict[str, Any], checkpoint: str) -> str:
    """Say what one database's way back needs."""
    if entry["method"] == "skip":
        return "%s: nothing" % entry["name"]
    dump = "the dump of %s in checkpoint %s" % (entry["name"], checkpoint)
    if entry["method"] == "restore":
        return dump
    down = "the down migrations of %s down to the version checkpoint %s recorded" % (entry["name"], checkpoint)
    return down if entry["method"] == "migrate" or not entry.get("dump") else "%s, else %s" % (down, dump)


class _HostPlan:
    """Builds the plan of one host; problems are collected, never raised."""

    def __init__(self, host: str, target: str, settings: HostSettings, checkpoints: Sequence[Dict[str, Any]],
                 terraform_checkpoints: Dict[str, Sequence[Dict[str, Any]]]) -> None:
        self.host = host
        self.target = target
        self.settings = settings
        self.checkpoints = list(checkpoints)
        self.terraform_checkpoints = terraform_checkpoints
        self.safety_target = target.startswith(SAFETY_PREFIX)
        self.problems: List[Dict[str, str]] = []
        self.notes: List[str] = []
        self.found = resolve(self.checkpoints, target)
        self.relative = relative_target(target) if not target_problem(target) else None

    def problem(self, layer: str, text: str) -> None:
        self.problems.append({"layer": layer, "problem": text})

    def lacks(self, layer: str, text: str) -> None:
        """A checkpoint without this layer: a problem, or for a safety checkpoint a layer its run did not touch."""
        if self.safety_target:
            self.notes.append("%s: skipped, the run that took %s did not touch it (%s)"
                              % (layer, show_label(self.target), text))
        else:
            self.problem(layer, text)

    def where(self) -> str:
        return "in %s on %s" % (self.settings.store_path or "the store", self.host)

    def host_checkpoint(self, layer: str) -> Optional[Dict[str, Any]]:
        """The host's target checkpoint, or None with a problem (a missing safety checkpoint is a note)."""
        if self.found is not None:
            return self.found
        if self.safety_target:
            self.notes.append("%s: %s has no checkpoint %s: the run that made it changed nothing here, so there is "
                              "nothing to undo" % (layer, self.host, show_label(self.target)))
            return None
        if self.relative is not None:
            self.problem(layer, "Rollback target %s names no checkpoint %s: counting back from the newest, it has "
                         "only %s. Name a checkpoint id or label, or count back less." % (
                             self.target, self.where(), describe(self.relative.candidates(self.checkpoints))))
            return None
        self.problem(layer, "Checkpoint %s is not %s (have: %s). Run gitops.rollback.checkpoint_info to list "
                     "checkpoints, or roll back to one of those."
                     % (escape(self.target), self.where(), describe(self.checkpoints)))
        return None

    def terraform_ref(self) -> str:
        """What names the target in a Terraform store: a relative target that resolved on the host is its
        label there (the same release), else the target as given."""
        if self.relative is not None and self.found is not None and self.found.get("label"):
            return str(self.found["label"])
        return self.target

    def flags(self) -> Optional[Dict[str, Any]]:
        """Each flag set back to the values the checkpoint holds, or its ``off`` flags turned off."""
        sets = []
        checkpoint = None
        for entry in self.settings.flags:
            name = component_name("flags", entry)
            read_as_bool = [str(key).lower() for key in entry if str(key).lower() in ("false", "true")]
            if read_as_bool:  # a boolean key, or its JSON form once the entry crossed to a module
                self.problem("flags", "The flag set %s has a key %s: YAML reads an unquoted off (or on, yes, no) "
                             "as a boolean. Quote it: \"off\": [flags]." % (name, ", ".join(read_as_bool)))
                continue
            off = [str(flag) for flag in entry.get("off") or []]
            if off:
                sets.append({"name": name, "method": "off", "names": off,
                             "action": "turn %s off in %s" % (", ".join(off), name)})
                continue
            checkpoint = self.host_checkpoint("flags")
            if checkpoint is None:
                return None
            if not has_component(checkpoint, FLAGS_COMPONENT, name):
                self.lacks("flags", "Checkpoint %s (%s) holds no flags of %s %s. Record them with "
                           "gitops.rollback.feature_flags state=checkpointed when checkpointing (the checkpoint "
                           "playbook does, for gitops_rollback_flags), or give the entry off: [flags] to turn "
                           "flags off instead." % (show_label(self.target), checkpoint["id"], name, self.where()))
                continue
            sets.append({"name": name, "method": "restore",
                         "action": "put the flags of %s back as checkpoint %s holds them" % (name, checkpoint["id"])})
        if len(sets) < len(self.settings.flags):
            return None
        step = {"action": "; ".join(s["action"] for s in sets), "sets": sets,
                "needs": "; ".join("the flags of %s in checkpoint %s" % (s["name"], checkpoint["id"])
                                   if s["method"] == "restore" else "flags %s in %s" % (", ".join(s["names"]), s["name"])
                                   for s in sets)}
        if checkpoint is not None:
            step["checkpoint"] = checkpoint["id"]
        return step

    def release(self) -> Optional[Dict[str, Any]]:
        if not os.path.isabs(self.settings.release_root):
            self.problem("release", "Set gitops_rollback_release_root to the absolute release root on %s (the "
                         "directory holding releases/, shared/ and current), not %s."
                         % (self.host, escape(self.settings.release_root)))
            return None
        checkpoint = self.host_checkpoint("release")
        if checkpoint is None:
            return None
        root = os.path.abspath(self.settings.release_root)
        if not has_component(checkpoint, "release", root):
            self.lacks("release", "Checkpoint %s (%s) records no release of %s %s. Record one with "
                       "gitops.rollback.release state=recorded when checkpointing."
                       % (show_label(self.target), checkpoint["id"], root, self.where()))
            return None
        return {"checkpoint": checkpoint["id"], "action": "switch %s back to the release checkpoint %s recorded"
                % (root, checkpoint["id"]), "root": root,
                "needs": "the release checkpoint %s recorded, complete in %s/releases" % (checkpoint["id"], root)}

    def config(self) -> Optional[Dict[str, Any]]:
        checkpoint = self.host_checkpoint("config")
        if checkpoint is None:
            return None
        roots = checkpoint.get("roots") or []
        missing = [path for path in self.settings.paths if not covers(roots, path)]
        paths = [path for path in self.settings.paths if covers(roots, path)]
        if missing:
            self.lacks("config", "Checkpoint %s (%s) does not manage %s %s, nor a path above (it manages: %s). "
                       "Checkpoint those paths, or leave them out of the managed paths." % (
                           show_label(self.target), checkpoint["id"], ", ".join(missing), self.where(),
                           ", ".join(roots) or "no paths"))
            if not self.safety_target or not paths:
                return None
        below = [path for path in paths if os.path.normpath(path) not in roots]
        return {"checkpoint": checkpoint["id"], "action": "restore %s byte-exact from checkpoint %s%s"
                % (", ".join(paths), checkpoint["id"], ", nothing else of %s" % ", ".join(sorted(
                    {covering_root(roots, path) for path in below})) if below else ""),
                "paths": paths, "roots": sorted({covering_root(roots, path) for path in paths}),
                "needs": "every object of checkpoint %s intact (re-hashed)" % checkpoint["id"]}

    def database(self) -> Optional[Dict[str, Any]]:
        checkpoint = self.host_checkpoint("database")
        if checkpoint is None:
            return None
        entries = []
        for entry in self.settings.databases:
            name = database_name(entry)
            method = database_method(entry, self.safety_target)
            dump = has_component(checkpoint, DB_COMPONENT, name)
            if method == "restore" and not dump:
                if self.safety_target:
                    entries.append({"name": name, "method": "skip", "dump": False,
                                    "action": "leave %s alone (the run did not touch it)" % name})
                self.lacks("database", "Checkpoint %s (%s) holds no backup of %s %s%s. Back it up with "
                           "gitops.rollback.db_backup when checkpointing%s." % (
                               show_label(self.target), checkpoint["id"], name, self.where(),
                               "" if entry.get("migrations_dir") or self.safety_target else
                               " and it has no migrations_dir to revert",
                               "" if self.safety_target else ", or give the entry a migrations_dir"))
                continue
            if method == "restore":
                action = "restore %s from the dump in checkpoint %s" % (name, checkpoint["id"])
            elif method == "migrate":
                action = "revert the migrations of %s to label %s" % (name, show_label(self.target))
            else:
                action = "revert the migrations of %s to label %s%s" % (
                    name, show_label(self.target), ", else restore the dump in checkpoint %s" % checkpoint["id"]
                    if dump else " (no dump to fall back to)")
            entries.append({"name": name, "method": method, "dump": dump, "action": action})
        if len(entries) < len(self.settings.databases) or all(e["method"] == "skip" for e in entries):
            return None
        return {"checkpoint": checkpoint["id"], "action": "; ".join(e["action"] for e in entries),
                "databases": entries, "methods": {e["name"]: e["method"] for e in entries},
                "needs": "; ".join(database_needs(e, checkpoint["id"]) for e in entries)}

    def infrastructure(self) -> Optional[Dict[str, Any]]:
        projects = []
        for entry in self.settings.terraform:
            name = terraform_name(entry)
            store = entry.get("store_path") or self.settings.store_path
            listed = list(self.terraform_checkpoints.get(store) or [])
            checkpoint = resolve(listed, self.terraform_ref())
            if checkpoint is None and self.safety_target:
                self.notes.append("infrastructure: no Terraform snapshot %s of %s: the run that made it did not "
                                  "touch it" % (show_label(self.target), name))
                continue
            if checkpoint is None or not has_component(checkpoint, TF_COMPONENT, name):
                have = [c for c in listed if any(comp.get("type") == TF_COMPONENT and comp.get("name") == name
                                                 for comp in c.get("components") or [])]
                self.problem("infrastructure", "Terraform snapshot %s of %s is not in %s on the controller "
                             "(snapshots of it: %s). Run gitops.rollback.terraform_state operation=list to see them."
                             % (escape(self.target), name, store, describe(have)))
                continue
            snapshot = component_fields(checkpoint, TF_COMPONENT, name)
            projects.append({"name": name, "checkpoint": checkpoint["id"], "project_path": entry.get("project_path"),
                             "store_path": store, "verify_tag": terraform_verify_tag(entry, self.target, checkpoint),
                             "snapshot_serial": snapshot.get("serial"), "lineage": snapshot.get("lineage"),
                             "resources": snapshot.get("resources"),
                             "action": "revert the state of %s to snapshot %s%s, pushed as the next serial" % (
                                 name, checkpoint["id"], snapshot_text(snapshot))})
        if not projects or len(projects) < len(self.settings.terraform):
            return None
        return {"checkpoint": projects[0]["checkpoint"], "action": "; ".join(p["action"] for p in projects),
                "projects": projects,
                "needs": "; ".join("snapshot %s in %s on the controller, the same lineage as the state%s" % (
                    p["checkpoint"], p["store_path"], " and no drift against tag %s" % show_label(p["verify_tag"])
                    if p["verify_tag"] else "") for p in projects)}


def plan_host(host: str, target: str, layers: Any, settings: HostSettings,
              checkpoints: Sequence[Dict[str, Any]],
              terraform_checkpoints: Optional[Dict[str, Sequence[Dict[str, Any]]]] = None,
              run_id: str = "", previews: Optional[Dict[str, Dict[str, Any]]] = None,
              preview_problems: Sequence[Dict[str, str]] = (), components: Any = ()) -> Dict[str, Any]:
    """Return the plan of one host: the layers to run, each with its checkpoint id and action, and the problems.

    ``checkpoints`` lists the host's store, ``terraform_checkpoints`` each Terraform store path's
    checkpoints (controller side); ``previews`` and ``preview_problems`` are what the host's layers
    said they would do (``controller.preview.preview_host``), attached to their steps. Keys of the result:
    ``layers`` (run in this order), ``steps`` (layer -> what it will do, what it needs, the checkpoint
    id it uses and its preview), ``checkpoints`` (layer -> id), ``changes`` (the layers that will
    change something), ``safety`` (the layers the safety checkpoint must capture before any change),
    ``safety_host`` (those of them captured on the host, by one rollback_safety run), ``safety_label``,
    ``problems`` ([{layer, problem}]), ``notes`` (layers skipped, and why), ``selection`` (layer -> the
    positions of the entries it rolls back, in its configured list; ``components`` narrows them, see
    :func:`select_components`) and ``lines`` (the plan in words).
    """
    requested = layer_list(layers)
    selection = select_components(settings, components)
    settings = selection.settings
    builder = _HostPlan(host, target or "", settings, checkpoints, terraform_checkpoints or {})
    for problem in request_problems(target, requested):
        builder.problem("request", problem)
    builder.notes.extend("rollback_components: nothing named %s on this host" % escape(name)
                         for name in selection.unmatched)
    configured = settings.configured()
    steps: Dict[str, Dict[str, Any]] = {}
    order: List[str] = []
    for layer in [name for name in requested if name in configured]:
        if not target or target_problem(target):
            break
        if layer == "traffic":
            step: Optional[Dict[str, Any]] = {"action": "shift traffic away, in stages", "needs": "the upstream file"}
        elif layer == "services":
            step = {"action": "restart or reload the services whose layers changed",
                    "services": [s.get("name") for s in settings.services]}
        else:
            step = getattr(builder, layer)()
        if step is not None:
            steps[layer] = step
            order.append(layer)
    if "config" in steps and len(steps["config"]["paths"]) < len(settings.paths):  # a safety checkpoint holds fewer
        selection.indexes["config"] = [index for index, path in zip(selection.indexes["config"], settings.paths)
                                       if path in steps["config"]["paths"]]
    attach_previews(steps, previews or {})
    problems = builder.problems + [p for p in preview_problems if p.get("layer") in steps]
    changes = changing_layers(order, steps, settings.services)
    if "services" in steps:
        steps["services"]["restart"] = services_to_restart(settings.services, changes)
    plan = {
        "host": host,
        "target": target,
        "checkpoint": (builder.found or {}).get("id"),
        "resolved": resolved_text(target, builder.relative, builder.found),
        "layers": order,
        "steps": steps,
        "checkpoints": {layer: step["checkpoint"] for layer, step in steps.items() if "checkpoint" in step},
        "changes": changes,
        "safety": [layer for layer in order if layer in STORED_LAYERS],
        "safety_host": [layer for layer in order if layer in HOST_STORE_LAYERS],
        "selection": selection.indexes,
        "safety_label": SAFETY_PREFIX + run_id if run_id else "",
        "problems": problems,
        "notes": builder.notes,
    }
    plan["lines"] = plan_lines(plan)
    return plan


def attach_previews(steps: Dict[str, Dict[str, Any]], previews: Dict[str, Dict[str, Any]]) -> None:
    """Put each layer's preview (what it would change) on its step."""
    for layer, preview in previews.items():
        if layer in steps:
            steps[layer]["preview"] = preview
            steps[layer]["changed"] = bool(preview.get("changed"))


def service_layers(service: Dict[str, Any], known: Sequence[str] = LAYERS) -> List[str]:
    """The layers a service depends on: its ``layers`` (one name counts as a list of one), every known
    layer when it names none (the key missing or null); an empty list: none."""
    layers = service.get("layers")
    if layers is None:
        return list(known)
    if isinstance(layers, str):
        return [layers]
    return list(layers)


def services_to_restart(services: Sequence[Dict[str, Any]], changes: Sequence[str]) -> List[str]:
    """Return the services whose layers will change, in their order (the names the services layer restarts)."""
    return [str(s.get("name")) for s in services if set(service_layers(s)) & set(changes)]


def changing_layers(order: Sequence[str], steps: Dict[str, Dict[str, Any]],
                    services: Sequence[Dict[str, Any]]) -> List[str]:
    """Return the layers that will change something, in order.

    A layer without a preview (traffic, and infrastructure: telling needs a state pull) counts as
    changing; services change when a service's layers do.
    """
    changes = [layer for layer in order if layer != "services" and steps[layer].get("changed", True)]
    if "services" in order and services_to_restart(services, changes):
        changes.append("services")
    return changes


def preview_text(layer: str, step: Dict[str, Any]) -> str:
    """Say what a layer's preview found, in words ('' without a preview)."""
    preview = step.get("preview")
    if not preview:
        return ""
    if not preview.get("changed"):
        return "already there, nothing would change"
    if layer == "config":
        paths = ["%s: %s" % (root, ", ".join(shown)) for root, shown in sorted(preview.get("paths", {}).items())]
        counts = ["%s %s" % (count, op) for root in sorted(preview.get("summary", {}))
                  for op, count in sorted(preview["summary"][root].items())]
        return "would change %s (%s)" % ("; ".join(paths), ", ".join(counts))
    if layer == "flags":
        return "would change %s" % "; ".join(
            "%s: %s" % (name, ", ".join("%s %s -> %s" % (flag, json.dumps(change["before"]), json.dumps(change["after"]))
                                        for flag, change in sorted(changes.items())) or "nothing")
            for name, changes in sorted(preview.get("sets", {}).items()))
    if layer == "release":
        return "current would go from %s to %s" % (
            show_label(preview.get("from_label") or "") or preview.get("from") or "none",
            "%s (%s)" % (show_label(preview["label"]), preview.get("current")) if preview.get("label")
            else preview.get("current"))
    texts = []
    for entry in preview.get("databases", []):
        if entry["method"] == "migrate":
            texts.append("%s: version %s -> %s, reverting %s" % (
                entry["name"], entry["version_before"], entry["target_version"],
                ", ".join(entry["reverted"]) or "nothing"))
        else:
            texts.append("%s: restore the dump of checkpoint %s%s" % (
                entry["name"], entry.get("restore_from"),
                " (the revert is refused: %s)" % entry["revert_refused"] if entry.get("revert_refused") else ""))
    return "; ".join(texts)


def resolved_text(target: str, relative: Any, found: Optional[Dict[str, Any]]) -> str:
    """Say what a relative target resolved to on this host ('' for any other target, or when it names none)."""
    if relative is None or found is None:
        return ""
    return "target %s is %s on this host, resolved once: every layer rolls back to that id" % (
        target, "%s (%s)" % (show_label(found["label"]), found["id"]) if found.get("label") else found["id"])


def plan_lines(plan: Dict[str, Any]) -> List[str]:
    """Return the plan of one host in words: what a relative target resolved to; per layer its checkpoint,
    action, needs and preview; the safety checkpoint; every problem."""
    lines = [plan["resolved"]] if plan.get("resolved") else []
    for layer in plan["layers"]:
        step = plan["steps"][layer]
        line = "%s: %s" % (layer, step["action"])
        if step.get("needs"):
            line += "; needs %s" % step["needs"]
        found = preview_text(layer, step)
        if found:
            line += "; %s" % found
        if layer == "services":
            line += "; would restart %s" % (", ".join(step.get("restart") or []) or "none")
        lines.append(line)
    if plan["safety"] and plan["changes"]:
        lines.append("safety checkpoint %s first, of %s" % (plan["safety_label"] or "safety/<run id>",
                                                            ", ".join(plan["safety"])))
    lines.extend(plan["notes"])
    lines.extend("PROBLEM [%s] %s" % (p.get("layer"), p.get("problem")) for p in plan["problems"])
    return lines


def problems_message(problems_by_host: Dict[str, Sequence[Dict[str, str]]]) -> str:
    """Return every host's pre-flight problems as one message, ``[host / layer] problem`` a line."""
    lines = ["[%s / %s] %s" % (host, p.get("layer"), p.get("problem"))
             for host, problems in sorted(problems_by_host.items()) for p in problems]
    return "Pre-flight failed, so nothing was changed on any host. Problems:\n" + "\n".join(lines)


def database_passwords(entries: List[Dict[str, Any]], passwords: Optional[Mapping[str, Any]] = None) -> Dict[str, str]:
    """Return each entry's password by position, as the rollback_database role picks it.

    ``passwords`` (rollback_database_passwords) by the entry's name or database, else its login_password.
    """
    found = {}
    for index, entry in enumerate(entries):
        secret = database_password(entry, passwords)
        if secret:
            found[str(index)] = secret
    return found


def database_password(entry: Mapping[str, Any], passwords: Optional[Mapping[str, Any]] = None) -> str:
    """Return one database entry's password ('' - none): ``passwords`` by its name or database, else its
    login_password."""
    secret = (passwords or {}).get(entry.get("name") or entry.get("database")) or entry.get("login_password")
    return str(secret) if secret else ""


def flags_passwords(entries: List[Dict[str, Any]]) -> Dict[str, str]:
    """Return each flag set's etcd password by position."""
    return {str(index): str(entry["etcd_password"]) for index, entry in enumerate(entries) if entry.get("etcd_password")}


def with_passwords(entries: List[Dict[str, Any]], passwords: Mapping[str, Any],
                   key: str = "login_password") -> List[Dict[str, Any]]:
    """Return the entries, each with its password from ``passwords`` (by position) as ``key`` when it has one."""
    return [dict(entry, **{key: passwords[str(index)]}) if passwords.get(str(index)) else dict(entry)
            for index, entry in enumerate(entries)]
