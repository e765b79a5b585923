# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Versioned SQL migrations: read the directory, plan apply/revert (``db.migrate_plan``), refuse unsafe plans, run them.

The directory is read in one of the layouts of ``db.migrate_layouts`` (this collection's
``V<version>__<name>.up.sql``/``.down.sql``, golang-migrate, dbmate, Flyway; see docs/migrations.md).
A migration is irreversible when it has no down script or its up script's leading comments say
``-- gitops-rollback: irreversible``. The engines' migration sides (``db.migrations``) turn each step into one
script; the list of scripts is the preview in check mode and exactly what runs otherwise.
"""

from __future__ import annotations

import difflib
import time
from typing import List, Optional

from .engines import make_engine
from .migrations import MigrationFailed, Migrations, State, read_state
from ..common.errors import RollbackError
from ..common.labels import escape
from .migrate_layouts import Folder, Migration, flyway_key, read_folder, wants_transaction
from .migrate_plan import (OPERATIONS, DriftError, NotReversibleError, Params, Step, check_order, default_applied_by,
                           drift_report, parse_version, plan_apply, plan_revert, refuse_dirty, row_for)


# ----------------------------------------------------------------------------- verify_reversible
def verify_reversible(engine: Migrations, migrations: List[Migration], params: Params) -> List[dict]:
    """Apply up, down, up of each migration on a scratch copy; refuse a down that fails or differs."""
    scratch = engine.scratch_copy()
    report = []
    try:
        scratch.ensure_schema()
        for migration in migrations:
            row = row_for(migration, params)
            before = scratch.catalogue()
            up_tx = wants_transaction(migration.up_sql)
            _verify_run(scratch, migration, "up", engine.up_script(migration.up_sql, row, up_tx))
            after_up = scratch.catalogue()
            if migration.irreversible:
                report.append({"version": migration.version, "name": migration.name, "reversible": False,
                               "checked": "up only (irreversible)"})
                continue
            _verify_run(scratch, migration, "down", scratch.down_script(
                migration.down_sql or "", migration.version, wants_transaction(migration.down_sql)))
            _same(before, scratch.catalogue(), migration, "after up then down, the schema differs from before up")
            _verify_run(scratch, migration, "up again", scratch.up_script(migration.up_sql, row, up_tx))
            _same(after_up, scratch.catalogue(), migration, "after up, down, up, the schema differs from the first up")
            report.append({"version": migration.version, "name": migration.name, "reversible": True,
                           "checked": "up, down, up"})
    finally:
        scratch.close()
        scratch.drop()
    return report


def _verify_run(scratch: Migrations, migration: Migration, step: str, script: str) -> None:
    try:
        scratch.run_scripts([script])
    except MigrationFailed as exc:
        raise NotReversibleError("verify_reversible: %s of %s failed on a scratch copy (the real database was not "
                                 "touched): %s. Fix the script before deploying." % (step, migration.label, exc)) from exc


def _same(expected: str, actual: str, migration: Migration, what: str) -> None:
    if expected == actual:
        return
    diff = list(difflib.unified_diff(expected.splitlines(), actual.splitlines(), "expected", "actual", lineterm="", n=1))
    raise NotReversibleError("verify_reversible: %s: %s (schema diff on a scratch copy; the real database was not "
                             "touched):\n%s\nMake the down script undo exactly what the up script does."
                             % (migration.label, what, "\n".join(diff[:40])), diff=diff)


# ----------------------------------------------------------------------------- operations
def run_operation(params: Params) -> dict:
    """Carry out one db_migrate operation and return the module result."""
    if params.operation not in OPERATIONS:
        raise RollbackError("Unknown operation %r (choose from %s)." % (params.operation, ", ".join(OPERATIONS)))
    folder = read_folder(params.migrations_dir, params.layout) if params.migrations_dir else Folder("none")
    migrations = folder.migrations
    if params.version is not None and "flyway" in (folder.layout, params.layout):
        params.version = str(flyway_key(str(params.version), "version: "))  # 1.2 -> the number it is recorded by
    if params.operation in ("apply", "revert", "verify", "baseline", "repair") and not params.migrations_dir:
        raise RollbackError("operation=%s needs migrations_dir." % params.operation)
    engine = make_engine(params.conn).migrations()
    writes = not params.check_mode and params.operation not in ("status", "verify")
    started = time.monotonic()
    if writes:
        engine.acquire_lock(params.owner or default_applied_by(), params.lock_ttl, params.lock_timeout)
    try:
        state = read_state(engine, create=writes)
        result = _dispatch(engine, state, migrations, params)
        if engine.recovered:
            result["lock_recovered"] = {k: engine.recovered.get(k) for k in ("owner", "host", "pid", "expires_at")}
        if params.migrations_dir:
            result["layout"] = folder.layout
            result["ignored"] = folder.ignored
            if folder.ignored:
                result.setdefault("warnings", []).extend(folder.ignored)
    finally:
        if writes:
            engine.release_lock()
        engine.close()
    result["duration_s"] = round(time.monotonic() - started, 3)
    return result


def _dispatch(engine: Migrations, state: State, migrations: List[Migration], params: Params) -> dict:
    if params.operation == "status":
        return status(state, migrations, params)
    if params.operation == "resolve":
        return resolve(engine, state, params)
    refuse_dirty(state, params.conn)
    if params.operation == "label":
        return record_label(engine, state, params)
    if params.operation == "verify":
        pending = check_order(state, migrations, parse_version(params.version) if params.version else 1 << 62)
        report = verify_reversible(engine, pending, params)
        return {"changed": False, "operation": "verify", "verified": report, "version": state.current}
    if params.operation == "apply":
        return apply(engine, state, migrations, params)
    if params.operation == "baseline":
        return baseline(engine, state, migrations, params)
    if params.operation == "repair":
        return repair(engine, state, migrations, params)
    return revert(engine, state, migrations, params)


def _execute(engine: Migrations, steps: List[Step], params: Params) -> Optional[State]:
    """Run the steps' scripts (not in check mode) and return the state read afterwards."""
    if params.check_mode or not steps:
        return None
    try:
        engine.run_scripts([step.script for step in steps])
    except MigrationFailed as exc:
        after = read_state(engine, create=False)
        done = [s for s in steps if _step_done(s, after)]
        failed = steps[len(done)] if len(done) < len(steps) else None
        if failed is not None and failed.direction == "down" and not after.dirty:
            engine.run_scripts([engine.failed_down_script(failed.version)])  # a fixed down file is then accepted
        rolled_back = failed is not None and failed.transaction and engine.kind != "mysql"
        raise MigrationFailed(
            "%s %s of %s failed%s. %s The database is now at version %d (%d of %d steps done before it). %s"
            % ("Applying" if steps[0].direction == "up" else "Reverting",
               "V%04d__%s" % (failed.version, failed.name) if failed else "a migration", params.conn.describe(),
               " and was rolled back" if rolled_back else "", exc, after.current, len(done), len(steps),
               "Run operation=status for the dirty version and the recovery steps." if after.dirty else
               "Fix the script and run again."),
            done=[s.summary() for s in done]) from exc
    return read_state(engine, create=False)


def _step_done(step: Step, state: State) -> bool:
    versions = {int(row["version"]): row["state"] for row in state.history}
    if step.direction == "up":
        return versions.get(step.version) == "applied"
    return step.version not in versions


def _result(operation: str, before: State, after: Optional[State], steps: List[Step], target: int,
            params: Params, **extra: object) -> dict:
    version_after = after.current if after else target
    result = {
        "changed": bool(steps),
        "operation": operation,
        "version_before": before.current,
        "version": version_after if steps else before.current,
        "target_version": target,
        "migrations": [step.summary() for step in steps],
        "sql": [step.script for step in steps],
        "diff": {"before": "version: %d\n" % before.current, "after": "version: %d\n" % target},
    }
    result.update(extra)
    return result


def apply(engine: Migrations, state: State, migrations: List[Migration], params: Params) -> dict:
    """Apply pending migrations up to the target, verify them first when asked, record the label."""
    steps = plan_apply(engine, state, migrations, params)
    verified = verify_reversible(engine, [m for m in migrations if m.version in {s.version for s in steps}], params) \
        if params.verify_reversible and steps else []
    target = steps[-1].version if steps else state.current
    label_step = []
    if params.label and state.label_version(params.label) != target:
        label_step = [engine.label_script(params.label, target, params.applied_by or default_applied_by())]
    drift = drift_report(state, migrations)
    if drift and not params.allow_drift:
        raise DriftError(
            "Checksum drift: %s changed since they were applied to %s. Nothing was run. An applied migration must "
            "not change: the database does not have what the changed file says. Check out the files as they were "
            "applied (git checkout <tag> -- <migrations_dir>); or, after reviewing the change, accept it with "
            "operation=repair (recorded in the history); or apply the pending migrations anyway with "
            "allow_drift=true." % (_drift_text(drift), params.conn.describe()), drift=drift)
    after = _execute(engine, steps, params)
    if label_step and not params.check_mode:
        engine.run_scripts(label_step)
    result = _result("apply", state, after, steps, target, params, verified=verified, drift=drift)
    result["sql"] += label_step
    result["changed"] = bool(steps or label_step)
    if drift:
        result["warnings"] = ["Applied migrations changed since they were applied: %s (allow_drift=true). A revert "
                              "will refuse them unless force=true; accept reviewed changes with operation=repair."
                              % _drift_text(drift)]
    return result


def _drift_text(drift: List[dict]) -> str:
    return "; ".join("V%04d__%s (%s)" % (d["version"], d["name"], ", ".join(d["files"])) for d in drift)


def baseline(engine: Migrations, state: State, migrations: List[Migration], params: Params) -> dict:
    """Record the migrations up to ``version`` as applied without running them (adopt a database)."""
    if params.version is None:
        raise RollbackError("operation=baseline needs version: the migration the database's schema already has.")
    target = parse_version(params.version)
    if state.history:
        raise RollbackError(
            "%s already has a migration history (version %d); baseline adopts a database that has none. Use "
            "operation=status to see it, and apply or revert from there." % (params.conn.describe(), state.current))
    if target not in {m.version for m in migrations}:
        have = ", ".join(str(m.version) for m in migrations) or "none"
        raise RollbackError("Version %d is not in %s (have %s): baseline records the migrations up to a version of "
                            "the directory." % (target, params.migrations_dir, have))
    adopted = [m for m in migrations if m.version <= target]
    scripts = [engine.baseline_script(row_for(m, params)) for m in adopted]
    if params.label:
        scripts.append(engine.label_script(params.label, target, params.applied_by or default_applied_by()))
    if not params.check_mode:
        engine.run_scripts(scripts)
    return {"changed": True, "operation": "baseline", "version_before": 0, "version": target, "target_version": target,
            "baselined": [{"version": m.version, "name": m.name} for m in adopted], "sql": scripts,
            "diff": {"before": "version: 0\n", "after": "version: %d\n" % target}}


def repair(engine: Migrations, state: State, migrations: List[Migration], params: Params) -> dict:
    """Accept the current files of drifted applied migrations (all, or ``version``) after review."""
    wanted = parse_version(params.version) if params.version is not None else None
    if wanted is not None and wanted not in {int(row["version"]) for row in state.applied}:
        raise RollbackError("Version %d is not applied to %s; repair accepts changed files of applied migrations."
                            % (wanted, params.conn.describe()))
    drift = [d for d in drift_report(state, migrations) if wanted is None or d["version"] == wanted]
    by_version = {m.version: m for m in migrations}
    recorded = {int(row["version"]): row for row in state.history}
    scripts, repaired = [], []
    for found in drift:
        row = row_for(by_version[found["version"]], params)
        before = recorded[found["version"]]
        scripts.append(engine.repair_script(row, before))
        repaired.append(dict(found, checksum_before=before.get("checksum"), checksum_after=row.checksum,
                             down_checksum_before=before.get("down_checksum"), down_checksum_after=row.down_checksum,
                             repaired_by=row.applied_by))
    if scripts and not params.check_mode:
        engine.run_scripts(scripts)
    return {"changed": bool(scripts), "operation": "repair", "version": state.current, "repaired": repaired,
            "sql": scripts}


def revert(engine: Migrations, state: State, migrations: List[Migration], params: Params) -> dict:
    """Revert to a version, label, count or date."""
    target, steps = plan_revert(engine, state, migrations, params)
    after = _execute(engine, steps, params)
    return _result("revert", state, after, steps, target, params)


def record_label(engine: Migrations, state: State, params: Params) -> dict:
    """Record ``label`` (a Git tag) for the current version."""
    if not params.label:
        raise RollbackError("operation=label needs label (the Git tag of the release now deployed).")
    existing = state.label_version(params.label)
    target = parse_version(params.version) if params.version else state.current
    if existing == target:
        return {"changed": False, "operation": "label", "label": params.label, "version": target, "sql": []}
    if existing is not None and not params.force:
        raise RollbackError("Label %s already names version %d of %s; a tag names one release. Use another label or "
                            "force=true to move it to version %d." % (escape(params.label), existing, params.conn.describe(),
                                                                      target))
    script = engine.label_script(params.label, target, params.applied_by or default_applied_by())
    if not params.check_mode:
        engine.run_scripts([script])
    return {"changed": True, "operation": "label", "label": params.label, "version": target, "sql": [script],
            "diff": {"before": "%s: %s\n" % (params.label, existing), "after": "%s: %d\n" % (params.label, target)}}


def resolve(engine: Migrations, state: State, params: Params) -> dict:
    """Mark a dirty version applied or reverted after fixing it by hand."""
    if params.version is None or params.resolve_as is None:
        raise RollbackError("operation=resolve needs version and resolve_as (applied or reverted).")
    version = parse_version(params.version)
    row = next((r for r in state.dirty if int(r["version"]) == version), None)
    if row is None:
        clean = any(int(r["version"]) == version for r in state.history)
        return {"changed": False, "operation": "resolve", "version": state.current, "sql": [],
                "msg": "Version %d is %s; nothing to resolve." % (version, "applied" if clean else "not recorded")}
    script = engine.resolve_script(version, params.resolve_as)
    if not params.check_mode:
        engine.run_scripts([script])
    return {"changed": True, "operation": "resolve", "version": version, "resolved_as": params.resolve_as,
            "sql": [script]}


def status(state: State, migrations: List[Migration], params: Params) -> dict:
    """Return applied, pending, dirty and drifted migrations and the labels."""
    applied = {int(row["version"]) for row in state.history}
    history = [{k: v for k, v in row.items() if k != "down_sql"} for row in state.history]
    return {
        "changed": False, "operation": "status", "version": state.current, "history": history,
        "labels": state.labels, "dirty": [int(r["version"]) for r in state.dirty],
        "pending": [{"version": m.version, "name": m.name, "irreversible": m.irreversible}
                    for m in migrations if m.version not in applied],
        "drift": drift_report(state, migrations), "sql": [],
    }
