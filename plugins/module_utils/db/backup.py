# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database backups as checkpoint components, and restores that prove they worked.

A backup is a component of a checkpoint::

    {"type": "database", "name": "<engine>/<database>", "blobs": [sha256, ...],
     "engine", "format", "compression", "server_version", "database", "sha256", "size",
     "row_counts": {table: n}, "created", "files": {relpath: sha256} (PostgreSQL directory format),
     "migration_version": n (when the database has a db_migrate history)}

A restore checks the blobs' hashes and the archive before touching the database, holds a
per-database restore lock, takes a safety backup of the live database, restores (beside a live database, verified, then
swapped in; ``replace`` drops the previous content, ``swap`` keeps it) and compares every table's
row count with the recorded one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

from .streams import DatabaseError, compare_counts, verify_blobs
from .connection import DbConnection, component_name, database_key
from .engines import make_engine
from .migrations import State
from ..common.errors import CheckpointNotFound, IntegrityError, RollbackError
from ..common.fsutil import ensure_private_dir, temp_name
from ..common.labels import show_label
from ..common.lock import FileLock
from ..store.manifest import Component, Manifest
from ..store.store import Store, check_new_label, parse_time, utc_now

COMPONENT_TYPE = "database"
NAME_LIMITS = {"postgresql": 63, "mysql": 64}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def recorded_version(conn: DbConnection) -> Optional[int]:
    """Return the migration version a database's history records (0: none applied), or None when it has no
    history or it cannot be read (a backup records it beside the dump; a failed read never fails the backup)."""
    try:
        migrations = make_engine(conn).migrations()
    except (RollbackError, OSError, KeyError):
        return None
    try:
        raw = migrations.read_state_if_exists()  # one client run
        return None if raw is None else State(history=list(raw.get("history") or [])).current
    except (RollbackError, OSError, ValueError):
        return None
    finally:
        migrations.close()


def parse_duration(text: Optional[str]) -> Optional[float]:
    """Turn ``30``, ``90m``, ``12h``, ``7d`` or ``2w`` into seconds."""
    if text is None or str(text).strip() == "":
        return None
    match = _DURATION.match(str(text))
    if not match:
        raise RollbackError("older_than=%r is not a duration; use a number of seconds or a number with "
                            "s, m, h, d or w (e.g. 7d)." % (text,))
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class BackupRequest:
    """What to back up and where to record it."""

    conn: DbConnection
    checkpoint: Optional[str] = None
    reason: Optional[str] = None
    commit: Optional[str] = None
    fmt: Optional[str] = None
    jobs: int = 1
    compression: Optional[str] = None
    compression_level: Optional[int] = None
    keep: Optional[int] = None
    older_than: Optional[str] = None
    maintenance_db: Optional[str] = None
    dump_extra_args: Optional[List[str]] = None


@dataclass
class RestoreRequest:
    """What to restore, from where, and how."""

    conn: DbConnection
    checkpoint: str
    source_database: Optional[str] = None
    mode: str = "replace"
    jobs: int = 1
    safety_backup: bool = True
    verify_row_counts: bool = True
    keep_old: bool = True
    maintenance_db: Optional[str] = None
    terminate_sessions: bool = False
    restore_extra_args: Optional[List[str]] = None


# ---------------------------------------------------------------------------------------- backup
def choose_format(engine, fmt: Optional[str]) -> str:
    """Return the dump format, refusing one the engine does not write."""
    fmt = fmt or engine.default_format
    if fmt not in engine.formats:
        raise RollbackError("format=%s is not available for %s; choose one of %s."
                            % (fmt, engine.name, ", ".join(engine.formats)))
    return fmt


def check_source(engine, conn: DbConnection, database: str) -> str:
    """Prove the server is reachable and the database exists; return the server version."""
    version, exists = engine.probe(database)
    if not exists:
        have = engine.databases()
        raise DatabaseError("Database %r does not exist on %s%s. Check the database name."
                            % (database, conn.describe(), " (have: %s)" % ", ".join(have) if have else ""))
    return version


def plan_backup(store: Store, req: BackupRequest) -> dict:
    """Describe a backup without taking it (check mode)."""
    engine = make_engine(req.conn, req.maintenance_db, {"pg_dump": req.dump_extra_args})
    database = database_key(req.conn)
    fmt = choose_format(engine, req.fmt)
    version = check_source(engine, req.conn, database)
    target = store.find_optional(req.checkpoint) if store.exists() else None
    if target is None:
        check_new_label(req.checkpoint, "checkpoint")
    return {
        "name": component_name(engine.name, database), "engine": engine.name, "database": database,
        "format": fmt, "server_version": version, "estimated_size": engine.size(database),
        "checkpoint": target["id"] if target else None, "label": req.checkpoint,
        "row_counts": engine.row_counts(database),
    }


def backup(store: Store, req: BackupRequest, owner: str, lock_timeout: float = 0.0,
           kind: Optional[str] = None) -> Tuple[Manifest, Component]:
    """Dump a database into the store as a component of a checkpoint; return (manifest, component).

    The checkpoint is the one labelled (or identified) ``req.checkpoint`` when it exists,
    else a new one with that label.
    """
    engine = make_engine(req.conn, req.maintenance_db, {"pg_dump": req.dump_extra_args})
    database = database_key(req.conn)
    fmt = choose_format(engine, req.fmt)
    if store.find_optional(req.checkpoint) is None:
        check_new_label(req.checkpoint, "checkpoint")  # a new checkpoint gets it: refused before the dump
    check_source(engine, req.conn, database)
    with store.lock(owner, "db_backup %s" % component_name(engine.name, database), timeout=lock_timeout):
        started = time.monotonic()
        fields = engine.dump(store, database, fmt, max(1, req.jobs), req.compression, req.compression_level)
        component = {
            "type": COMPONENT_TYPE, "name": component_name(engine.name, database), "engine": engine.name,
            "format": fmt, "database": database, "created": utc_now(), "compression": None,
            "duration_s": 0.0,
        }
        component.update(fields)
        component["duration_s"] = round(time.monotonic() - started, 3)
        version = recorded_version(req.conn)
        if version is not None:
            component["migration_version"] = version  # a revert to this checkpoint goes to this version
        manifest = store.find_optional(req.checkpoint)
        if manifest is None:
            manifest = store.new_manifest(label=req.checkpoint, reason=req.reason, creator=owner,
                                          commit=req.commit, kind=kind)
        store.attach_component(manifest, component)
        if req.keep is not None or req.older_than is not None:
            component["pruned"] = prune_backups(store, component["name"], req.keep, parse_duration(req.older_than))
    return Manifest.from_json(manifest), Component.from_json(component)


def unmigrated_backup(store: Store, conn: DbConnection) -> Optional[dict]:
    """Return the newest backup of a database (its listing summary, and ``current_version``) when the version of
    its db_migrate history is still the one that backup recorded (``when_migrated``: no new backup is needed);
    None when it moved, or when the store holds no backup of it yet.

    A database without a history has no version: it is backed up once, then not again.
    """
    if not store.exists():
        return None
    name = component_name(make_engine(conn).name, database_key(conn))
    newest = next(((manifest, held) for manifest in reversed(store.typed_manifests())
                   for held in [manifest.component(COMPONENT_TYPE, name)] if held), None)
    if newest is None:
        return None
    current = recorded_version(conn)
    if newest[1].get("migration_version") != current:
        return None
    return dict(summarize_backup(*newest), current_version=current)


def prune_backups(store: Store, name: str, keep: Optional[int], older_than: Optional[float],
                  now: Optional[float] = None) -> List[str]:
    """Drop backups of ``name`` beyond the newest ``keep`` or older than ``older_than`` seconds.

    The newest backup is always kept. A checkpoint left with nothing in it is deleted; objects
    no checkpoint references any more are collected. Call with the store lock held.
    """
    now = time.time() if now is None else now
    holders = [(man, held) for man in store.typed_manifests() for held in [man.component(COMPONENT_TYPE, name)] if held]
    chosen = []
    for index, (manifest, held) in enumerate(holders[:-1]):
        too_many = keep is not None and index < len(holders) - max(keep, 1)
        created = held.get("created") or manifest.created
        too_old = older_than is not None and now - parse_time(created) > older_than
        if too_many or too_old:
            chosen.append(manifest)
    for manifest in chosen:
        manifest.drop_component(COMPONENT_TYPE, name)  # the manifest is rewritten (docs/store-format.md)
        if manifest.empty:
            store.delete(manifest.id)
        else:
            store.save(manifest)
    if chosen:
        store.collect_garbage()
    return [man.id for man in chosen]


# ------------------------------------------------------------------------------------- listing
def summarize_backup(manifest: Manifest, component: Component) -> dict:
    """Return the listing fields of a backup (no per-file hashes)."""
    summary = {key: value for key, value in component.to_json().items() if key not in ("files", "blobs")}
    summary.update(checkpoint=manifest.id, label=manifest.label, checkpoint_created=manifest.created,
                   objects=len(component.blobs))
    return summary


def list_backups(store: Store, engine: Optional[str] = None, database: Optional[str] = None,
                 ref: Optional[str] = None, verify: bool = False) -> List[dict]:
    """Return the database backups in the store, oldest first, filtered as asked."""
    if not store.exists():
        return []
    manifests = [store.find_manifest(ref)] if ref else store.typed_manifests()
    found = []
    for manifest in manifests:
        for component in manifest.components_of(COMPONENT_TYPE):
            if engine and component.get("engine") != engine:
                continue
            if database and component.get("database") not in (database, os.path.abspath(database)):
                continue
            summary = summarize_backup(manifest, component)
            if verify:
                summary["problems"] = verify_blobs(store, component.blobs, 4)
                summary["verified"] = not summary["problems"]
            found.append(summary)
    return found


def locate_backup(store: Store, ref: str, engine: str, database: str) -> Tuple[Manifest, Component]:
    """Return (manifest, component) of the backup of ``engine/database`` in checkpoint ``ref``."""
    manifest = store.find_manifest(ref)
    component = manifest.component(COMPONENT_TYPE, component_name(engine, database))
    if component is not None:
        return manifest, component
    others = manifest.components_of(COMPONENT_TYPE)
    same_db = [c for c in others if c.get("database") == database]
    if same_db:
        raise RollbackError(
            "Checkpoint %s holds a %s dump of %r, which cannot be restored into %s. Restore it with "
            "engine=%s, or choose a checkpoint with a %s backup." % (
                manifest.id, same_db[0].get("engine"), database, engine, same_db[0].get("engine"), engine))
    raise CheckpointNotFound(
        "Checkpoint %s (%s) has no backup of %s (it holds: %s). Set source_database, or run "
        "gitops.rollback.db_backup_info to find one." % (
            manifest.id, show_label(manifest.label) if manifest.label else "no label",
            component_name(engine, database),
            ", ".join(str(c.name) for c in others) or "no database backups"))


# ------------------------------------------------------------------------------------- restore
def restore_lock(store: Store, engine: str, database: str, owner: str, timeout: float) -> FileLock:
    """Take the restore lock of one database (a second restore of it is refused, naming the owner)."""
    store.init()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", database)[-80:]
    digest = hashlib.sha256(database.encode("utf-8")).hexdigest()[:8]
    path = store.path("locks", "db-%s-%s-%s.lock" % (engine, slug, digest))
    return FileLock(path, owner, "db_restore %s/%s" % (engine, database)).acquire(timeout)


def staging_names(engine: str, database: str, checkpoint_id: str) -> Tuple[str, str]:
    """Return the staging and kept-old names of a swap, refusing ones the server would truncate."""
    staged = "%s__gr_restore_%s" % (database, checkpoint_id[-6:])
    old = "%s__gr_old_%s" % (database, datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S"))
    _check_name_length(engine, database, old)
    return staged, old


def _check_name_length(engine: str, database: str, name: str) -> None:
    """Refuse a staging or kept-old name longer than the server allows (it would truncate it)."""
    limit = NAME_LIMITS.get(engine)
    if limit and len(name.encode("utf-8")) > limit:
        raise RollbackError("The database name %r is too long for swap mode (%s allows %d bytes for %r). "
                            "Use mode=replace." % (database, engine, limit, name))


def unused_old_name(engine, database: str, old: str) -> str:
    """``old``, or ``old_2``, ``old_3``, ... the first name no database (or file) has yet.

    The kept-old name holds the time to the second: a second swap restore within that second must
    keep its previous database beside the first one's, not fail on it nor (SQLite) replace it.
    """
    name, number = old, 1
    while engine.exists(name) or (engine.name == "sqlite" and os.path.lexists(name)):
        number += 1
        name = "%s_%d" % (old, number)
    _check_name_length(engine.name, database, name)
    return name


def verify_backup(store: Store, component: dict, jobs: int) -> None:
    """Refuse a backup whose objects are missing or do not hash to their names."""
    problems = verify_blobs(store, component.get("blobs", []), max(jobs, 2))
    if problems:
        raise IntegrityError(
            "The backup %s is damaged: %s. Nothing was changed; restore from another checkpoint "
            "(gitops.rollback.db_backup_info lists them)." % (
                component["name"], "; ".join("%s %s" % (p["object"][:12], p["problem"]) for p in problems[:5])),
            problems=problems)
    if component.get("format") == "directory":
        listing = json.loads(store.read_blob(component["sha256"]).decode("utf-8"))
        if listing != component.get("files") or not set(listing.values()) <= set(component["blobs"]):
            raise IntegrityError("The file list of backup %s does not match its objects. Nothing was changed; "
                                 "restore from another checkpoint." % component["name"])


def _checked_backup(store: Store, req: RestoreRequest):
    """The checks a restore and its plan make first: the backup found and verified, its restore arguments
    checked, the live database probed. Return (engine, database, manifest, component, its JSON, version, live)."""
    engine = make_engine(req.conn, req.maintenance_db, {"pg_restore": req.restore_extra_args})
    database = database_key(req.conn)
    source = database_key(req.conn, req.source_database)
    manifest, backup_component = locate_backup(store, req.checkpoint, engine.name, source)
    component = backup_component.to_json()
    verify_backup(store, component, req.jobs)
    if engine.name == "postgresql":
        engine.check_restore_args(component)
    version, live = engine.probe(database)
    return engine, database, manifest, backup_component, component, version, live


def plan_restore(store: Store, req: RestoreRequest) -> dict:
    """Describe a restore (check mode) after the same checks a real one makes first."""
    engine, database, manifest, backup_component, component, version, live = _checked_backup(store, req)
    check_privileges(engine, req, database, component.get("database_info", {}), live, version)
    current = engine.row_counts(database) if live else {}
    steps = []
    if req.safety_backup and live:
        steps.append("back up the live %s into a safety checkpoint" % database)
    if uses_staging(engine.name, req.mode, live, database) and engine.name != "sqlite":
        staged, old = staging_names(engine.name, database, manifest.id)
        if req.keep_old and req.mode == "swap":
            old = unused_old_name(engine, database, old)
        steps += ["restore into %s" % staged, "compare row counts"]
        if engine.name == "postgresql":
            steps.append("give %s the backed-up database properties (owner, privileges, settings, ...)" % staged)
        if engine.name == "mysql":
            steps.append("re-create the views, routines, events and triggers of %s in it, each in its own creation "
                         "session (a rehearsal: the live database is not touched yet)" % staged)
        kept = old if req.keep_old and req.mode == "swap" else "(dropped)"
        steps.append("swap: %s becomes %s, %s becomes %s" % (database, kept, staged, database))
    else:
        steps += ["drop %s" % database if live else "create %s" % database, "restore into %s" % database,
                  "compare row counts"]
    return {
        "checkpoint": manifest.id, "label": manifest.label, "backup": summarize_backup(manifest, backup_component),
        "database": database, "exists": live, "mode": req.mode, "steps": steps,
        "commands": engine.describe_restore(component, "<dump>", database, req.jobs),
        "before": current, "after": component.get("row_counts", {}),
    }


def restore(store: Store, req: RestoreRequest, owner: str, lock_timeout: float = 0.0) -> dict:
    """Restore a database from a checkpoint; return what was done and what was verified."""
    engine, database, manifest, backup_component, component, version, live = _checked_backup(store, req)
    use_staging = uses_staging(engine.name, req.mode, live, database)
    staged, old = staging_names(engine.name, database, manifest.id) if use_staging else (database, None)
    result = {"checkpoint": manifest.id, "label": manifest.label, "database": database,
              "mode": req.mode, "safety_checkpoint": None, "old_database": None}
    info = component.get("database_info", {})
    with restore_lock(store, engine.name, database, owner, lock_timeout):
        check_privileges(engine, req, database, info, live, version)
        if use_staging and req.mode == "swap" and req.keep_old and live:
            old = unused_old_name(engine, database, old)  # under the lock: no other restore of it picks one
        workdir = temp_name(store.path("tmp", "restore"))
        ensure_private_dir(workdir)
        try:
            dump_path = engine.prepare_source(store, component, workdir)
            if live and req.safety_backup:
                result["safety_checkpoint"] = take_safety_backup(store, req, database, owner, lock_timeout)
            started = time.monotonic()
            target = staged
            stage = "create"
            try:
                recreate(engine, req, target, info, use_staging)
                stage = "load"
                engine.load(dump_path, component, target, max(1, req.jobs))
                stage = "verify"
                result["verification"] = verify_counts(engine, component, target, req.verify_row_counts)
                if hasattr(engine, "apply_properties"):
                    stage = "properties"
                    engine.apply_properties(target, info)
                keep = old if (req.mode == "swap" and req.keep_old and live) else None
                if use_staging and engine.name == "postgresql":  # one transaction: fails whole or not at all
                    stage = "swap"
                    engine.swap(database, staged, keep, terminate_sessions=req.terminate_sessions)
                elif use_staging and engine.name == "mysql":  # puts the live database back when it fails
                    stage = "swap"
                    engine.swap(database, staged, keep)
            except RollbackError as exc:
                failure = FailedRestore(database, target, stage, result["safety_checkpoint"])
                failure.cleanup(engine)
                raise failure.error(exc) from exc
            except BaseException:
                if use_staging:
                    drop_quietly(engine, staged)
                raise
            if use_staging and engine.name == "sqlite":
                engine.swap(database, staged, keep)
            result["old_database"] = keep if use_staging else None
            result["duration_s"] = round(time.monotonic() - started, 3)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    result["commands"] = engine.describe_restore(component, dump_path, database, req.jobs)
    result["row_counts"] = component.get("row_counts", {})
    return result


def check_privileges(engine, req: RestoreRequest, database: str, info: dict, live: bool, version: str) -> None:
    """Refuse, before anything changes, a restore the login role could not finish (PostgreSQL)."""
    if engine.name == "postgresql":
        engine.check_restore(database, info, live, req.terminate_sessions, version)


def recreate(engine, req: RestoreRequest, target: str, info: dict, staged: bool) -> None:
    """Create the restore's target empty; a live database loaded in place loses its sessions only when asked."""
    if engine.name == "postgresql":
        engine.recreate(target, info, force=staged or req.terminate_sessions)
    else:
        engine.recreate(target, info)


STAGES = {"create": "while creating %s", "load": "while loading the dump into %s",
          "verify": "while comparing the row counts of %s",
          "properties": "while giving %s the backed-up database properties",
          "swap": "while putting %s in the live database's place"}


def shorten(text: str, limit: int = 1500) -> str:
    """Keep the start and the end of a long client error (a client may echo a whole failed statement)."""
    if len(text) <= limit:
        return text
    head = limit // 4
    return "%s [... %d characters left out ...] %s" % (text[:head], len(text) - limit, text[-(limit - head):])


def drop_quietly(engine, database: str) -> Optional[str]:
    """Drop a staged copy; return why it could not be dropped (e.g. the server is down), or None."""
    try:
        engine.drop(database)
    except RollbackError as exc:
        return str(exc)
    return None


def server_problem(engine) -> Optional[str]:
    """Return why the server does not answer a trivial query now, or None when it does."""
    try:
        engine.server_version()
    except RollbackError as exc:
        return str(exc)
    return None


@dataclass
class FailedRestore:
    """A restore that failed at ``stage``: explains the live database's state and the way back."""

    database: str
    target: str
    stage: str
    safety: Optional[str]
    drop_problem: Optional[str] = None
    server: Optional[str] = None

    @property
    def staged(self) -> bool:
        return self.target != self.database

    def cleanup(self, engine) -> None:
        """Drop the staged copy (when there is one) and note whether the server still answers."""
        if self.staged:
            self.drop_problem = drop_quietly(engine, self.target)
        self.server = server_problem(engine)

    def error(self, exc: RollbackError) -> RollbackError:
        """Return ``exc`` retold: stage, server state, live database state, way out; details for the module."""
        where = ("the staged copy %s" % self.target) if self.staged else self.database
        cause = shorten(str(exc).strip())
        parts = ["The restore of %s failed %s: %s%s" % (self.database, STAGES[self.stage] % where, cause,
                                                        "" if cause.endswith(".") else ".")]
        if self.server:
            parts.append("The server no longer answers (%s); it stopped or restarted during the restore."
                         % shorten(self.server, 500))
        parts.append(self.state(exc.details.get("live_state")))
        details = dict(exc.details, stage=self.stage, safety_checkpoint=self.safety,
                       live_database_touched=exc.details.get("live_database_touched", not self.staged))
        return type(exc)(" ".join(parts), **details)

    def state(self, live_state: Optional[str] = None) -> str:
        """Say what the live database holds now and how to get back (``live_state``: as the engine found it)."""
        again = "run the restore again once the server is back" if self.server else "run the restore again"
        if self.staged:
            left = ("the staged copy was dropped" if not self.drop_problem else
                    "the staged copy %s could not be dropped now; the next restore drops it" % self.target)
            if self.safety:
                left += "; safety checkpoint %s also holds it" % self.safety
            if live_state:
                return "%s (%s). Fix the cause, then %s." % (live_state.rstrip("."), left, again)
            return "The live database %s was not touched (%s). Fix the cause, then %s." % (self.database, left, again)
        if self.safety:
            return ("The database %s may hold a partial restore; its previous state is in safety checkpoint %s "
                    "(restore it with checkpoint=%s), or %s." % (self.database, self.safety, self.safety, again))
        return "The database %s may hold a partial restore (no safety backup was taken); %s." % (self.database, again)


def uses_staging(engine: str, mode: str, live: bool, database: str = "") -> bool:
    """Tell whether a restore loads beside the live database and swaps it into place.

    Always for SQLite (a file rename) and in swap mode; in replace mode too when the database
    exists, so a restore killed half-way leaves it untouched instead of dropped or half loaded
    (PostgreSQL renames the staged database in, MariaDB moves its tables in with one RENAME TABLE;
    the previous content is dropped afterwards). Replace loads in place, as before, when the
    staging names would exceed the server's limit.
    """
    if engine == "sqlite":
        return True
    limit = NAME_LIMITS.get(engine)
    fits = not limit or len(database.encode("utf-8")) + len("__gr_old_YYYYmmddTHHMMSS") <= limit
    return live and (mode == "swap" or fits)


def take_safety_backup(store: Store, req: RestoreRequest, database: str, owner: str, lock_timeout: float) -> str:
    """Back up the live database into a new safety checkpoint; return its id."""
    fmt = "directory" if req.conn.engine == "postgresql" and req.jobs > 1 else None
    safety = BackupRequest(conn=req.conn.with_database(database), fmt=fmt, jobs=req.jobs,
                           reason="safety backup before db_restore of %s from %s" % (database, req.checkpoint),
                           maintenance_db=req.maintenance_db)
    manifest, _component = backup(store, safety, owner, lock_timeout, kind="safety")
    return manifest.id


def verify_counts(engine, component: dict, database: str, enforce: bool) -> dict:
    """Compare the restored row counts with the recorded ones; fail on a difference when enforced."""
    actual = engine.row_counts(database)
    diffs = compare_counts(component.get("row_counts", {}), actual)
    exact = component.get("row_counts_exact", True)
    if diffs and enforce and exact:
        listed = ", ".join("%s: expected %s, got %s" % (d["table"], d["expected"], d["actual"]) for d in diffs[:10])
        raise DatabaseError("After restoring %s, row counts differ from the backup: %s." % (database, listed),
                            differences=diffs)
    return {"tables": len(actual), "rows": sum(actual.values()), "differences": diffs,
            "row_counts_exact": exact, "matched": not diffs}


def counts_summary(counts: Dict[str, int]) -> str:
    """Return 'N tables, M rows'."""
    return "%d tables, %d rows" % (len(counts), sum(counts.values()))
