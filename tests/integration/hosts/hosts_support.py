"""Helpers for the host checkpoint/restore end-to-end tests (a uniquely named module: conftest
modules of different test directories share the name ``conftest``)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "playbooks"
MANAGED = ["/srv/app", "/etc/app"]


def snapshot(top: Path) -> dict[str, tuple]:
    """Everything a restore must bring back, per relative path: type, mode, owner, content or target, mtime."""
    result: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(top))
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("symlink", st.st_uid, st.st_gid, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            elif not stat.S_ISREG(st.st_mode):  # a FIFO or socket: never opened (a FIFO would block)
                result[rel] = ("special", stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            else:
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
                result[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, digest, st.st_mtime_ns)
    return result


def host_snapshot(host) -> dict[str, dict[str, tuple]]:
    """Snapshots of every managed path of a fleet host."""
    return {path: snapshot(host.local(path)) for path in MANAGED}


def populate(host, seed: int) -> None:
    """Give a host its own content: files, modes, owners, symlinks, empty directories."""
    app, etc = host.local("/srv/app"), host.local("/etc/app")
    (app / "static" / "img").mkdir(parents=True)
    (app / "empty").mkdir()
    (app / "index.html").write_text(f"<h1>{host.name} v1</h1>\n")
    (app / "static" / "logo.bin").write_bytes(os.urandom(4096 + seed))
    (app / "static" / "img" / "a.png").write_bytes(os.urandom(10000))
    (app / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(app / "run.sh", 0o750)
    os.symlink("static/logo.bin", app / "logo")
    (etc / "app.conf").write_text(f"host={host.name}\nworkers={seed}\n")
    os.chmod(etc / "app.conf", 0o600)
    os.chown(etc / "app.conf", 1234, 2345)
    os.chown(app / "static", 4321, 0)


def break_release(host) -> None:
    """A bad deploy: content changed, files deleted and added, modes/owners/links/dirs changed."""
    app, etc = host.local("/srv/app"), host.local("/etc/app")
    (app / "index.html").write_text("<h1>broken v2</h1>\n")
    (app / "static" / "img" / "a.png").unlink()
    (app / "new.js").write_text("console.log('v2')\n")
    (app / "newdir" / "deep").mkdir(parents=True)
    (app / "newdir" / "deep" / "x").write_text("x")
    os.chmod(app / "run.sh", 0o777)
    (app / "logo").unlink()
    os.symlink("/etc/passwd", app / "logo")
    (app / "empty").rmdir()
    os.chown(etc / "app.conf", 0, 0)
    (etc / "app.conf").write_text("host=wrong\n")


def save_hosts(fleet, directory: Path) -> Path:
    """Copy every host's managed paths and store to ``directory`` as they are: owners, modes, times, links
    and FIFOs kept (``cp -a``; :meth:`harness.Fleet.snapshot` copies neither owners nor FIFOs)."""
    for host in fleet:
        for local in host.dirs.values():
            target = directory / host.name / local.name
            target.mkdir(parents=True)
            subprocess.run(["cp", "-a", "--", f"{local}/.", str(target)], check=True)
    return directory


def restore_hosts(fleet, directory: Path) -> None:
    """Start every host and make its managed paths and store what :func:`save_hosts` copied."""
    fleet.ensure_running()
    fleet.wipe()
    for host in fleet:
        for local in host.dirs.values():
            # into the existing directory: the bind mount holds on to its inode
            subprocess.run(["cp", "-a", "--", f"{directory / host.name / local.name}/.", str(local)], check=True)
