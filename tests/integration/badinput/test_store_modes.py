"""After a checkpoint of files of every size and database backups, every store file is 0600, every directory 0700."""

from __future__ import annotations

import os
import stat

from badinput_support import run_tasks

SIZES = [0, 1, 4096, 262143, 262144, 262145, 1048576 + 7, 5 * 1048576]


def wrong_modes(root) -> list:
    """Paths under ``root`` (and root) that are not a 0600 regular file or a 0700 directory."""
    wrong = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            full = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(full)
            want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) or stat.S_IMODE(st.st_mode) != want:
                wrong.append((os.path.relpath(full, root), oct(st.st_mode)))
    return wrong


def test_every_store_file_is_private_after_checkpoints_and_database_backups(clean_fleet, postgres):
    h1 = clean_fleet["h1"]
    app = h1.local("/srv/app")
    for size in SIZES:
        (app / ("f%d" % size)).write_bytes(os.urandom(size))
        os.chmod(app / ("f%d" % size), 0o644)
    database = "modes_db"
    postgres.create_database(database)
    postgres.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g", db=database)
    pg = {"engine": "postgresql", "database": database, "login_host": postgres.host, "login_port": postgres.port,
          "login_user": postgres.user, "client_bin_dir": str(postgres.bin_dir)}
    tasks = [
        {"name": "checkpoint", "gitops.rollback.checkpoint": {"paths": ["/srv/app"], "label": "v1"}},
        {"name": "custom dump", "gitops.rollback.db_backup": {**pg, "checkpoint": "v1", "format": "custom"}},
        {"name": "directory dump", "gitops.rollback.db_backup": {**pg, "checkpoint": "v1", "format": "directory",
                                                                 "jobs": 2}},
        {"name": "checkpoint again", "gitops.rollback.checkpoint": {"paths": ["/srv/app"], "label": "v2"}},
    ]

    by_task = run_tasks(h1, tasks)

    assert {name: result["status"] for name, result in by_task.items()} == {task["name"]: "ok" for task in tasks}, by_task
    store = h1.store
    assert any((store / "objects").iterdir()) and any((store / "packs").iterdir()) and any((store / "cache").iterdir())
    assert wrong_modes(store) == []
