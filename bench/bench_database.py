# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database backup/restore: the db_backup and db_restore modules against the raw clients.

A database of random bytes (1 GB, 64 MB when quick) is built in throwaway PostgreSQL and
MariaDB servers. Each figure runs the module (as Ansible runs it on a host: a Python process
with its JSON arguments, no controller overhead) and the raw client with the same format and
jobs on the same data, back to back in ``ROUNDS`` rounds (default 3; which side goes first
alternates). A figure is the round with the median ratio; its name gives the spread of ratios.

The module does more than the raw client, and the figures include it all:

* backup: checks the server and database first, hashes the dump into the store as it is
  written, checks it (``pg_restore --list`` / the end marker), records the exact row count of
  every table (PostgreSQL: a session counting in the dump's exported snapshot; MariaDB: read
  from the dump stream itself), and writes the checkpoint manifest;
* restore: re-hashes every object of the backup before anything is touched (it must not feed
  unverified SQL to the server), checks the archive, takes the restore lock, creates the
  database, restores, then counts every table's rows and compares them with the recorded ones.

Safety backups are off (the target database does not exist, as for the raw restore).

A MariaDB backup round runs five sides (the one going first rotates; a restore round three):

* the module;
* the raw client;
* the raw client followed by ``sha256sum`` and an fsync of its file: what a user runs by hand to
  get the durable, checksummed dump the module records (for information);
* the raw client (plain, as the second side) with one SHA-256 pass over a dump of the same size
  running beside it in another process: the least the module adds (for information, against the
  module and against the raw client alone: how much of the gap that hashing makes by itself);
* the raw client driven the way the module drives it (for information): mariadb-dump with a 64 KB
  stdout buffer (``stdbuf -o 64K``; glibc's default for a file is 4 KB, one write() per 4 KB),
  and in the restore mariadb parsing the dump as ``binary`` (the module's dumps are UTF-8, so the
  statements found are the same, without decoding every character).

The gap between the module and those tuned runs is what the module itself adds. Each side removes
its own output of the last round right before its backup (untimed; an untimed backup of each side
before round 0 gives round 0 one too), so that each writes its dump into memory it has just freed:
removing all outputs at the end of a round handed that memory to whichever side went first in the
next one, and the other side then faulted in memory the VM had given back to its host (free page
reporting), which cost it up to a second or more.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness import start_mariadb, start_postgres  # noqa: E402  pylint: disable=wrong-import-position

ROW_BYTES = 4096
ROUNDS = int(os.environ.get("GITOPS_ROLLBACK_BENCH_DB_ROUNDS") or 3)


def timed(action: Callable[[], None]) -> float:
    """Return the seconds ``action`` took."""
    started = time.monotonic()
    action()
    return time.monotonic() - started


def collections_base(workdir: Path) -> Path:
    """Return a directory under which this checkout is ansible_collections/gitops/rollback."""
    base = workdir / "collections"
    link = base / "ansible_collections" / "gitops" / "rollback"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    return base


def run_module(workdir: Path, name: str, args: dict) -> dict:
    """Run a module the way Ansible runs it on a host; return its JSON result (raise on failure)."""
    args_file = workdir / ("%s-args.json" % name)
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    module = ROOT / "plugins" / "modules" / ("%s.py" % name)
    env = dict(os.environ, PYTHONPATH=str(collections_base(workdir)))
    done = subprocess.run([sys.executable, str(module), str(args_file)], capture_output=True, text=True, env=env,
                          check=False)
    try:
        result = json.loads(done.stdout)
    except ValueError as exc:
        raise RuntimeError("%s crashed: %s%s" % (name, done.stdout[-2000:], done.stderr[-2000:])) from exc
    if result.get("failed"):
        raise RuntimeError("%s failed: %s" % (name, result.get("msg")))
    return result


def sh(argv: List[str], env: dict = None, stdin=None, stdout=None) -> None:
    """Run a command, raising on failure."""
    subprocess.run(argv, check=True, env=dict(os.environ, **(env or {})), stdin=stdin,
                   stdout=stdout if stdout is not None else subprocess.DEVNULL)


def pair(round_no: int, ours: Callable[[], None], raw: Callable[[], None]) -> tuple:
    """Time ours and raw, raw first in even rounds and ours first in odd ones (the second run of a
    pair pays for the server's background flushing of the first); return (ours_s, raw_s)."""
    if round_no % 2:
        ours_s = timed(ours)
        return ours_s, timed(raw)
    raw_s = timed(raw)
    return timed(ours), raw_s


def figure(name: str, pairs: List[tuple], baseline: str, target: Optional[float] = 1.10) -> dict:
    """Return the figure of the round with the median ratio, naming the spread of the ratios
    (``target`` None: a figure for information, with no verdict)."""
    ranked = sorted(pairs, key=lambda p: p[0] / p[1])
    ours, raw = ranked[(len(ranked) - 1) // 2]
    ratios = [p[0] / p[1] for p in ranked]
    spread = " (%d rounds: %.2f-%.2fx)" % (len(ratios), ratios[0], ratios[-1]) if len(ratios) > 1 else ""
    return {"name": name + spread, "ours_s": ours, "baseline": baseline, "baseline_s": raw, "target": target,
            "rounds": [{"ours_s": round(p[0], 3), "baseline_s": round(p[1], 3)} for p in pairs]}


# ------------------------------------------------------------------------------------ PostgreSQL
def pg_figures(workdir: Path, rows: int, size_label: str) -> List[dict]:
    """Backup and restore figures for PostgreSQL custom (1 job) and directory (2 jobs) formats."""
    pg = start_postgres(workdir / "pg")
    try:
        pg.create_database("bench")
        pg.psql("CREATE EXTENSION pgcrypto; CREATE TABLE blob (id int PRIMARY KEY, data bytea); "
                "ALTER TABLE blob ALTER COLUMN data SET STORAGE EXTERNAL; "
                "INSERT INTO blob SELECT g, gen_random_bytes(1024) || gen_random_bytes(1024) || "
                "gen_random_bytes(1024) || gen_random_bytes(1024) FROM generate_series(1, %d) g; "
                "ANALYZE blob" % rows, db="bench")
        conn = {"engine": "postgresql", "login_host": pg.host, "login_port": pg.port, "login_user": pg.user,
                "client_bin_dir": str(pg.bin_dir)}
        env = {"PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.user}
        figures = []
        for fmt, jobs in (("custom", 1), ("directory", 2)):
            flag = {"custom": "c", "directory": "d"}[fmt]
            jobs_args = ["--jobs=%d" % jobs] if jobs > 1 else []
            dumps, loads = [], []
            for round_no in range(ROUNDS):
                store = workdir / ("pgstore-%s-%d" % (fmt, round_no))
                raw_out = workdir / ("raw-%s-%d" % (fmt, round_no))
                dumps.append(pair(
                    round_no,
                    lambda: run_module(workdir, "db_backup", dict(
                        conn, database="bench", store_path=str(store), checkpoint="bench", format=fmt, jobs=jobs)),
                    lambda: sh([pg.bin("pg_dump"), "-F" + flag, *jobs_args, "-f", str(raw_out), "bench"], env)))
                loads.append(pair(
                    round_no,
                    lambda: run_module(workdir, "db_restore", dict(
                        conn, database="ours_target", source_database="bench", store_path=str(store),
                        checkpoint="bench", jobs=jobs, safety_backup=False)),
                    lambda: (sh([pg.bin("createdb"), "raw_target"], env),
                             sh([pg.bin("pg_restore"), "--exit-on-error", *(jobs_args or ["--single-transaction"]),
                                 "-d", "raw_target", str(raw_out)], env))))
                pg.drop_database("raw_target")
                pg.drop_database("ours_target")
                sh(["rm", "-rf", str(raw_out), str(store)])
            figures.append(figure("PostgreSQL backup %s, %s jobs=%d" % (size_label, fmt, jobs), dumps,
                                  "pg_dump -F%s" % flag))
            figures.append(figure("PostgreSQL restore %s, %s jobs=%d" % (size_label, fmt, jobs), loads,
                                  "createdb + pg_restore"))
        return figures
    finally:
        pg.stop()


# --------------------------------------------------------------------------------------- MariaDB
DUMP_OPTIONS = ["--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob",
                "--default-character-set=utf8mb4", "--add-drop-table", "--skip-add-locks"]


def tuned_dump_prefix() -> List[str]:
    """The launcher db_backup puts before mariadb-dump: a 64 KB stdout buffer (stdbuf), where available."""
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-o", "64K"] if stdbuf else []


# One SHA-256 pass over a file with OpenSSL's SHA-256 through hashlib, as the module hashes: the
# hashing a side runs beside the raw client (``raw_dump(beside=...)``).
HASH_ONCE = ("import hashlib, sys\n"
             "digest, chunk = hashlib.sha256(), bytearray(1 << 20)\n"
             "with open(sys.argv[1], 'rb', buffering=0) as source:\n"
             "    for length in iter(lambda: source.readinto(chunk), 0):\n"
             "        digest.update(memoryview(chunk)[:length])\n")


def raw_dump(client: List[str], env: dict, out_path: Path, unsynced: List[float], prefix: List[str] = (),
             beside: Optional[Path] = None, check: bool = False) -> None:
    """mariadb-dump with the options db_backup uses, into a file, then fsync the file.

    The time before the fsync is appended to ``unsynced``. The module makes its dump durable before
    it records it; the fsync keeps the raw dump's dirty pages from being flushed by the module's
    sync when the module runs next. ``prefix`` runs the client through a launcher (stdbuf).
    ``beside``: another process (nice 10) makes one SHA-256 pass over that file (a dump of the
    same size, in the page cache while the machine has the memory for every side's output) while
    the client runs, and the time counted is until both are done: the least the module adds to
    the raw client, with no reading of a growing file, row counting, sync or start-up.
    ``check``: ``sha256sum`` of the dump after it, what a user runs by hand for a checksum.
    """
    started = time.monotonic()
    hasher = subprocess.Popen(["nice", "-n", "10", sys.executable, "-c", HASH_ONCE, str(beside)]) if beside else None
    try:
        with open(out_path, "wb") as out:
            sh([*prefix, "mariadb-dump", *client, *DUMP_OPTIONS, "bench"], env, stdout=out)
            if hasher is not None and hasher.wait() != 0:
                raise RuntimeError("the SHA-256 pass over %s failed" % beside)
            if check:
                sh(["sha256sum", str(out_path)], env)
            unsynced.append(time.monotonic() - started)
            os.fsync(out.fileno())
    finally:
        if hasher is not None and hasher.poll() is None:
            hasher.kill()
            hasher.wait()


def raw_load(server, client: List[str], env: dict, dump_path: Path, target: str, options: List[str] = ()) -> None:
    """Create the target database and load a dump into it with the mariadb client."""
    server.create_database(target)
    with open(dump_path, "rb") as source:
        sh(["mariadb", *client, *options, target], env, stdin=source)


def rotate(round_no: int, runs: Dict[str, Tuple[Optional[Path], Callable[[], None]]]) -> Dict[str, float]:
    """Time each run, the side going first changing from round to round; return {name: seconds}.

    A run is (its output of the last round, to remove untimed right before it; the action).
    Each side thus writes its 2 GB dump into memory it has just freed. Removing every output at
    the end of a round instead hands the freed memory to whichever side runs first in the next
    round: on this VM, memory left free for a few seconds goes back to the host (free page
    reporting), and writing a file into it again costs up to seconds of page faults.
    """
    names = list(runs)
    start = round_no % len(names)
    seconds = {}
    for name in names[start:] + names[:start]:
        previous, action = runs[name]
        if previous is not None:
            sh(["rm", "-rf", str(previous)])
        seconds[name] = timed(action)
    return seconds


def mariadb_figures(workdir: Path, rows: int, size_label: str) -> List[dict]:
    """Backup and restore figures for MariaDB SQL dumps (uncompressed)."""
    my = start_mariadb(workdir / "my")
    try:
        my.create_database("bench")
        my.sql("CREATE TABLE payload (id INT PRIMARY KEY, data MEDIUMBLOB); INSERT INTO payload SELECT seq, "
               "CONCAT(RANDOM_BYTES(1024), RANDOM_BYTES(1024), RANDOM_BYTES(1024), RANDOM_BYTES(1024)) "
               "FROM seq_1_to_%d" % rows, db="bench")
        conn = {"engine": "mysql", "login_host": my.host, "login_port": my.port, "login_user": my.user,
                "login_password": my.password}
        env = {"MYSQL_PWD": my.password}
        client = ["--no-defaults", "--protocol=TCP", "-h", my.host, "-P", str(my.port), "-u", my.user]
        store, raw_out, tuned_out = workdir / "mystore", workdir / "raw-my.sql", workdir / "tuned-my.sql"
        checked_out, hashed_out = workdir / "checked-my.sql", workdir / "hashed-my.sql"
        dumps, loads = [], []
        unsynced: Dict[str, List[float]] = {"raw": [], "tuned": [], "hashed": []}

        def backups(times: Dict[str, List[float]]) -> dict:
            return {"ours": (store, lambda: run_module(workdir, "db_backup", dict(
                conn, database="bench", store_path=str(store), checkpoint="bench"))),
                "raw": (raw_out, lambda: raw_dump(client, env, raw_out, times["raw"])),
                "tuned": (tuned_out, lambda: raw_dump(client, env, tuned_out, times["tuned"], tuned_dump_prefix())),
                # its figure is rotate()'s time, fsync included: the time before the fsync is not kept
                "checked": (checked_out, lambda: raw_dump(client, env, checked_out, [], check=True)),
                "hashed": (hashed_out, lambda: raw_dump(client, env, hashed_out, times["hashed"], beside=tuned_out))}

        rotate(0, backups({name: [] for name in unsynced}))  # untimed: in round 0 too, every side has an output of its own to remove
        for round_no in range(ROUNDS):
            dumps.append(rotate(round_no, backups(unsynced)))
            loads.append(rotate(round_no, {
                "ours": (None, lambda: run_module(workdir, "db_restore", dict(
                    conn, database="ours_target", source_database="bench", store_path=str(store), checkpoint="bench",
                    safety_backup=False))),
                "raw": (None, lambda: raw_load(my, client, env, raw_out, "raw_target")),
                "tuned": (None, lambda: raw_load(my, client, env, tuned_out, "tuned_target",
                                                 ["--default-character-set=binary"]))}))
            for target in ("ours_target", "raw_target", "tuned_target"):
                my.drop_database(target)
        sh(["rm", "-rf", str(raw_out), str(tuned_out), str(checked_out), str(hashed_out), str(store)])
        ours = [times["ours"] for times in dumps]
        loaded = [times["ours"] for times in loads]
        return [
            figure("MariaDB backup %s, sql" % size_label, list(zip(ours, unsynced["raw"])), "mariadb-dump"),
            figure("MariaDB backup %s, sql, raw + fsync" % size_label, [(o, t["raw"]) for o, t in zip(ours, dumps)],
                   "mariadb-dump + fsync"),
            figure("MariaDB backup %s, sql, raw with one SHA-256 pass beside it" % size_label,
                   list(zip(ours, unsynced["hashed"])), "mariadb-dump + a concurrent SHA-256 pass", target=None),
            figure("MariaDB backup %s, no module: mariadb-dump with one SHA-256 pass beside it" % size_label,
                   list(zip(unsynced["hashed"], unsynced["raw"])), "mariadb-dump alone", target=None),
            figure("MariaDB backup %s, sql, raw + sha256sum + fsync" % size_label,
                   [(o, t["checked"]) for o, t in zip(ours, dumps)], "mariadb-dump + sha256sum + fsync", target=None),
            figure("MariaDB backup %s, sql, raw with a 64 KB stdout buffer" % size_label,
                   list(zip(ours, unsynced["tuned"])), "stdbuf -o 64K mariadb-dump", target=None),
            figure("MariaDB restore %s, sql" % size_label, [(o, t["raw"]) for o, t in zip(loaded, loads)],
                   "mariadb < dump"),
            figure("MariaDB restore %s, sql, raw parsing as binary" % size_label,
                   [(o, t["tuned"]) for o, t in zip(loaded, loads)], "mariadb --default-character-set=binary",
                   target=None),
        ]
    finally:
        my.stop()


def run(workdir: Path, quick: bool) -> List[dict]:
    """Return the database figures (1 GB of random bytes; 64 MB when quick).

    GITOPS_ROLLBACK_BENCH_DB_MB overrides the size, GITOPS_ROLLBACK_BENCH_DB_ENGINES (``postgresql,mysql``)
    the engines.
    """
    megabytes = int(os.environ.get("GITOPS_ROLLBACK_BENCH_DB_MB") or (64 if quick else 1024))
    engines = (os.environ.get("GITOPS_ROLLBACK_BENCH_DB_ENGINES") or "postgresql,mysql").split(",")
    rows = megabytes * 1024 * 1024 // ROW_BYTES
    size_label = "%d MB" % megabytes if megabytes < 1024 else "%g GB" % (megabytes / 1024)
    figures = pg_figures(workdir, rows, size_label) if "postgresql" in engines else []
    return figures + (mariadb_figures(workdir, rows, size_label) if "mysql" in engines else [])
