"""A chain of 24 migrations on each engine, applied release by release and reverted to a tag, by
count, to a date and to zero; every revert must give back the schema captured when that version
was current, and the check-mode preview must be exactly what ran."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.deep]

RELEASES = [(4, "v1.0.0"), (9, "v1.1.0"), (15, "v1.2.0"), (24, "v2.0.0")]


CLIENT_DELIMITER = re.compile(r"^\s*DELIMITER\s", re.IGNORECASE)
CLIENT_MARK = re.compile(r"^\s*\$\$gr_end\d*\$\$\s*$")


def statements(scripts: list[str]) -> list[str]:
    """Split scripts into normalised statements (comment lines dropped, whitespace collapsed; the
    mariadb client's DELIMITER lines, which the server never sees, dropped, its delimiter read as ;)."""
    text = "\n".join(";" if CLIENT_MARK.match(line) else line for script in scripts for line in script.splitlines()
                     if not line.lstrip().startswith("--") and not CLIENT_DELIMITER.match(line))
    return [re.sub(r"\s+", " ", part).strip() for part in text.split(";") if part.strip()]


def pg_statements_by_backend(log_text: str) -> dict[str, list[str]]:
    """Statements PostgreSQL logged (log_statement=all), grouped by backend pid, in order."""
    by_pid: dict[str, list[str]] = {}
    entry = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \w+ \[(\d+)\] (\w+):  (.*)$")
    current = None
    for line in log_text.splitlines():
        match = entry.match(line)
        if match:
            current = None
            if match.group(2) == "LOG" and match.group(3).startswith("statement: "):
                current = by_pid.setdefault(match.group(1), [])
                current.append(match.group(3)[len("statement: "):])
        elif current is not None:
            current[-1] += "\n" + line
    return {pid: statements(items) for pid, items in by_pid.items()}


def my_statements_by_thread(target) -> dict[str, list[str]]:
    """Statements MariaDB's general log recorded, grouped by connection, in order."""
    out = target.sql("SELECT thread_id, REPLACE(REPLACE(CONVERT(argument USING utf8mb4), CHAR(10), ' '), CHAR(9), ' ') "
                     "FROM mysql.general_log WHERE command_type = 'Query' ORDER BY event_time")
    by_thread: dict[str, list[str]] = {}
    for line in out.splitlines():
        thread, _tab, text = line.partition("\t")
        by_thread.setdefault(thread, []).extend(statements([text.replace("\\\\", "\\")]))
    return by_thread


def start_statement_log(target) -> int:
    """Make the server log every statement of the target database; return the log offset."""
    if target.engine == "postgresql":
        target.server.psql("ALTER DATABASE %s SET log_statement = 'all'" % target.conn["database"])
        return target.server.log.stat().st_size
    if target.engine == "mysql":
        target.server.sql("SET GLOBAL log_output = 'TABLE'; TRUNCATE mysql.general_log; SET GLOBAL general_log = 'ON'")
    return 0


def logged_runs(target, offset: int) -> list[list[str]]:
    """Per connection, the statements the server executed since ``offset``."""
    if target.engine == "postgresql":
        with open(target.server.log, "rb") as handle:
            handle.seek(offset)
            return list(pg_statements_by_backend(handle.read().decode("utf-8", "replace")).values())
    target.server.sql("SET GLOBAL general_log = 'OFF'")
    return list(my_statements_by_thread(target).values())


def next_whole_second() -> str:
    """Wait for the next whole second of the clock (the servers' too: same machine); return it as a date a
    user types (no fraction). Everything applied before the call is at or before it, everything after, later."""
    moment = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    while datetime.now(timezone.utc) <= moment:
        time.sleep(max((moment - datetime.now(timezone.utc)).total_seconds(), 0) + 0.01)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_chain_revert_to_tag_count_date_and_zero(target, migrate, write_chain, tmp_path: Path) -> None:
    migrations = write_chain(tmp_path / "migrations", target.engine, 24)
    snapshots = {0: target.schema()}
    moments = {}
    for version, tag in RELEASES:
        ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations), version=str(version),
                               label=tag, job_id="awx-77")
        assert ok, run
        assert res["changed"] and res["version"] == version
        snapshots[version] = target.schema()
        if version == 4:  # the date revert's moment: a whole second after v1.0.0 was applied, before v1.1.0 is
            moments[version] = next_whole_second()
    assert len({snapshots[v] for v in snapshots}) == len(snapshots), "each release must change the schema"

    ok, res, run = migrate(target, operation="status", migrations_dir=str(migrations))
    assert ok, run
    assert res["version"] == 24 and res["pending"] == [] and res["dirty"] == []
    assert [(e["label"], e["version"]) for e in res["labels"]] == [(t, v) for v, t in RELEASES]
    first = res["history"][0]
    assert first["job_id"] == "awx-77" and first["label"] == "v1.0.0" and "@" in first["applied_by"]
    assert len(first["checksum"]) == 64 and first["duration_ms"] is not None

    # Check mode: the preview, and nothing changes.
    ok, preview, run = migrate(target, check=True, operation="revert", migrations_dir=str(migrations), label="v1.1.0")
    assert ok, run
    assert preview["changed"] and [m["version"] for m in preview["migrations"]] == list(range(24, 9, -1))
    assert target.schema() == snapshots[24]
    assert target.history()[-1] == (24, "applied")

    offset = start_statement_log(target)
    ok, res, run = migrate(target, operation="revert", migrations_dir=str(migrations), label="v1.1.0")
    assert ok, run
    assert res["version"] == 9
    assert target.schema() == snapshots[9], "schema after revert to v1.1.0 differs from the one captured at v1.1.0"
    assert res["sql"] == preview["sql"], "what ran differs from the check-mode preview"
    if target.engine in ("postgresql", "mysql"):
        expected = statements(preview["sql"])
        runs = logged_runs(target, offset)
        assert expected in runs, "no server session executed exactly the preview's statements:\n%s\n%s" % (
            expected[:6], [r[:4] for r in runs])

    ok, res, run = migrate(target, operation="revert", migrations_dir=str(migrations), count=5)
    assert ok, run
    assert res["version"] == 4 and target.schema() == snapshots[4]

    ok, res, run = migrate(target, operation="apply", migrations_dir=str(migrations), version="15")
    assert ok and res["version"] == 15, run
    assert target.schema() == snapshots[15]

    # Revert to the moment just after v1.0.0 (version 4) was applied: everything later goes,
    # including migrations re-applied since.
    ok, res, run = migrate(target, operation="revert", migrations_dir=str(migrations), date=moments[4])
    assert ok, run
    assert res["version"] == 4 and target.schema() == snapshots[4]

    ok, res, run = migrate(target, operation="revert", migrations_dir=str(migrations), version="0")
    assert ok, run
    assert res["version"] == 0 and target.schema() == snapshots[0] and target.history() == []

    ok, res, run = migrate(target, operation="revert", migrations_dir=str(migrations), version="0")
    assert ok and not res["changed"], run
