# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a db_migrate call asks for and the plan it makes: the parameters, the refusals (dirty, out of order,
drift, irreversible), the checkpoint backup a revert goes to, and the steps of an apply or revert."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, List, Optional

from .connection import DbConnection, component_name, database_key
from .migrations import Migrations, Row, State
from ..common.errors import RollbackError
from ..common.labels import escape, show_label
from ..common.lock import default_owner
from .migrate_layouts import IRREVERSIBLE_MARK, Migration, read_folder, wants_transaction

if TYPE_CHECKING:
    from ..store.store import Store

OPERATIONS = ("status", "apply", "revert", "label", "resolve", "verify", "baseline", "repair")


def _shown(label: Optional[str]) -> str:
    """Return a label for a message (escaped unless in the grammar), or 'none'."""
    return show_label(label) if label else "none"


class DirtyError(RollbackError):
    """A migration failed half-way on an engine without transactional DDL."""


class DriftError(RollbackError):
    """An applied migration's file changed since it was applied."""


class IrreversibleError(RollbackError):
    """A revert would cross a migration that cannot be reverted."""


class NotReversibleError(RollbackError):
    """verify_reversible found a migration whose down step fails or leaves the schema different."""


def load_migrations(directory: str, layout: str = "auto") -> List[Migration]:
    """Read every migration of ``directory`` (in ``layout``), sorted by version; refuse malformed names."""
    return read_folder(directory, layout).migrations


def parse_version(text: str) -> int:
    """Parse a version given as ``5``, ``0005`` or ``V0005``."""
    match = re.match(r"^[Vv]?(\d+)$", str(text).strip())
    if not match:
        raise RollbackError("Version %r is not a number (use 12, 0012 or V0012; a Flyway version such as 1.2 needs "
                            "layout=flyway)." % text)
    return int(match.group(1))


def parse_date(text: str) -> datetime:
    """Parse an ISO 8601 date or time (UTC unless an offset is given)."""
    value = text.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RollbackError("Date %r is not ISO 8601 (use 2026-11-21 or 2026-11-21T14:30:00Z)." % text) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def applied_time(row: dict) -> datetime:
    """Return when a history row was applied (UTC)."""
    return parse_date(row["applied_at"])


def default_applied_by() -> str:
    """Return user@host of this process."""
    return default_owner()


def default_job_id() -> Optional[str]:
    """Return the AWX/Tower job id from the environment, if any."""
    return os.environ.get("AWX_JOB_ID") or os.environ.get("JOB_ID") or None


@dataclass
class Params:
    """What one db_migrate call asks for."""

    operation: str
    conn: DbConnection
    migrations_dir: Optional[str] = None
    layout: str = "auto"
    allow_drift: bool = False
    version: Optional[str] = None
    label: Optional[str] = None
    count: Optional[int] = None
    date: Optional[str] = None
    force: bool = False
    resolve_as: Optional[str] = None
    verify_reversible: bool = False
    applied_by: Optional[str] = None
    job_id: Optional[str] = None
    store_path: Optional[str] = None
    encryption_key: Optional[str] = None
    checkpoint: Optional[str] = None
    owner: Optional[str] = None
    lock_timeout: float = 0.0
    lock_ttl: float = 3600.0
    check_mode: bool = False

    @classmethod
    def from_module(cls, params: dict, check_mode: bool) -> "Params":
        """Build from AnsibleModule params."""
        return cls(
            operation=params["operation"], conn=DbConnection.from_params(params),
            migrations_dir=params.get("migrations_dir"), layout=params.get("layout") or "auto",
            allow_drift=bool(params.get("allow_drift")), version=params.get("version"), label=params.get("label"),
            count=params.get("count"), date=params.get("date"), force=bool(params.get("force")),
            resolve_as=params.get("resolve_as"), verify_reversible=bool(params.get("verify_reversible")),
            applied_by=params.get("applied_by"), job_id=params.get("job_id"), store_path=params.get("store_path"),
            encryption_key=params.get("encryption_key"), checkpoint=params.get("checkpoint"),
            owner=params.get("owner"), lock_timeout=float(params.get("lock_timeout") or 0),
            lock_ttl=float(params.get("lock_ttl") or 3600), check_mode=check_mode,
        )


@dataclass
class Step:
    """One migration to run in one direction, with the exact script sent for it."""

    direction: str
    version: int
    name: str
    body: str
    script: str
    transaction: bool = True

    def summary(self) -> dict:
        return {"version": self.version, "name": self.name, "direction": self.direction, "sql": self.body,
                "transaction": self.transaction}


# ----------------------------------------------------------------------------- refusals
def refuse_dirty(state: State, conn: DbConnection) -> None:
    """Refuse to go on while a migration is recorded dirty, with the exact recovery steps."""
    if not state.dirty:
        return
    row = state.dirty[0]
    doing = "applying" if row.get("direction") == "up" else "reverting"
    raise DirtyError(
        "Migration V%04d__%s of %s is dirty: %s it failed or was interrupted part-way (started %s by %s), and it "
        "ran outside a transaction (MariaDB/MySQL cannot roll back DDL; or the script is marked no-transaction), so "
        "part of it may be in effect. Nothing else was run. To recover: "
        "1) compare the schema with the up and down scripts of V%04d__%s and finish or undo the half-done "
        "statements by hand; 2) tell db_migrate what the database now is with operation=resolve version=%d resolve_as=applied "
        "(the whole up script is in effect) or resolve_as=reverted (none of it is); 3) run again."
        % (row["version"], row["name"], conn.describe(), doing, row.get("applied_at"), row.get("applied_by"),
           row["version"], row["name"], row["version"]), dirty=state.dirty)


def check_order(state: State, migrations: List[Migration], target: int) -> List[Migration]:
    """Return the migrations to apply up to ``target``; refuse one older than the current version."""
    applied = {int(row["version"]) for row in state.history}
    pending = [m for m in migrations if m.version not in applied and m.version <= target]
    late = [m for m in pending if m.version < state.current]
    if late:
        raise RollbackError(
            "%s is not applied but is older than the current version %d of %s: applying it out of order would "
            "make reverts ambiguous. Give it a version above %d (rename the files)."
            % (", ".join(m.label for m in late), state.current, "the database", state.current))
    return pending


def drift_of(row: dict, migration: Optional[Migration], ends: tuple = ("up", "down")) -> List[str]:
    """Return the files (``ends``: up, down) of an applied migration that changed since it was applied."""
    if migration is None:
        return []
    changed = []
    if "up" in ends and migration.checksum != row["checksum"]:
        changed.append(os.path.basename(migration.up_path))
    if "down" in ends and migration.down_checksum and row.get("down_checksum") \
            and migration.down_checksum != row["down_checksum"]:
        name = os.path.basename(migration.down_path or "")
        changed.append(name if name not in changed else name + " (down section)")
    return changed


def drift_report(state: State, migrations: List[Migration]) -> List[dict]:
    """Return every applied migration whose files changed."""
    by_version = {m.version: m for m in migrations}
    report = []
    for row in state.history:
        files = drift_of(row, by_version.get(int(row["version"])))
        if files:
            report.append({"version": int(row["version"]), "name": row["name"], "files": files})
    return report


# ----------------------------------------------------------------------------- checkpoint backups
def find_backups(store: Optional["Store"], conn: DbConnection, version: int, label: Optional[str]) -> List[dict]:
    """Return database backups in the checkpoint store that match the target (label or version).

    A store that cannot be read (wrong or missing key, damaged manifest) raises its error.
    """
    if store is None or not os.path.isdir(store.root):
        return []
    found = []
    wanted_db = os.path.basename(conn.database) if conn.engine == "sqlite" else conn.database
    for manifest in store.typed_manifests():
        for comp in manifest.components_of("database"):
            names = {str(comp.get(key)) for key in ("name", "database") if comp.get(key)}
            names |= {os.path.basename(n) for n in names}
            if wanted_db not in names:
                continue
            comp_version = comp.get("migration_version")
            matches = (label and manifest.label == label) or (
                comp_version is not None and str(comp_version) == str(version))
            found.append({"checkpoint": manifest.id, "label": manifest.label,
                          "component": comp.name, "migration_version": comp_version,
                          "created": manifest.created, "matches": bool(matches)})
    return found


def checkpoint_version(params: Params) -> int:
    """Return the migration version the checkpoint ``params.checkpoint`` (an id, as the rollback plan resolved
    it; or a label) recorded for this database when it was backed up: the revert target, fixed by the id."""
    from ..store.store import Store  # pylint: disable=import-outside-toplevel  # a revert to a checkpoint only
    store_path = params.store_path or ""
    store = Store(store_path, params.encryption_key)
    if not store.exists():
        raise RollbackError("There is no checkpoint store at %s on %s, so checkpoint %s cannot name the version to "
                            "revert %s to. Set store_path, or revert by label or version."
                            % (store_path, socket.gethostname(), _shown(params.checkpoint), params.conn.describe()))
    manifest = store.find_manifest(str(params.checkpoint))
    name = component_name(params.conn.engine, database_key(params.conn))
    component = manifest.component("database", name)
    if component is not None and component.get("migration_version") is not None:
        return int(component.get("migration_version"))
    raise RollbackError(
        "Checkpoint %s (label %s) records no migration version of %s: it holds no backup of it, or the backup was "
        "taken before the database had a migration history (or before backups recorded it). Nothing was run. "
        "Restore the checkpoint's dump (gitops.rollback.db_restore), or revert by label or version."
        % (manifest.id, _shown(manifest.label), name))


def irreversible_message(crossing: List[dict], conn: DbConnection, params: Params, target: int,
                         label: Optional[str]) -> str:
    """Explain an irreversible crossing and name the checkpoint backup to restore instead."""
    from ..store.store import Store  # pylint: disable=import-outside-toplevel  # an irreversible revert only
    what = "; ".join("V%04d__%s (%s)" % (c["version"], c["name"], c["why"]) for c in crossing)
    try:
        backups = find_backups(Store(params.store_path, params.encryption_key) if params.store_path else None,
                               conn, target, label)
    except (OSError, RollbackError) as exc:
        return ("Reverting %s to version %d would cross irreversible migration(s) %s. Nothing was run. The "
                "checkpoint store %s cannot be read to name a backup to restore instead: %s"
                % (conn.describe(), target, what, params.store_path, exc))
    matching = [b for b in backups if b["matches"]]
    if matching:
        best = matching[-1]
        way = ("Restore the checkpoint backup instead: checkpoint %s (label %s, component database %s, migration "
               "version %s) with gitops.rollback.db_restore checkpoint=%s."
               % (best["checkpoint"], _shown(best["label"]), best["component"], best["migration_version"],
                  _shown(best["label"]) if best["label"] else best["checkpoint"]))
    elif backups:
        way = ("No checkpoint backup in %s matches version %d%s; backups of this database there: %s. Restore the one "
               "taken at that release with gitops.rollback.db_restore." % (
                   params.store_path, target, " / label %s" % _shown(label) if label else "",
                   ", ".join("%s (label %s, version %s)" % (b["checkpoint"], _shown(b["label"]), b["migration_version"])
                             for b in backups)))
    else:
        way = ("There is no checkpoint backup of %s in %s, so nothing can restore it: before deploying an "
               "irreversible migration, take one with gitops.rollback.db_backup (label=<release tag>), or write a "
               "down script." % (conn.database, params.store_path or "the store (store_path not set)"))
    return ("Reverting %s to version %d would cross irreversible migration(s) %s. Nothing was run. %s"
            % (conn.describe(), target, what, way))


# ----------------------------------------------------------------------------- planning
def row_for(migration: Migration, params: Params) -> Row:
    """Return the history row a migration is applied with."""
    down = None if migration.irreversible else migration.down_sql
    return Row(migration.version, migration.name, migration.checksum,
               None if migration.irreversible else migration.down_checksum, down,
               params.applied_by or default_applied_by(), params.job_id or default_job_id(), params.label)


def plan_apply(engine: Migrations, state: State, migrations: List[Migration], params: Params) -> List[Step]:
    """Return the up steps to the target version (latest when not given)."""
    latest = migrations[-1].version if migrations else 0
    target = parse_version(params.version) if params.version else latest
    if target not in {m.version for m in migrations} | {0} and target != latest:
        raise RollbackError("Version %d is not in %s (have %s)." % (
            target, params.migrations_dir, ", ".join(str(m.version) for m in migrations) or "none"))
    if target < state.current:
        raise RollbackError("Version %d is below the current version %d of %s: use operation=revert to go back."
                            % (target, state.current, params.conn.describe()))
    steps = []
    for migration in check_order(state, migrations, target):
        transaction = wants_transaction(migration.up_sql)
        steps.append(Step("up", migration.version, migration.name, migration.up_sql,
                          engine.up_script(migration.up_sql, row_for(migration, params), transaction), transaction))
    return steps


def revert_target(state: State, params: Params) -> int:
    """Resolve checkpoint / version / label / count / date to the version to revert to."""
    if params.checkpoint is not None:
        return checkpoint_version(params)
    if params.label is not None:
        version = state.label_version(params.label)
        if version is None:
            raise RollbackError("Label %s is not recorded in %s (have: %s). Record labels with operation=label, "
                                "or revert by version, count or date." % (
                                    escape(params.label), params.conn.describe(),
                                    ", ".join("%s=%s" % (show_label(e["label"]), e["version"]) for e in state.labels)
                                    or "none"))
        return version
    versions = [int(row["version"]) for row in state.applied]
    if params.count is not None:
        if params.count < 0:
            raise RollbackError("count must be 0 or more, not %d." % params.count)
        if params.count > len(versions):
            raise RollbackError("count=%d is more than the %d applied migrations of %s."
                                % (params.count, len(versions), params.conn.describe()))
        remaining = versions[:len(versions) - params.count]
        return remaining[-1] if remaining else 0
    if params.date is not None:
        moment = parse_date(params.date)
        kept = [int(row["version"]) for row in state.applied if applied_time(row) <= moment]
        return kept[-1] if kept else 0
    if params.version is not None:
        return parse_version(params.version)
    raise RollbackError("operation=revert needs one of checkpoint, version, label, count or date.")


def plan_revert(engine: Migrations, state: State, migrations: List[Migration], params: Params) -> tuple:
    """Return (target version, down steps newest first); refuse drift and irreversible crossings."""
    target = revert_target(state, params)
    if target > state.current:
        raise RollbackError("Cannot revert %s to version %d: it is at version %d. Use operation=apply to go forward."
                            % (params.conn.describe(), target, state.current))
    by_version = {m.version: m for m in migrations}
    rows = [row for row in reversed(state.applied) if int(row["version"]) > target]
    drifted, crossing, steps = [], [], []
    for row in rows:
        version = int(row["version"])
        migration = by_version.get(version)
        # a revert of this version failed and was rolled back: its down script may since have been fixed
        files = drift_of(row, migration, ("up",) if row.get("direction") == "down" else ("up", "down"))
        if files:
            drifted.append("V%04d__%s (%s)" % (version, row["name"], ", ".join(files)))
        body, why = down_body(row, migration)
        if body is None:
            crossing.append({"version": version, "name": row["name"], "why": why})
            continue
        transaction = wants_transaction(body)
        steps.append(Step("down", version, row["name"], body, engine.down_script(body, version, transaction),
                          transaction))
    if crossing:
        raise IrreversibleError(irreversible_message(crossing, params.conn, params, target, params.label),
                                irreversible=crossing)
    if drifted and not params.force:
        raise DriftError(
            "Checksum drift: %s changed since they were applied to %s. Nothing was run. The down scripts may no "
            "longer match what is in the database: check out the files as they were when applied (git checkout "
            "<tag> -- <migrations_dir>), or, if you are sure the changed down scripts are right, run again with "
            "force=true." % ("; ".join(drifted), params.conn.describe()), drift=drifted)
    return target, steps


def down_body(row: dict, migration: Optional[Migration]) -> tuple:
    """Return (down SQL or None, reason when None) for an applied migration."""
    if migration is not None and migration.marked_irreversible:
        return None, "marked %r in %s" % (IRREVERSIBLE_MARK, os.path.basename(migration.up_path))
    if migration is not None and migration.down_sql is not None:
        return migration.down_sql, ""
    if row.get("down_sql"):
        return row["down_sql"], ""  # the files are not in this checkout: the down script recorded at apply time
    if migration is None:
        return None, "no files in migrations_dir and no down script recorded when it was applied"
    return None, "no down script for %s" % os.path.basename(migration.up_path)
