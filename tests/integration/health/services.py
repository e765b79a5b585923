"""Real services for the health tests: a metrics app, Debian's prometheus, Debian's nginx.

Plain Python (no pytest) so the benchmark uses them too. Each service runs on a free loopback
port with its own config/data directory and is stopped by its own handle.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ERROR_RATE_QUERY = ('sum(rate(http_requests_total{job="%(job)s",code=~"5.."}[5s]))'
                    ' / sum(rate(http_requests_total{job="%(job)s"}[5s]))')
P99_QUERY = 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="%(job)s"}[5s])))'


class ServiceError(RuntimeError):
    """A service could not be started, or a package is missing."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require(binary: str, package: str) -> str:
    """Path of ``binary``; ServiceError naming the Debian package when it is missing."""
    found = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}")
                                          if Path(p).exists()), None)
    if not found:
        raise ServiceError(f"{binary} is missing: install the Debian package: apt-get install -y {package}")
    return found


# ---------------------------------------------------------------------------------------- app

class MetricsApp:
    """A tiny HTTP app whose error rate and latency the test sets, with Prometheus metrics.

    ``GET /`` answers with the app's name (500 for the configured share of requests, after the
    configured latency); ``GET /metrics`` exposes ``http_requests_total{code}`` and the histogram
    ``http_request_duration_seconds``. :meth:`start_load` sends a steady stream of requests.
    """

    def __init__(self, name: str = "app") -> None:
        self.name = name
        self.error_rate = 0.0
        self.latency = 0.0
        self._lock = threading.Lock()
        self._requests: Dict[str, int] = {"200": 0, "500": 0}
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0
        self._error_credit = 0.0
        self._load: List[threading.Thread] = []
        self._load_stop = threading.Event()
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        # shutdown() waits for serve_forever's next poll: 0.05 s, not the default half second per app
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def under_load(self) -> bool:
        """Whether :meth:`start_load` is sending requests."""
        return bool(self._load)

    def start(self) -> "MetricsApp":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_load()
        self._server.shutdown()
        self._server.server_close()

    def set(self, error_rate: Optional[float] = None, latency: Optional[float] = None) -> None:
        if error_rate is not None:
            self.error_rate = error_rate
        if latency is not None:
            self.latency = latency

    def _serve_request(self) -> int:
        started = time.monotonic()
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self._error_credit += self.error_rate  # deterministic share of errors
            code = 500 if self._error_credit >= 1.0 else 200
            if code == 500:
                self._error_credit -= 1.0
            took = time.monotonic() - started
            self._requests[str(code)] += 1
            self._sum += took
            index = next((i for i, bound in enumerate(BUCKETS) if took <= bound), len(BUCKETS))
            self._buckets[index] += 1
        return code

    def exposition(self) -> str:
        with self._lock:
            lines = ["# TYPE http_requests_total counter"]
            lines += [f'http_requests_total{{code="{code}"}} {count}' for code, count in sorted(self._requests.items())]
            lines.append("# TYPE http_request_duration_seconds histogram")
            cumulative = 0
            for bound, count in zip(list(BUCKETS) + ["+Inf"], self._buckets):
                cumulative += count
                lines.append(f'http_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
            lines.append(f"http_request_duration_seconds_sum {self._sum}")
            lines.append(f"http_request_duration_seconds_count {cumulative}")
        return "\n".join(lines) + "\n"

    def _handler(self) -> type:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/metrics"):
                    body, code, kind = app.exposition().encode(), 200, "text/plain; version=0.0.4"
                else:
                    code = app._serve_request()
                    body, kind = app.name.encode(), "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def start_load(self, threads: int = 2, pause: float = 0.02) -> None:
        """Send requests to ``/`` continuously from ``threads`` threads."""
        self._load_stop.clear()

        def loop() -> None:
            while not self._load_stop.is_set():
                try:
                    urllib.request.urlopen(f"http://{self.address}/", timeout=5).read()
                except OSError:
                    pass
                self._load_stop.wait(pause)

        self._load = [threading.Thread(target=loop, daemon=True) for _index in range(threads)]
        for thread in self._load:
            thread.start()

    def stop_load(self) -> None:
        self._load_stop.set()
        for thread in self._load:
            thread.join(timeout=10)
        self._load = []


# ---------------------------------------------------------------------------------------- prometheus

class Prometheus:
    """Debian's prometheus scraping ``targets`` (job ``job``; or each job of ``jobs``: name -> targets)
    every ``scrape_interval``, in its own data directory."""

    def __init__(self, workdir: Path, targets: List[str], job: str = "app", retention: str = "1h",
                 jobs: Optional[Dict[str, List[str]]] = None, scrape_interval: float = 1.0) -> None:
        self.binary = require("prometheus", "prometheus")
        self.workdir = workdir
        self.jobs = jobs if jobs is not None else {job: targets}
        self.retention = retention  # longer for backfilled history (promtool blocks in workdir/data)
        self.scrape_interval = scrape_interval
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "Prometheus":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": f"{int(self.scrape_interval * 1000)}ms", "evaluation_interval": "1s",
                       "scrape_timeout": f"{int(self.scrape_interval * 900)}ms", "query_log_file": str(self.query_log)},
            "scrape_configs": [{"job_name": name, "static_configs": [{"targets": targets}]}
                               for name, targets in self.jobs.items()],
        }))
        log = open(self.workdir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", f"--storage.tsdb.retention.time={self.retention}"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError("prometheus exited: " + (self.workdir / "prometheus.log").read_text()[-2000:])
            try:
                if urllib.request.urlopen(self.url + "/-/ready", timeout=1).status == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise ServiceError("prometheus did not become ready")

    @property
    def query_log(self) -> Path:
        return self.workdir / "queries.jsonl"

    def queries_seen(self, needle: str) -> int:
        """Queries containing ``needle`` that prometheus logged (its query log)."""
        try:
            lines = self.query_log.read_text().splitlines()
        except OSError:
            return 0
        return sum(1 for line in lines if needle in line)

    def stop_after_queries(self, needle: str, count: int, timeout: float = 60) -> threading.Thread:
        """Stop prometheus (in a thread) once ``count`` queries containing ``needle`` were logged."""
        baseline = self.queries_seen(needle)

        def watch() -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.queries_seen(needle) < baseline + count:
                time.sleep(0.02)
            self.stop()

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread

    def query(self, promql: str) -> list:
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        return json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["result"]

    def wait_for(self, promql: str, predicate=lambda value: True, timeout: float = 30, poll: float = 0.1) -> float:
        """Wait until ``promql`` returns a finite value for which ``predicate`` holds (asked every ``poll`` s)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                result = self.query(promql)
            except OSError:
                result = []
            if result:
                last = float(result[0]["value"][1])
                if math.isfinite(last) and predicate(last):
                    return last
            time.sleep(poll)
        raise ServiceError(f"{promql} did not reach the expected value (last {last}) within {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------------------- nginx

class Nginx:
    """Debian's nginx in the foreground (own prefix, config, pid) proxying to an upstream file."""

    def __init__(self, prefix: Path, upstream: str = "app") -> None:
        self.binary = require("nginx", "nginx")
        self.prefix = prefix
        self.upstream = upstream
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def config(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def upstream_file(self) -> Path:
        return self.prefix / "upstream.conf"

    @property
    def pid_file(self) -> Path:
        return self.prefix / "nginx.pid"

    @property
    def args(self) -> List[str]:
        return ["-p", str(self.prefix), "-c", str(self.config), "-e", str(self.prefix / "error.log")]

    def write_config(self) -> None:
        p = self.prefix
        for sub in ("tmp", "logs"):
            (p / sub).mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"""
daemon off;
user root;
worker_processes 1;
pid {self.pid_file};
error_log {p / 'error.log'} warn;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {p / 'tmp'}; proxy_temp_path {p / 'tmp'}; fastcgi_temp_path {p / 'tmp'};
    uwsgi_temp_path {p / 'tmp'}; scgi_temp_path {p / 'tmp'};
    include {self.upstream_file};
    server {{
        listen 127.0.0.1:{self.port};
        location / {{ proxy_pass http://{self.upstream}; proxy_next_upstream off; }}
    }}
}}
""")

    def start(self, timeout: float = 15) -> "Nginx":
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.write_config()
        log = open(self.prefix / "stderr.log", "ab")
        self.proc = subprocess.Popen([self.binary, *self.args], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError("nginx exited: " + (self.prefix / "stderr.log").read_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise ServiceError("nginx did not listen")

    def hits(self, requests: int) -> Dict[str, int]:
        """Send ``requests`` GETs through nginx; count the answers per app name."""
        counts: Dict[str, int] = {}
        for _index in range(requests):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5).read().decode()
            except OSError as exc:
                body = f"error: {exc}"
            counts[body] = counts.get(body, 0) + 1
        return counts

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
