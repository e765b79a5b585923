"""Throwaway PostgreSQL and MariaDB servers on free loopback ports.

Never touches the system servers (5432/3306): every server gets its own data
directory, socket directory and a free port on 127.0.0.1, and is stopped by
PID.  Both servers have a superuser reachable without a password only where
stated, and a password-protected account so tests can check wrong-password
handling.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .hosts import HarnessError, MissingDependencyError, free_port, wait_for_port

LOCALHOST = "127.0.0.1"


class DatabaseError(HarnessError):
    """A client command failed; ``stderr`` holds the server's message."""

    def __init__(self, cmd: list[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"{cmd[0]} failed ({returncode}): {stderr.strip()}")
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def _run_client(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> str:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise DatabaseError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout.rstrip("\n")


def _traversable_by(path: Path, user: str) -> bool:
    """True when ``user`` may traverse every ancestor of ``path``."""
    pw = pwd.getpwnam(user)
    groups = {pw.pw_gid, *(g for g in os.getgrouplist(user, pw.pw_gid))}
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid == pw.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _server_dir(workdir: Path, name: str, user: str) -> tuple[Path, bool]:
    """A directory for a server running as ``user``: under workdir when reachable, else in /tmp.

    Returns (dir, is_temp).  pytest's tmp dirs are 0700 root and socket paths
    must stay short (< 108 bytes), hence the /tmp fallback.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    candidate = workdir / name
    if _traversable_by(workdir, user) and len(str(candidate)) < 60:
        candidate.mkdir(exist_ok=True)
        return candidate, False
    tmp = Path(tempfile.mkdtemp(prefix=f"gr-{name}-"))
    tmp.chmod(0o755)
    link = workdir / name
    if not link.exists() and not link.is_symlink():
        link.symlink_to(tmp)
    return tmp, True


def _chown(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _stop_child(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM a child process by PID, SIGKILL after ``timeout``; reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _kill_pid(pid: int | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal a non-child process by PID, wait for it to exit, SIGKILL after ``timeout``."""
    if not pid:
        return
    try:
        os.kill(pid, sig)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bin_dir() -> Path:
    """Newest ``/usr/lib/postgresql/*/bin`` holding initdb and pg_ctl."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    for cand in reversed(candidates):
        if all(os.access(Path(cand) / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return Path(cand)
    raise MissingDependencyError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under /usr/lib/postgresql/*/bin: "
        "install the Debian package: apt-get install -y postgresql")


@dataclass
class PgServer:
    """A running throwaway PostgreSQL server."""

    root: Path
    bin_dir: Path
    port: int
    host: str = LOCALHOST
    user: str = "postgres"
    """Superuser; trusted (no password) over the socket and 127.0.0.1."""
    app_user: str = "app"
    app_password: str = ""
    """``app`` logs in with this password only (scram-sha-256)."""
    is_temp: bool = False

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def dsn(self) -> str:
        """libpq URI of the superuser on the ``postgres`` database."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/postgres"

    @property
    def app_dsn(self) -> str:
        return f"postgresql://{self.app_user}:{self.app_password}@{self.host}:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def bin(self, name: str) -> str:
        """Path of a PostgreSQL client/server binary (psql, pg_dump, ...)."""
        return str(self.bin_dir / name)

    def env(self) -> dict[str, str]:
        """libpq environment for the superuser (PGHOST, PGPORT, PGUSER)."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
                "PGDATABASE": "postgres", "PGCONNECT_TIMEOUT": "5"}

    def psql(self, sql: str, db: str = "postgres", user: str | None = None,
             password: str | None = None) -> str:
        """Run ``sql`` with psql over TCP; return unaligned, tuples-only output.

        Raises :class:`DatabaseError` on failure (e.g. wrong password).
        """
        cmd = [self.bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-w",
               "-h", self.host, "-p", str(self.port), "-U", user or self.user, "-d", db, "-c", sql]
        env = {"PGCONNECT_TIMEOUT": "5", "PGPASSWORD": password or ""}
        if password is None:
            env.pop("PGPASSWORD")
        return _run_client(cmd, env)

    def create_database(self, name: str, owner: str | None = None) -> str:
        """Create database ``name`` (owned by ``owner``, default superuser)."""
        ident = _pg_ident(name)
        self.psql(f"CREATE DATABASE {ident}" + (f" OWNER {_pg_ident(owner)}" if owner else ""))
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {_pg_ident(name)} WITH (FORCE)")

    def start(self) -> None:
        """Start the server again on the same data directory and port (after :meth:`halt`)."""
        start = subprocess.run(["runuser", "-u", "postgres", "--", self.bin("pg_ctl"), "-D", str(self.data_dir),
                                "-l", str(self.log), "-w", "-t", "60", "-o", _pg_options(self), "start"],
                               capture_output=True, text=True, check=False)
        if start.returncode != 0:
            raise HarnessError(f"PostgreSQL did not restart: {start.stderr}"
                               f"{self.log.read_text(errors='replace')[-3000:]}")
        wait_for_port(self.host, self.port, None, self.log, 30, "PostgreSQL")

    def halt(self, sig: int = signal.SIGINT) -> None:
        """Stop the postmaster by PID and wait: SIGINT = fast shutdown, SIGQUIT = immediate; data dir kept."""
        _kill_pid(self.pid, sig, timeout=30)

    def stop(self) -> None:
        """Stop the server (immediate mode, then by PID) and remove temp dirs."""
        _kill_pid(self.pid, signal.SIGQUIT)  # SIGQUIT = immediate shutdown
        if self.is_temp:
            shutil.rmtree(self.root, ignore_errors=True)


def _pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pg_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _pg_options(server: PgServer) -> str:
    """postgres command-line options of a harness server (its port and socket directory)."""
    return (f"-c listen_addresses={LOCALHOST} -p {server.port} -k {server.socket_dir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50 "
            "-c password_encryption=scram-sha-256")


PG_HBA = """\
# generated by tests/harness/databases.py
local   all             postgres                                trust
host    all             postgres        127.0.0.1/32            trust
local   replication     postgres                                trust
host    replication     postgres        127.0.0.1/32            trust
local   all             all                                     scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
"""


def start_postgres(workdir: str | os.PathLike[str], attempts: int = 3) -> PgServer:
    """initdb + start a PostgreSQL server on a free port of 127.0.0.1; create role ``app``."""
    bin_dir = postgres_bin_dir()
    if not shutil.which("runuser"):
        raise MissingDependencyError("runuser not found: install the Debian package: apt-get install -y util-linux")
    root, is_temp = _server_dir(Path(workdir).resolve(), "postgres", "postgres")
    subprocess.run(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700",
                    str(root / "data")], check=True)
    subprocess.run(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0755",
                    str(root / "sock")], check=True)
    _chown(root, "postgres")
    init = subprocess.run(["runuser", "-u", "postgres", "--", str(bin_dir / "initdb"), "-D", str(root / "data"),
                           "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                          capture_output=True, text=True, check=False)
    if init.returncode != 0:
        raise HarnessError(f"initdb failed: {init.stderr}")
    (root / "data" / "pg_hba.conf").write_text(PG_HBA)

    server = PgServer(root, bin_dir, 0, app_password=secrets.token_hex(12), is_temp=is_temp)
    last = ""
    for _attempt in range(attempts):
        server.port = free_port(LOCALHOST)
        start = subprocess.run(["runuser", "-u", "postgres", "--", str(bin_dir / "pg_ctl"), "-D", str(root / "data"),
                                "-l", str(server.log), "-w", "-t", "30", "-o", _pg_options(server), "start"],
                               capture_output=True, text=True, check=False)
        if start.returncode == 0:
            break
        last = start.stderr + server.log.read_text(errors="replace")[-3000:] if server.log.exists() else start.stderr
    else:
        raise HarnessError(f"PostgreSQL did not start: {last}")
    try:
        wait_for_port(server.host, server.port, None, server.log, 15, "PostgreSQL")
        server.psql(f"CREATE ROLE {_pg_ident(server.app_user)} LOGIN CREATEDB "
                    f"PASSWORD {_pg_literal(server.app_password)}")
    except BaseException:
        server.stop()
        raise
    return server


# --------------------------------------------------------------------------- MariaDB


@dataclass
class MariaDbServer:
    """A running throwaway MariaDB server."""

    root: Path
    port: int
    password: str
    """Password of ``root`` (``root@localhost`` and ``root@127.0.0.1``)."""
    host: str = LOCALHOST
    user: str = "root"
    process: subprocess.Popen | None = None
    is_temp: bool = False

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def log(self) -> Path:
        return self.root / "mariadbd.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def dsn(self) -> str:
        return f"mysql://{self.user}:{self.password}@{self.host}:{self.port}/"

    def client_args(self, user: str | None = None) -> list[str]:
        """``mariadb`` client connection arguments (password goes in MYSQL_PWD)."""
        return ["--no-defaults", "--protocol=TCP", "-h", self.host, "-P", str(self.port), "-u", user or self.user,
                "--connect-timeout=5"]

    def sql(self, statement: str, db: str | None = None, user: str | None = None,
            password: str | None = None) -> str:
        """Run ``statement`` with the mariadb client over TCP; return tab-separated rows.

        Raises :class:`DatabaseError` on failure (e.g. wrong password).
        """
        cmd = ["mariadb", *self.client_args(user), "-N", "-B", "-e", statement]
        if db:
            cmd.append(db)
        return _run_client(cmd, {"MYSQL_PWD": self.password if password is None else password})

    def create_database(self, name: str) -> str:
        self.sql(f"CREATE DATABASE `{name.replace('`', '``')}`")
        return name

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{name.replace('`', '``')}`")

    def start(self) -> None:
        """Start mariadbd again on the same data directory and port (after :meth:`halt`)."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(_mariadbd_argv(self), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)
        wait_for_port(self.host, self.port, self.process, self.log, 60, "mariadbd")

    def halt(self, sig: int = signal.SIGKILL) -> None:
        """Signal mariadbd by PID (SIGKILL: a crash, SIGTERM: a shutdown) and reap it; data dir kept."""
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)
            self.process = None

    def stop(self) -> None:
        """Stop mariadbd by PID and remove temp dirs."""
        if self.process is not None:
            _stop_child(self.process)
            self.process = None
        if self.is_temp:
            shutil.rmtree(self.root, ignore_errors=True)


def _mariadb_binaries() -> tuple[str, str, str]:
    found = [shutil.which(b) or (f"/usr/sbin/{b}" if os.access(f"/usr/sbin/{b}", os.X_OK) else None)
             for b in ("mariadbd", "mariadb-install-db", "mariadb")]
    if not all(found):
        raise MissingDependencyError(
            "MariaDB binaries (mariadbd, mariadb-install-db, mariadb) not found: "
            "install the Debian packages: apt-get install -y mariadb-server mariadb-client")
    return found[0], found[1], found[2]  # type: ignore[return-value]


def _mariadbd_argv(server: MariaDbServer) -> list[str]:
    """mariadbd command line of a harness server (its data dir, port and socket)."""
    return [_mariadb_binaries()[0], "--no-defaults", "--user=mysql", f"--datadir={server.data_dir}",
            f"--bind-address={LOCALHOST}", f"--port={server.port}", f"--socket={server.socket}",
            f"--pid-file={server.root / 'mariadbd.pid'}", f"--tmpdir={server.root}", "--skip-log-bin",
            "--skip-name-resolve", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
            "--max-connections=50", "--performance-schema=OFF"]


def start_mariadb(workdir: str | os.PathLike[str], attempts: int = 3) -> MariaDbServer:
    """Install + start a MariaDB server on a free port of 127.0.0.1 with a root password."""
    _mariadbd, install_db, _client = _mariadb_binaries()
    root, is_temp = _server_dir(Path(workdir).resolve(), "mariadb", "mysql")
    _chown(root, "mysql")
    server = MariaDbServer(root, 0, secrets.token_hex(12), is_temp=is_temp)
    init = subprocess.run([install_db, "--no-defaults", "--user=mysql", f"--datadir={server.data_dir}",
                           "--auth-root-authentication-method=normal", "--skip-test-db",
                           "--skip-name-resolve", "--innodb-buffer-pool-size=16M"],
                          capture_output=True, text=True, check=False)
    if init.returncode != 0:
        raise HarnessError(f"mariadb-install-db failed: {init.stdout}{init.stderr}")
    for _attempt in range(attempts):
        server.port = free_port(LOCALHOST)
        with open(server.log, "ab") as log:
            server.process = subprocess.Popen(_mariadbd_argv(server), stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=log, start_new_session=True)
        try:
            wait_for_port(server.host, server.port, server.process, server.log, 30, "mariadbd")
            break
        except HarnessError:
            _stop_child(server.process)
            server.process = None
    else:
        raise HarnessError(f"mariadbd did not start:\n{server.log.read_text(errors='replace')[-3000:]}")
    try:
        _set_root_password(server)
    except BaseException:
        server.stop()
        raise
    return server


def _set_root_password(server: MariaDbServer) -> None:
    pw = server.password.replace("'", "''")
    setup = (f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{pw}';"
             f"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{pw}';"
             f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{pw}';"
             "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
             "FLUSH PRIVILEGES;")
    # Fresh install: root@localhost has no password yet; connect over the socket.
    _run_client(["mariadb", "--no-defaults", f"--socket={server.socket}", "-u", "root", "-e", setup],
                {"MYSQL_PWD": ""})
