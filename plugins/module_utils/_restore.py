# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring managed roots to a checkpoint: plan by merging the live walk with the stored
tree, verify every blob, stage new content beside its destination, then rename into place.

A process killed at any point leaves each file either old or new (renames are atomic);
leftover temporary files are extras that the next run removes while it completes the job.
"""

from __future__ import annotations

import json
import marshal
import os
import re
import secrets
import shutil
from array import array
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from ._checkpoint import CheckpointRequest, RootSpec, TreeRecorder, roots_of, save_checkpoint
from ._errors import IntegrityError, UnsafePathError
from ._fsutil import TEMP_MARK, raise_if_full, unlink_quietly, sync_filesystem
from ._statcache import CacheWriter
from ._store import Store, sha256_file, summarize
from ._tree import (
    DIR, FILE, LINK, Key, TreeValidator, encode_entry, gid_for, kind_of, path_key, uid_for, walk,
)
import stat as _stat

DIFF_LIMIT = 128 * 1024


DECODED_ACTIONS = 2000  # beyond this many actions a plan keeps tree lines, not decoded entries
_DECODE = json.JSONDecoder().decode


_NAME = re.compile(r"[0-9a-f]{64}\Z")
_FIELDS = ("gid", "group", "mode", "mtime_ns", "owner", "sha256", "size", "target", "type", "uid")  # + path
_ENTRY_KEYS = frozenset(_FIELDS + ("path",))


class Action:
    """One change that brings a live entry to its checkpointed state.

    The target entry is kept as its decoded dict, or in a large plan packed (its values without
    the path, marshalled; an entry with other keys as its JSON line) and unpacked when used: a
    restore of 40,000 files stays under 60 MB.
    """

    __slots__ = ("op", "rel", "_entry", "_line", "live_kind", "reasons")

    def __init__(self, op: str, rel: str, entry: Optional[dict], live_kind: Optional[str] = None,
                 reasons: Sequence[str] = (), line: Optional[bytes] = None) -> None:
        self.op = op  # create | update | meta | delete | retype
        self.rel = rel
        self._entry = None if line else entry
        self._line = line
        self.live_kind = live_kind
        self.reasons = tuple(reasons)

    @property
    def entry(self) -> Optional[dict]:
        """The checkpointed entry (None for a delete)."""
        if not self._line:
            return self._entry
        if self._line[:1] == b"{":
            return _DECODE(self._line.decode("utf-8"))
        entry = dict(zip(_FIELDS, marshal.loads(self._line)))
        entry["path"] = self.rel
        return entry

    def compact(self) -> None:
        """Keep the entry packed from now on."""
        entry = self._entry
        if entry is None:
            return
        if entry.keys() == _ENTRY_KEYS and entry["path"] == self.rel:
            self._line = marshal.dumps(tuple(entry[key] for key in _FIELDS))
        else:
            self._line = encode_entry(entry)
        self._entry = None

    def as_dict(self) -> dict:
        """Return the reportable form of the action."""
        return {"op": self.op, "path": self.rel, "reasons": list(self.reasons),
                "type": (self.entry or {}).get("type") or self.live_kind}


@dataclass
class RootPlan:
    """Everything a restore of one root must do, found before anything changes."""

    root: str
    record: dict
    actions: List[Action] = field(default_factory=list)
    dirs: Dict[Key, dict] = field(default_factory=dict)
    diffs: List[dict] = field(default_factory=list)
    safety: Optional[dict] = None  # the live root's record, when the plan also captured it

    def blobs(self) -> Iterator[Tuple[str, str]]:
        """Yield (sha256, path) of every blob the plan writes."""
        for action in self.actions:
            if action.op in ("create", "update", "retype"):
                entry = action.entry
                if entry["type"] == FILE:
                    yield entry["sha256"], action.rel


def _owner_ids(entry: dict) -> Tuple[int, int]:
    return uid_for(entry.get("owner"), entry["uid"]), gid_for(entry.get("group"), entry["gid"])


def _differences(entry: dict, st: os.stat_result, live_sha: Optional[str], live_target: Optional[str]) -> List[str]:
    reasons = []
    if entry["type"] == FILE and live_sha != entry["sha256"]:
        reasons.append("content")
    if entry["type"] == LINK and live_target != entry["target"]:
        reasons.append("target")
    if entry["type"] != LINK and _stat.S_IMODE(st.st_mode) != entry["mode"]:
        reasons.append("mode")
    if (st.st_uid, st.st_gid) != _owner_ids(entry):
        reasons.append("owner")
    if st.st_mtime_ns != entry["mtime_ns"]:
        reasons.append("mtime")
    return reasons


def _text(data: bytes) -> Optional[str]:
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class _Planner:
    """Merges the live walk of a root with its stored tree."""

    def __init__(self, store: Store, record: dict, want_diff: bool, cache_writer: Optional[CacheWriter],
                 capture: bool = False) -> None:
        self.store = store
        self.plan = RootPlan(record["path"], record)
        self.want_diff = want_diff
        self.cache = store.cache_reader(record["path"])
        self.cache_writer = cache_writer
        self.ancestors: List[Tuple[Key, dict]] = []
        self.validator = TreeValidator(record["path"])
        self.recorder = TreeRecorder(store, RootSpec.from_record(record), self.cache) \
            if capture and os.path.isdir(record["path"]) else None
        self.live_sha: Optional[str] = None

    def _record(self, live: Tuple[Key, str, os.stat_result], sha: Optional[str] = None) -> None:
        """Add a live entry to the capture of the live root (the safety checkpoint), if any."""
        if self.recorder:
            self.recorder.add(live[0], live[1], live[2], sha)

    def _live(self) -> Iterator[Tuple[Key, str, os.stat_result]]:
        spec = RootSpec.from_record(self.plan.record)
        if not os.path.isdir(spec.path):
            return
        for rel, st in walk(spec.path, spec.selection(), keep_temp=True):
            yield path_key(rel), rel, st

    def _target(self) -> Iterator[Tuple[Key, dict]]:
        for entry in self.store.iter_tree(self.plan.record["tree"]):
            yield self.validator.check(entry), entry

    def _touch(self, key: Key) -> None:
        for dir_key, entry in self.ancestors:
            if key[: len(dir_key)] == dir_key and len(key) > len(dir_key):
                self.plan.dirs[dir_key] = entry

    def _add(self, action: Action, key: Key) -> None:
        if len(self.plan.actions) >= DECODED_ACTIONS:
            action.compact()
        self.plan.actions.append(action)
        self._touch(key)

    def _enter_target(self, key: Key, entry: dict) -> None:
        while self.ancestors and key[: len(self.ancestors[-1][0])] != self.ancestors[-1][0]:
            self.ancestors.pop()
        if entry["type"] == DIR:
            self.ancestors.append((key, entry))

    def _live_hash(self, key: Key, rel: str, st: os.stat_result) -> str:
        sha = self.cache.lookup(key, st)
        if sha is None:
            sha = self.store.hash_file(os.path.join(self.plan.root, rel))
        if self.cache_writer:
            self.cache_writer.add(rel, sha, st)
        return sha

    def _diff(self, rel: str, before_path: Optional[str], after_sha: Optional[str]) -> None:
        if not self.want_diff or (before_path is None and after_sha is None):
            return
        before = b""
        if before_path and os.path.getsize(before_path) <= DIFF_LIMIT:
            with open(before_path, "rb") as handle:
                before = handle.read()
        elif before_path:
            return
        after = b""
        if after_sha:
            if self.store.object_size(after_sha) > DIFF_LIMIT:
                return
            after = self.store.read_blob(after_sha)
        before_text, after_text = _text(before), _text(after)
        if before_text is None or after_text is None:
            return
        root = self.plan.root
        self.plan.diffs.append({
            "before_header": os.path.join(root, rel) if before_path else "/dev/null",
            "after_header": "%s (checkpoint)" % os.path.join(root, rel) if after_sha else "/dev/null",
            "before": before_text, "after": after_text,
        })

    def _compare(self, key: Key, rel: str, st: os.stat_result, entry: dict) -> Optional[Action]:
        live_kind = kind_of(st)
        full = os.path.join(self.plan.root, rel)
        if live_kind != entry["type"]:
            self._diff(rel, full if live_kind == FILE else None, entry.get("sha256"))
            return Action("retype", rel, entry, live_kind, ["type"])
        live_sha = self.live_sha = self._live_hash(key, rel, st) if live_kind == FILE else None
        live_target = os.readlink(full) if live_kind == LINK else None
        reasons = _differences(entry, st, live_sha, live_target)
        if not reasons:
            return None
        if "content" in reasons or "target" in reasons:
            if "content" in reasons:
                self._diff(rel, full, entry["sha256"])
            return Action("update", rel, entry, live_kind, reasons)
        return Action("meta", rel, entry, live_kind, reasons)

    def run(self) -> RootPlan:
        """Build the plan (capturing the live root too when asked); raises on an unsafe or
        damaged manifest before anything changes."""
        try:
            self._merge()
            if self.recorder:
                self.plan.safety = self.recorder.finish()
        except BaseException:
            if self.recorder:
                self.recorder.abort()
            raise
        finally:
            self.cache.close()
        return self.plan

    def _merge(self) -> None:
        """Walk the live root and the stored tree side by side."""
        live_iter, target_iter = self._live(), self._target()
        live, target = next(live_iter, None), next(target_iter, None)
        skip: Optional[Key] = None
        while live is not None or target is not None:
            if live is not None and skip is not None and live[0][: len(skip)] == skip:
                self._record(live)
                live = next(live_iter, None)
                continue
            skip = None
            if target is None or (live is not None and live[0] < target[0]):
                key, rel, st = live
                self._diff(rel, os.path.join(self.plan.root, rel) if kind_of(st) == FILE else None, None)
                self._add(Action("delete", rel, None, kind_of(st) or "special", ["extra"]), key)
                skip = key if _stat.S_ISDIR(st.st_mode) else None
                self._record(live)
                live = next(live_iter, None)
                continue
            key, entry = target
            self._enter_target(key, entry)
            if live is None or target[0] < live[0]:
                self._diff(entry["path"], None, entry.get("sha256"))
                self._add(Action("create", entry["path"], entry), key)
                target = next(target_iter, None)
                continue
            self.live_sha = None
            action = self._compare(key, live[1], live[2], entry)
            if action:
                self._add(action, key)
                if entry["type"] == DIR and action.op == "meta":
                    self.plan.dirs[key] = entry
                if action.op == "retype" and _stat.S_ISDIR(live[2].st_mode):
                    skip = key
            self._record(live, self.live_sha)
            live, target = next(live_iter, None), next(target_iter, None)


def plan_root(store: Store, record: dict, want_diff: bool = False, cache_writer: Optional[CacheWriter] = None,
              capture: bool = False) -> RootPlan:
    """Compare a live root with its checkpointed tree; with ``capture``, also store the live
    root's tree (``plan.safety``) in the same walk, for a safety checkpoint."""
    return _Planner(store, record, want_diff, cache_writer, capture).run()


def verify_blobs(store: Store, plans: Sequence[RootPlan]) -> None:
    """Re-hash every blob a restore will write; refuse before any change when one is bad."""
    checked: Set[int] = set()  # first 128 bits of each name, as numbers: no practical clash, less memory
    for plan in plans:
        for sha, rel in plan.blobs():
            key = int(sha[:32], 16) if _NAME.match(sha) else -1  # -1: not a name; blob_hash refuses it
            if key not in checked:
                actual = store.blob_hash(sha)
                checked.add(key)
                if actual != sha:
                    raise IntegrityError(
                        "Stored content of %s is %s: expected sha256 %s, found %s. Nothing was "
                        "changed. Run gitops.rollback.checkpoint state=verified to list damaged "
                        "objects, and restore from another checkpoint."
                        % (os.path.join(plan.root, rel), "missing" if actual is None else "corrupted",
                           sha, actual or "no object"),
                        path=os.path.join(plan.root, rel), expected=sha, actual=actual,
                    )


class _Applier:
    """Carries out a root plan: removals, staging, renames, then directory metadata."""

    def __init__(self, store: Store, plan: RootPlan) -> None:
        self.store = store
        self.plan = plan
        self.root = plan.root
        self.safe_dirs = {self.root}
        self.pending = array("L")  # actions whose new content waits at _tmp(full), by number
        self.token = secrets.token_hex(4)

    def _tmp(self, full: str) -> str:
        """Return where the new content of ``full`` is staged (same directory, one name per run)."""
        head, tail = os.path.split(full)
        return os.path.join(head, ".%s%s%s" % (tail[:100], TEMP_MARK, self.token))

    def _full(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def _check_parent(self, rel: str) -> None:
        parent = os.path.dirname(self._full(rel))
        if parent in self.safe_dirs:
            return
        if os.path.realpath(parent) != parent:
            raise UnsafePathError(
                "Refusing to write %s: its parent directory resolves outside the managed root %s "
                "(a symlinked parent). Remove the symlink or restore from another checkpoint."
                % (self._full(rel), self.root)
            )
        self.safe_dirs.add(parent)

    @staticmethod
    def _remove(full: str) -> None:
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return
        if _stat.S_ISDIR(st.st_mode):
            shutil.rmtree(full)
        else:
            os.unlink(full)

    def _stage_file(self, entry: dict, full: str) -> None:
        tmp = self._tmp(full)
        digest = self.store.hasher()
        with open(tmp, "xb") as out:
            for chunk in self.store.iter_blob_chunks(entry["sha256"]):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != entry["sha256"]:
                out.close()
                os.unlink(tmp)
                raise IntegrityError("Object %s changed while restoring %s; nothing more was written."
                                     % (entry["sha256"], full))
            self._set_meta(out.fileno(), entry)
        os.utime(tmp, ns=(entry["mtime_ns"], entry["mtime_ns"]))

    @staticmethod
    def _set_meta(fd: int, entry: dict) -> None:
        uid, gid = _owner_ids(entry)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, entry["mode"])

    def _stage_link(self, entry: dict, full: str) -> None:
        tmp = self._tmp(full)
        os.symlink(entry["target"], tmp)
        os.lchown(tmp, *_owner_ids(entry))
        os.utime(tmp, ns=(entry["mtime_ns"], entry["mtime_ns"]), follow_symlinks=False)

    def _fix_meta(self, entry: dict, full: str) -> None:
        if entry["type"] == DIR:
            return  # directories are finished last, deepest first
        uid, gid = _owner_ids(entry)
        os.lchown(full, uid, gid)
        if entry["type"] == FILE:
            os.chmod(full, entry["mode"])
        os.utime(full, ns=(entry["mtime_ns"], entry["mtime_ns"]), follow_symlinks=False)

    def _stage(self, action: Action) -> bool:
        """Carry out a non-delete action up to its rename; tell whether content was staged."""
        entry, full = action.entry, self._full(action.rel)
        self._check_parent(action.rel)
        if action.op == "meta":
            self._fix_meta(entry, full)
            return False
        if entry["type"] == DIR:
            os.makedirs(full, mode=0o700, exist_ok=True)
            self.plan.dirs[path_key(action.rel)] = entry
            return False
        if entry["type"] == FILE:
            self._stage_file(entry, full)
        else:
            self._stage_link(entry, full)
        return True

    def _staged(self) -> Iterator[str]:
        """Yield the destinations whose new content is staged."""
        actions = self.plan.actions
        for number in self.pending:
            yield self._full(actions[number].rel)

    def _finish_dirs(self) -> None:
        for key in sorted(self.plan.dirs, key=len, reverse=True):
            entry, full = self.plan.dirs[key], self._full("/".join(key))
            uid, gid = _owner_ids(entry)
            os.lchown(full, uid, gid)
            os.chmod(full, entry["mode"])
            os.utime(full, ns=(entry["mtime_ns"], entry["mtime_ns"]))

    def run(self) -> None:
        """Apply the plan."""
        os.makedirs(self.root, mode=0o755, exist_ok=True)
        try:
            for action in reversed(self.plan.actions):
                if action.op in ("delete", "retype"):
                    self._remove(self._full(action.rel))
            for number, action in enumerate(self.plan.actions):
                if action.op != "delete" and self._stage(action):
                    self.pending.append(number)
            sync_filesystem(self.root)
            for full in self._staged():
                os.rename(self._tmp(full), full)
            self.pending = array("L")
            self._finish_dirs()
            sync_filesystem(self.root)
        except OSError as exc:
            for full in self._staged():
                unlink_quietly(self._tmp(full))
            raise_if_full(exc, "files under %s" % self.root)
            raise


REPORT_LIMIT = 1000


def _changes(plans: Sequence[RootPlan]) -> Dict[str, List[dict]]:
    """Return the changes per root, at most REPORT_LIMIT each (the summary counts them all)."""
    return {plan.root: [action.as_dict() for action in plan.actions[:REPORT_LIMIT]] for plan in plans if plan.actions}


def _summary(plans: Sequence[RootPlan]) -> Dict[str, Dict[str, int]]:
    """Count the changes per root and operation."""
    counts: Dict[str, Dict[str, int]] = {}
    for plan in plans:
        for action in plan.actions:
            per_root = counts.setdefault(plan.root, {})
            per_root[action.op] = per_root.get(action.op, 0) + 1
    return counts


def verify_changes(plan: RootPlan, hash_file: Callable[[str], str] = sha256_file) -> List[dict]:
    """Check that every change of an applied plan landed: re-read each written entry (content
    re-hashed, not trusted to the stat cache), each removed path is gone, each touched directory
    has its metadata. Entries the plan left alone were found equal when it was made."""
    problems = []
    for action in plan.actions:
        full = os.path.join(plan.root, action.rel)
        if action.op == "delete":
            if os.path.lexists(full):
                problems.append({"path": action.rel, "problem": "still present"})
            continue
        problem = _entry_problem(full, action.entry, hash_file)
        if problem:
            problems.append({"path": action.rel, "problem": problem})
    for key, entry in plan.dirs.items():
        problem = _entry_problem(os.path.join(plan.root, "/".join(key)), entry, hash_file)
        if problem:
            problems.append({"path": "/".join(key), "problem": problem})
    return problems


def _entry_problem(full: str, entry: dict, hash_file: Callable[[str], str]) -> Optional[str]:
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        return "missing"
    if kind_of(st) != entry["type"]:
        return "is a %s, not a %s" % (kind_of(st), entry["type"])
    sha = hash_file(full) if entry["type"] == FILE else None
    target = os.readlink(full) if entry["type"] == LINK else None
    reasons = _differences(entry, st, sha, target)
    return "differs in " + ", ".join(reasons) if reasons else None


def verify_tree(store: Store, record: dict) -> List[dict]:
    """Compare a live root with its checkpoint (hashing what the stat cache cannot vouch for) and
    refresh the stat cache; return the differences (empty when equal)."""
    writer = store.cache_writer(record["path"])
    try:
        plan = plan_root(store, record, cache_writer=writer)
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return [action.as_dict() for action in plan.actions]


@dataclass
class RestoreOptions:
    """How a restore runs."""

    only_paths: Sequence[str] = ()
    dry_run: bool = False
    want_diff: bool = False
    safety_checkpoint: bool = True
    creator: Optional[str] = None


def restore_checkpoint(store: Store, manifest: dict, options: RestoreOptions) -> dict:
    """Bring the manifest's roots back to their checkpointed state; the caller holds the store lock."""
    records = roots_of(manifest, options.only_paths)
    capture = options.safety_checkpoint and not options.dry_run
    try:
        plans = [plan_root(store, record, options.want_diff, capture=capture) for record in records]
    except BaseException:
        store.packs.abort()
        raise
    result = {
        "changed": any(plan.actions for plan in plans),
        "changes": _changes(plans),
        "summary": _summary(plans),
        "diffs": [diff for plan in plans for diff in plan.diffs],
        "safety_checkpoint": None,
        "verified": False,
    }
    if options.dry_run or not result["changed"]:
        result["verified"] = not result["changed"]
        return result
    verify_blobs(store, plans)
    if options.safety_checkpoint:
        result["safety_checkpoint"] = summarize(_safety(store, manifest, plans, options.creator))
    for plan in plans:
        _Applier(store, plan).run()
    problems = {plan.root: verify_changes(plan, store.hash_file) for plan in plans}
    problems = {root: items for root, items in problems.items() if items}
    if problems:
        raise IntegrityError(
            "After restoring checkpoint %s the tree still differs: %s. The safety checkpoint %s "
            "holds the state from before the restore." % (
                manifest["id"], problems, (result["safety_checkpoint"] or {}).get("id")),
            differences=problems,
        )
    result["verified"] = True
    return result


def _safety(store: Store, manifest: dict, plans: Sequence[RootPlan], creator: Optional[str]) -> dict:
    """Save the safety checkpoint of the live roots the plans captured."""
    request = CheckpointRequest(
        roots=[], kind="safety", creator=creator,
        reason="safety checkpoint before restore to %s" % (manifest.get("label") or manifest["id"]),
        label="safety/%s" % (manifest.get("label") or manifest["id"]), force=True,
    )
    return save_checkpoint(store, request, [plan.safety for plan in plans if plan.safety])
