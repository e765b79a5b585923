"""Helpers of the kill tests of the database and infrastructure layers.

The engine runs in a child Python in its own session, so a SIGKILL to the process group
also kills the clients it started (psql, pg_restore, the Terraform worker): nothing of the
killed run goes on behind the test's back, as after a power cut of the control process.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

import psycopg2

from harness import MariaDbServer, PgServer


def start_engine(collections_path: Path, code: str, *args: str,
                 env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """Start Python ``code`` that imports the engine, as the leader of a new process group."""
    env = dict(os.environ, **(env or {}), PYTHONPATH=str(collections_path))
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for an unkilled engine run; fail with its stderr unless it printed ``done``."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0 and b"done" in out, err.decode("utf-8", "replace")[-3000:]
    return out.decode("utf-8")


def kill_group_after(proc: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL ``proc`` and every process of its group after ``seconds``; True when it was still running."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    killed = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # also children that outlived a finished leader
    except ProcessLookupError:
        pass
    proc.communicate()
    return killed


def timed(proc: subprocess.Popen) -> float:
    """Run an engine child to completion; return its wall time in seconds."""
    started = time.monotonic()
    finish(proc)
    return time.monotonic() - started


def kill_points(seed: int, count: int, duration: float, tail: int = 0) -> List[float]:
    """``count`` seeded delays over an unkilled run of ``duration`` seconds, one per stratum; the last
    ``tail`` of them fall in its final fifth, where the short commit steps (rename, push) happen."""
    rng = random.Random(seed)
    width = duration / (count - tail)
    points = [rng.uniform(index * width, (index + 1) * width) for index in range(count - tail)]
    points += [rng.uniform(0.8 * duration, duration) for _index in range(tail)]
    return [round(point, 3) for point in points]


class Tally:
    """Where each kill landed, printed at the end of a test (run pytest with -s or -rA to see it)."""

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.rows: List[tuple] = []

    def add(self, delay: float, killed: bool, phase: str) -> None:
        """Record one kill point and the phase the layer was found in afterwards."""
        self.rows.append((delay, killed, phase))
        print("KILL %s at %.3fs killed=%s -> %s" % (self.layer, delay, killed, phase))

    def summary(self) -> Dict[str, Any]:
        """Counts per phase; assert at least one run was really killed."""
        phases = Counter(phase for _delay, _killed, phase in self.rows)
        killed = sum(1 for row in self.rows if row[1])
        print("KILL-SUMMARY %s points=%d killed=%d %s" % (self.layer, len(self.rows), killed, dict(phases)))
        assert killed, "no run was killed: the test proves nothing"
        return dict(phases)


# ------------------------------------------------------------------------------ PostgreSQL
# The checks read the server in this process (psycopg2, one short session per check) rather than through
# a psql process per query: a kill test checks the database several times per kill point.
def pg_ident(name: str) -> str:
    """Quote a PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def pg_query(pg: PgServer, sql: str, db: str = "postgres", args: tuple = ()) -> List[tuple]:
    """The rows of one statement, as the superuser on ``db`` (autocommit: also CREATE/DROP DATABASE)."""
    conn = psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname=db, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, args or None)
            return cur.fetchall() if cur.description is not None else []
    finally:
        conn.close()


def pg_settle(pg: PgServer, timeout: float = 60) -> None:
    """Wait until the server has finished the statements of killed clients (it notices them late)."""
    deadline = time.monotonic() + timeout
    while pg_query(pg, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                       "AND pid <> pg_backend_pid()")[0][0] != 0:
        assert time.monotonic() < deadline, "sessions of the killed run never ended"
        time.sleep(0.05)


def pg_fingerprint(pg: PgServer, db: str) -> Optional[Dict[str, str]]:
    """{table: sha256 of every row's text, ordered}, or None when ``db`` does not exist.

    Row by row: two databases have equal fingerprints only when every table holds exactly the
    same rows.
    """
    pg_settle(pg)
    if not pg_query(pg, "SELECT 1 FROM pg_database WHERE datname = %s", args=(db,)):
        return None
    conn = psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname=db, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN "
                        "('pg_catalog', 'information_schema') ORDER BY 1")
            tables = [row[0] for row in cur.fetchall()]
            found = {}
            for table in tables:
                cur.execute("SELECT t::text FROM %s t ORDER BY t::text COLLATE \"C\"" % table)
                rows = "\n".join(row[0] for row in cur.fetchall())
                found[table] = hashlib.sha256(rows.encode("utf-8")).hexdigest()
    finally:
        conn.close()
    return found


def pg_databases(pg: PgServer, prefix: str) -> List[str]:
    """Names of databases starting with ``prefix``."""
    return [row[0] for row in pg_query(pg, "SELECT datname FROM pg_database WHERE starts_with(datname, %s) "
                                           "ORDER BY 1", args=(prefix,))]


def pg_drop_database(pg: PgServer, name: str) -> None:
    """Drop ``name`` if it exists, ending its sessions."""
    pg_query(pg, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % pg_ident(name))


def pg_copy_database(pg: PgServer, source: str, target: str) -> None:
    """Replace ``target`` by a copy of ``source`` (CREATE DATABASE ... TEMPLATE)."""
    pg_drop_database(pg, target)
    pg_query(pg, "CREATE DATABASE %s TEMPLATE %s" % (pg_ident(target), pg_ident(source)))


def phase_of(now: Any, old: Any, new: Any) -> str:
    """``old`` or ``new`` when ``now`` equals one of them, else a failure naming what was found."""
    if now == old:
        return "old"
    if now == new:
        return "new"
    raise AssertionError("half state after a kill: neither the old nor the new content (%r)"
                         % (now if not isinstance(now, dict) else {k: v[:12] for k, v in now.items()}))


# ------------------------------------------------------------------------------ MariaDB
class MariaDbPoll:
    """One mariadb client session answering one-row queries in turn: a polling loop that waits for the
    server to reach a state costs one client process, not one per poll."""

    def __init__(self, server: MariaDbServer) -> None:
        self.proc = subprocess.Popen(["mariadb", *server.client_args(), "-N", "-B", "--unbuffered"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={"MYSQL_PWD": server.password, "PATH": "/usr/bin:/bin"})

    def value(self, sql: str) -> str:
        """The one row ``sql`` returns."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(" ".join(sql.split()).rstrip(";") + ";\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the polling session ended: %s" % self.proc.communicate()[1]
        return line.rstrip("\n")

    def close(self) -> None:
        """End the session (also when the server is gone)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()

    def __enter__(self) -> "MariaDbPoll":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
