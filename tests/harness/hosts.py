"""A fleet of real SSH hosts on one machine.

Each host is an ``sshd`` running in its own mount + UTS namespace (``unshare``)
on a random loopback address and a free port.  Per-host directories under
``workdir/hosts/<name>/`` are bind-mounted over the managed paths
(``/srv/app``, ``/etc/app`` by default) and over :data:`STORE_DIR`, so every
host has its own files and its own checkpoint store, which a test can read and
write directly from outside through :meth:`Host.local`.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .collection import Result, run_module_process

STORE_DIR = "/var/lib/gitops-rollback"
"""Checkpoint store of the collection; bind-mounted per host like the managed dirs."""

SSHD = "/usr/sbin/sshd"
SFTP_SERVER_CANDIDATES = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server")


class HarnessError(RuntimeError):
    """A real component of the harness could not be started or driven."""


class MissingDependencyError(HarnessError):
    """A system binary is missing; the message names the Debian package(s) to install."""


# --------------------------------------------------------------------------- helpers


def require_binaries(binaries: Iterable[str], package: str) -> None:
    """Raise :class:`MissingDependencyError` unless every binary exists."""
    missing = [b for b in binaries if not (os.path.isabs(b) and os.access(b, os.X_OK)) and not shutil.which(b)]
    if missing:
        raise MissingDependencyError(
            f"missing {', '.join(missing)}: install the Debian package(s): apt-get install -y {package}"
        )


def free_port(address: str = "127.0.0.1") -> int:
    """Return a TCP port that is currently free on ``address``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def random_loopback(taken: Iterable[str] = ()) -> str:
    """Pick a random, currently unused 127.x.y.z address (never 127.0.0.1)."""
    taken = set(taken)
    for _poll in range(100):
        addr = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        if addr in taken:
            continue
        try:
            free_port(addr)
        except OSError:
            continue
        if not _address_has_listeners(addr):
            return addr
    raise HarnessError("could not find a free loopback address")


def _address_has_listeners(addr: str) -> bool:
    """True when some socket already listens on ``addr`` (from /proc/net/tcp)."""
    hexaddr = "".join(f"{int(p):02X}" for p in reversed(addr.split(".")))
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1].split(":")[0] == hexaddr and line.split()[3] == "0A" for line in lines)


def wait_for_port(
    address: str,
    port: int,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
    timeout: float = 15.0,
    what: str = "server",
) -> None:
    """Poll until ``address:port`` accepts TCP connections; raise with the log on failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"{what} exited with {proc.returncode} before listening on "
                               f"{address}:{port}:\n{_tail(log)}")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise HarnessError(f"{what} did not listen on {address}:{port} within {timeout}s:\n{_tail(log)}")


def _tail(log: Path | None, limit: int = 4000) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return log.read_text(errors="replace")[-limit:]


def mount_namespace(pid: int) -> str | None:
    """Identity of the mount namespace of ``pid`` (None if the process is gone)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def kill_namespace(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill ``pid`` and every process sharing its (private) mount namespace.

    sshd's per-connection children call ``setsid()``, so killing the process
    group alone would leave live SSH sessions (and Ansible ControlPersist
    masters) behind.  Only used for namespaces this harness created.
    """
    ns = mount_namespace(pid)
    own = mount_namespace(os.getpid())
    pids = {pid}
    if ns is not None and ns != own:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and mount_namespace(int(entry)) == ns:
                pids.add(int(entry))
    try:
        os.killpg(pid, sig)
    except OSError:
        pass
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def managed_dir_name(path: str) -> str:
    """Local directory name for a managed path: ``/srv/app`` -> ``srv-app``."""
    return path.strip("/").replace("/", "-")


def _interpreter() -> str:
    """Python for the managed hosts: this venv's python (has GitPython etc.), else /usr/bin/python3."""
    exe = sys.executable
    if exe and os.access(exe, os.X_OK) and not exe.startswith(("/srv/", "/etc/app")):
        return exe
    return "/usr/bin/python3"


def _plain_shell_startup(root: Path) -> list[str]:
    """Mount steps that give the host's root a plain Debian ``~/.bashrc``.

    ``sshd`` runs every command through the login shell, and bash reads ``~/.bashrc`` for a command
    from the network. This machine's root has a development ``.bashrc`` (pyenv and cargo set-up, about
    0.3 s per command) that a managed host does not have; inside the host's own mount namespace an
    empty file is mounted over it, so each SSH command costs what it costs on a server.
    """
    bashrc = Path.home() / ".bashrc"
    if not bashrc.is_file():
        return []
    plain = root / "bashrc"
    plain.write_text("")
    return [f"mount --bind {shlex.quote(str(plain))} {shlex.quote(str(bashrc))}"]


# --------------------------------------------------------------------------- hosts


@dataclass
class Host:
    """One SSH host of the fleet."""

    name: str
    address: str
    port: int
    root: Path
    """``workdir/hosts/<name>``: this host's private files."""
    dirs: dict[str, Path]
    """Managed path on the host (``/srv/app``) -> local directory holding its contents."""
    config: Path
    log: Path
    process: subprocess.Popen | None = None

    @property
    def store(self) -> Path:
        """Local directory behind this host's :data:`STORE_DIR`."""
        return self.dirs[STORE_DIR]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def local(self, host_path: str | os.PathLike[str]) -> Path:
        """Map a path on the host (``/srv/app/x``) to the local file behind it."""
        p = Path(host_path)
        for mount, local in self.dirs.items():
            if p == Path(mount) or Path(mount) in p.parents:
                return local / p.relative_to(mount)
        raise ValueError(f"{host_path} is not under a managed path of {self.name}: {sorted(self.dirs)}")

    def read_text(self, host_path: str) -> str:
        return self.local(host_path).read_text()

    def write_text(self, host_path: str, text: str) -> Path:
        target = self.local(host_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target

    def module(self, module: str, args: dict, check: bool = False) -> Result:
        """Run a module of the collection on this host (its mount and UTS namespaces, as root) the way
        Ansible runs it there, without SSH or the controller: for set-up steps, not for what a test proves
        about playbooks."""
        if not self.running:
            raise HarnessError(f"{self.name} is not running")
        return run_module_process(module, args, check=check,
                                  prefix=["nsenter", "--target", str(self.pid), "--mount", "--uts", "--"])

    def wipe(self) -> None:
        """Empty every managed directory and the store of this host (keeps the directories)."""
        for local in self.dirs.values():
            # empty, never replace: the bind mount holds on to the directory's inode
            for entry in local.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    def command(self) -> list[str]:
        """The ``unshare`` argument list that starts this host's sshd."""
        steps = [f"hostname {shlex.quote(self.name)}"]
        for mount, local in self.dirs.items():
            steps.append(f"mount --bind {shlex.quote(str(local))} {shlex.quote(mount)}")
        steps.extend(_plain_shell_startup(self.root))
        steps.append(f"exec {shlex.quote(SSHD)} -D -e -f {shlex.quote(str(self.config))}")
        return ["unshare", "--mount", "--uts", "--propagation", "private", "--",
                "sh", "-c", " && ".join(steps)]


@dataclass
class Fleet:
    """A set of :class:`Host` sharing one client key."""

    workdir: Path
    hosts: list[Host]
    client_key: Path
    authorized_keys: Path
    interpreter: str = field(default_factory=_interpreter)
    inventory: Path | None = None

    def __getitem__(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def __iter__(self):
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def host_vars(self, host: Host) -> dict[str, object]:
        """Ansible connection variables for ``host``."""
        return {
            "ansible_host": host.address,
            "ansible_port": host.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.client_key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": self.interpreter,
        }

    def write_inventory(self, path: str | os.PathLike[str], group_vars: dict | None = None) -> Path:
        """Write a YAML inventory (group ``fleet``) and remember it as :attr:`inventory`."""
        import json  # JSON is valid YAML; no PyYAML needed here

        data = {"all": {"children": {"fleet": {
            "hosts": {h.name: self.host_vars(h) for h in self.hosts},
            "vars": dict(group_vars or {}),
        }}}}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
        self.inventory = path
        return path

    def start_host(self, name: str, timeout: float = 15.0) -> Host:
        """(Re)start one host's sshd; no-op if it already runs."""
        host = self[name]
        if not host.running:
            _launch(host, timeout)
        return host

    def stop_host(self, name: str) -> Host:
        """Stop one host (sshd and all its sessions): it becomes unreachable."""
        host = self[name]
        _terminate(host)
        return host

    def ensure_running(self) -> None:
        """Start every host that is not running (e.g. after a test stopped one)."""
        for host in self.hosts:
            if not host.running:
                _launch(host, 15.0)

    def wipe(self) -> None:
        """Empty the managed directories and stores of all hosts."""
        for host in self.hosts:
            host.wipe()

    def snapshot(self, directory: str | os.PathLike[str]) -> Path:
        """Copy every host's managed directories and store to ``directory`` (links, modes and times kept):
        a state several tests start from, made once (by playbook runs) and put back by :meth:`restore`."""
        directory = Path(directory)
        for host in self.hosts:
            for mount, local in host.dirs.items():
                shutil.copytree(local, directory / host.name / managed_dir_name(mount), symlinks=True)
        return directory

    def restore(self, directory: str | os.PathLike[str]) -> None:
        """Start every host and make its managed directories and store what :meth:`snapshot` copied."""
        self.ensure_running()
        self.wipe()
        for host in self.hosts:
            for mount, local in host.dirs.items():
                # into the existing directory: the bind mount holds on to its inode
                shutil.copytree(Path(directory) / host.name / managed_dir_name(mount), local, symlinks=True,
                                dirs_exist_ok=True)

    def stop(self) -> None:
        """Stop every host by PID."""
        for host in self.hosts:
            _terminate(host)


# --------------------------------------------------------------------------- lifecycle


def _ensure_system_dirs(paths: Sequence[str]) -> None:
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    for p in paths:
        Path(p).mkdir(parents=True, exist_ok=True)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True)


def _sftp_server() -> str:
    return next((p for p in SFTP_SERVER_CANDIDATES if os.path.exists(p)), "internal-sftp")


def _write_sshd_config(host: Host, host_key: Path, authorized_keys: Path) -> None:
    host.config.write_text("\n".join([
        f"ListenAddress {host.address}:{host.port}",
        f"HostKey {host_key}",
        f"PidFile {host.root / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "MaxStartups 200",
        "MaxSessions 100",
        "LogLevel ERROR",
        f"Subsystem sftp {_sftp_server()}",
        "",
    ]))


def _launch(host: Host, timeout: float) -> None:
    log = open(host.log, "ab")
    try:
        host.process = subprocess.Popen(host.command(), stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=log, start_new_session=True)
    finally:
        log.close()
    try:
        wait_for_port(host.address, host.port, host.process, host.log, timeout, f"sshd of {host.name}")
    except Exception:
        _terminate(host)
        raise


def _terminate(host: Host) -> None:
    proc = host.process
    if proc is None:
        return
    if proc.poll() is None:
        kill_namespace(proc.pid)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    host.process = None


def start_hosts(
    n: int,
    workdir: str | os.PathLike[str],
    managed_dirs: Sequence[str] = ("/srv/app", "/etc/app"),
    timeout: float = 15.0,
) -> Fleet:
    """Start ``n`` hosts named h1..hN; return a running :class:`Fleet`.

    The caller must call :meth:`Fleet.stop` (the pytest fixture does).
    """
    require_binaries([SSHD, "ssh-keygen", "unshare"], "openssh-server openssh-client util-linux")
    workdir = Path(workdir).resolve()
    mounts = [*dict.fromkeys([*managed_dirs, STORE_DIR])]
    _ensure_system_dirs(mounts)
    (workdir / "hosts").mkdir(parents=True, exist_ok=True)

    client_key = workdir / "id_ed25519"
    if not client_key.exists():
        _keygen(client_key, "gitops-rollback-harness")
    authorized_keys = workdir / "authorized_keys"
    authorized_keys.write_text(Path(f"{client_key}.pub").read_text())

    hosts: list[Host] = []
    for i in range(1, n + 1):
        name = f"h{i}"
        root = workdir / "hosts" / name
        root.mkdir(parents=True, exist_ok=True)
        dirs = {m: root / managed_dir_name(m) for m in mounts}
        for local in dirs.values():
            local.mkdir(exist_ok=True)
        address = random_loopback(h.address for h in hosts)
        host = Host(name, address, free_port(address), root, dirs, root / "sshd_config", root / "sshd.log")
        host_key = root / "ssh_host_ed25519_key"
        if not host_key.exists():
            _keygen(host_key, name)
        _write_sshd_config(host, host_key, authorized_keys)
        hosts.append(host)

    fleet = Fleet(workdir, hosts, client_key, authorized_keys)
    try:
        for host in hosts:  # start all, then wait: sshd starts in parallel
            log = open(host.log, "ab")
            host.process = subprocess.Popen(host.command(), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=log, start_new_session=True)
            log.close()
        for host in hosts:
            wait_for_port(host.address, host.port, host.process, host.log, timeout, f"sshd of {host.name}")
    except BaseException:
        fleet.stop()
        raise
    return fleet
