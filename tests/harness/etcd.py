"""A throwaway etcd server (Debian package etcd-server) on free loopback ports."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .hosts import MissingDependencyError, free_port, wait_for_port

LOCALHOST = "127.0.0.1"


@dataclass
class EtcdServer:
    """A running single-member etcd; ``endpoint`` is its client URL."""

    proc: subprocess.Popen
    endpoint: str
    workdir: Path

    def ctl(self, *args: str) -> str:
        """Run etcdctl (API v3) against this server; return its output."""
        done = subprocess.run(["etcdctl", "--endpoints", self.endpoint, *args], env={**os.environ, "ETCDCTL_API": "3"},
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout

    def stop(self) -> None:
        """Stop the server and remove its data."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_etcd(workdir: str | os.PathLike[str]) -> EtcdServer:
    """Start etcd with its data under ``workdir``; raise MissingDependencyError without etcd-server."""
    if not shutil.which("etcd") or not shutil.which("etcdctl"):
        raise MissingDependencyError("etcd/etcdctl not found: install the Debian packages: "
                                     "apt-get install -y etcd-server etcd-client")
    folder = Path(workdir) / ("etcd-%d" % free_port(LOCALHOST))
    folder.mkdir(parents=True)
    client, peer = free_port(LOCALHOST), free_port(LOCALHOST)
    log = folder / "etcd.log"
    argv = ["etcd", "--name", "harness", "--data-dir", str(folder / "data"),
            "--listen-client-urls", f"http://{LOCALHOST}:{client}", "--advertise-client-urls", f"http://{LOCALHOST}:{client}",
            "--listen-peer-urls", f"http://{LOCALHOST}:{peer}", "--initial-advertise-peer-urls", f"http://{LOCALHOST}:{peer}",
            "--initial-cluster", f"harness=http://{LOCALHOST}:{peer}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(LOCALHOST, client, proc, log, what="etcd")
    return EtcdServer(proc, f"http://{LOCALHOST}:{client}", folder)
