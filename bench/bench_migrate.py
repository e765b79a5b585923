# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Revert of 200 small migrations on PostgreSQL: db_migrate's engine vs ``alembic downgrade``.

Both chains do the same SQL (one table with random-valued rows per migration), on the same
throwaway server, in the same run; each revert is one fresh process (``python -c`` calling the
engine as the module does, and the ``alembic`` command), so both pay their interpreter start-up.
Requires (benchmark only, not the collection): ``pip install alembic sqlalchemy psycopg2-binary``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

ENV_PY = '''
from alembic import context
from sqlalchemy import create_engine
engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
'''

REVISION = '''"""step {n}"""
from alembic import op
revision = "r{n:04d}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade():
    op.execute("""{up}""")


def downgrade():
    op.execute("""{down_sql}""")
'''

OURS = '''
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrate import run_operation
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrate_plan import Params
params = json.loads(sys.argv[2])
result = run_operation(Params.from_module(params, False))
assert result["version"] == 0, result["version"]
'''


def require_alembic() -> str:
    """Return the alembic command; fail with the install line when the benchmark's extras are missing."""
    try:
        import alembic  # noqa: F401
        import psycopg2  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise SystemExit("bench_migrate needs the benchmark-only packages: %s -m pip install alembic sqlalchemy "
                         "psycopg2-binary (%s)" % (sys.executable, exc))
    return str(Path(sys.executable).parent / "alembic")


def step_sql(n: int, seed: str) -> tuple:
    """Up and down SQL of step ``n``: a small table holding a few random values."""
    up = ("CREATE TABLE bench_t%d (id integer PRIMARY KEY, payload text NOT NULL);\n"
          "INSERT INTO bench_t%d VALUES (1, '%s');\n" % (n, n, seed))
    return up, "DROP TABLE bench_t%d;\n" % n


def write_chains(workdir: Path, count: int) -> tuple:
    """Write the same chain for db_migrate and for Alembic."""
    ours = workdir / "migrations"
    alembic_dir = workdir / "alembic"
    (alembic_dir / "versions").mkdir(parents=True)
    ours.mkdir()
    (alembic_dir / "env.py").write_text(ENV_PY)
    (alembic_dir / "script.py.mako").write_text("")
    for n in range(1, count + 1):
        up, down = step_sql(n, os.urandom(16).hex())
        (ours / ("V%04d__step_%d.up.sql" % (n, n))).write_text(up)
        (ours / ("V%04d__step_%d.down.sql" % (n, n))).write_text(down)
        (alembic_dir / "versions" / ("r%04d_step.py" % n)).write_text(REVISION.format(
            n=n, down='"r%04d"' % (n - 1) if n > 1 else "None", up=up, down_sql=down))
    return ours, alembic_dir


def timed(argv: list, env: dict = None) -> float:
    """Run a command and return its wall time; fail loudly on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})},
                          check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError("%s failed: %s%s" % (argv[0], proc.stdout[-2000:], proc.stderr[-2000:]))
    return elapsed


def run(workdir: Path, quick: bool) -> list:
    """Measure both reverts of the chain and return the figure."""
    alembic_bin = require_alembic()
    from harness import collections_path, start_postgres

    count = 50 if quick else 200
    server = start_postgres(workdir / "srv")
    try:
        coll = collections_path(workdir / "coll")
        ours_dir, alembic_dir = write_chains(workdir, count)
        ini = workdir / "alembic.ini"
        for name in ("bench_ours", "bench_alembic"):
            server.create_database(name)
        ini.write_text("[alembic]\nscript_location = %s\nsqlalchemy.url = postgresql+psycopg2://%s@%s:%d/bench_alembic\n"
                       % (alembic_dir, server.user, server.host, server.port))
        params = dict(engine="postgresql", database="bench_ours", login_host=server.host, login_port=server.port,
                      login_user=server.user, migrations_dir=str(ours_dir))
        ours_argv = [sys.executable, "-c", OURS, str(coll)]
        apply_ours = [sys.executable, "-c", OURS.replace('== 0', '== %d' % count), str(coll),
                      json.dumps(dict(params, operation="apply"))]
        timed(apply_ours)
        timed([alembic_bin, "-c", str(ini), "upgrade", "head"])
        ours_s = timed(ours_argv + [json.dumps(dict(params, operation="revert", version="0"))])
        alembic_s = timed([alembic_bin, "-c", str(ini), "downgrade", "base"])
        tables = server.psql("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bench_t%'", db="bench_ours")
        assert tables == "0", "db_migrate left %s tables" % tables
    finally:
        server.stop()
    return [{
        "name": "revert %d migrations (PostgreSQL), per migration" % count,
        "ours_s": ours_s / count, "baseline": "alembic downgrade", "baseline_s": alembic_s / count, "target": 1.0,
    }]
