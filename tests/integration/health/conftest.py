"""Fixtures of the health tests: metrics apps under load, Debian's prometheus and nginx, a local host."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# tests import from health_support, never from conftest
from health_support import JOB, SCRAPE_INTERVAL, _started, gate_metrics  # noqa: E402
from services import ERROR_RATE_QUERY, MetricsApp, Nginx, Prometheus  # noqa: E402

LOAD_PAUSE = 0.1  # seconds between requests of an app's load: ten a second, 50 in the error rate's window


class MetricsStack:
    """The metrics apps of every collected module that uses them and one prometheus scraping each (its own job)
    every 0.5 s; a spare prometheus scraping the healthy app when a collected test stops its own.

    Started once per pytest process: a new prometheus scrapes its targets only about 5 s after it starts (its
    target discovery sends them every 5 s), so each module reusing it waits for no first scrape. An app sends
    load only while a module that uses it runs (``apps``)."""

    def __init__(self, workdir: Path, wanted: Dict[str, dict], spare: bool) -> None:
        self.settings = wanted
        self.apps: Dict[str, MetricsApp] = {}
        self.prometheus: Optional[Prometheus] = None
        self.spare: Optional[Prometheus] = None
        self.workdir = workdir
        try:
            for name, settings in wanted.items():
                self.apps[name] = MetricsApp(name).start()
                self.reset(name)
            self.prometheus = self.launch("prometheus", {name: [app.address] for name, app in self.apps.items()})
            if spare:
                self.spare = self.launch("spare-prometheus", {JOB: [self.apps[JOB].address]})
        except BaseException:
            self.stop()
            raise

    def launch(self, name: str, jobs: Dict[str, List[str]]) -> Prometheus:
        """A prometheus started (ready for queries, not yet scraping) in a directory of its own."""
        workdir = self.workdir / name
        while workdir.exists():
            workdir = workdir.with_name(workdir.name + "-again")
        return _started(lambda: Prometheus(workdir, [], jobs=jobs, scrape_interval=SCRAPE_INTERVAL).start())

    def reset(self, name: str) -> None:
        """Put the app back to its settings (a test may have changed them)."""
        settings = self.settings[name]
        self.apps[name].set(error_rate=settings.get("error_rate", 0.0), latency=settings.get("latency", 0.0))

    def take_spare(self) -> Prometheus:
        """The spare prometheus (a new one if it was taken already: its first scrape is 5 s away)."""
        server, self.spare = self.spare, None
        return server or self.launch("spare-prometheus", {JOB: [self.apps[JOB].address]})

    def stop(self) -> None:
        for server in (self.spare, self.prometheus):
            if server is not None:
                server.stop()
        for app in self.apps.values():
            app.stop()


def module_apps(module: Any) -> Dict[str, dict]:
    """A module's ``METRICS_APPS`` (job name -> ``error_rate``, ``latency``, ``load``; default: one healthy app
    ``app`` under load)."""
    return getattr(module, "METRICS_APPS", {JOB: {}})


@pytest.fixture(scope="session")
def metrics_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsStack]:
    """The :class:`MetricsStack` of the collected modules that use it (an app's name means the same settings
    in every module)."""
    wanted: Dict[str, dict] = {}
    spare = False
    for item in request.session.items:
        if "metrics_stack" not in getattr(item, "fixturenames", ()):
            continue
        spare = spare or "own_prometheus" in item.fixturenames
        for name, settings in module_apps(item.module).items():
            if wanted.setdefault(name, settings) != settings:
                raise pytest.UsageError(f"metrics app {name!r}: {settings} in {item.module.__name__}, "
                                        f"{wanted[name]} elsewhere: give it another name")
    stack = MetricsStack(tmp_path_factory.mktemp("metrics"), wanted or {JOB: {}}, spare)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def apps(request: pytest.FixtureRequest, metrics_stack: MetricsStack) -> Iterator[Dict[str, MetricsApp]]:
    """The module's metrics apps (``METRICS_APPS``) under load while it runs, each with data in prometheus. Each
    app is set once: tests that share one read it only; a test that changes an app has one of its own (the
    module's alone, put back after it)."""
    wanted = module_apps(request.module)
    mine = {name: metrics_stack.apps[name] for name in wanted}
    try:
        for name, app in mine.items():
            if wanted[name].get("load", True):
                app.start_load(threads=1, pause=LOAD_PAUSE)
        server = metrics_stack.prometheus
        for name, app in mine.items():
            if app.under_load:
                server.wait_for(ERROR_RATE_QUERY % {"job": name}, poll=0.05)
            else:  # an idle app's error rate is 0/0, never finite: wait for the two scrapes a rate needs
                server.wait_for('count_over_time(up{job="%s"}[5s])' % name, lambda count: count >= 2, poll=0.05)
        yield mine
    finally:
        for name, app in mine.items():
            app.stop_load()
            metrics_stack.reset(name)


@pytest.fixture(scope="module")
def metrics_app(apps: Dict[str, MetricsApp]) -> MetricsApp:
    """The healthy app (no errors, no added latency) under a steady load: read it, never change it."""
    return apps[JOB]


@pytest.fixture(scope="module")
def prometheus(metrics_stack: MetricsStack, apps: Dict[str, MetricsApp]) -> Prometheus:
    """Debian's prometheus scraping each app (its own job) every 0.5 s, with data for the error-rate query of
    every app of the module under load: read it, never stop it."""
    return metrics_stack.prometheus


@pytest.fixture
def own_prometheus(metrics_stack: MetricsStack, metrics_app: MetricsApp) -> Iterator[Prometheus]:
    """A prometheus of the test's own (the test stops it) scraping the healthy app, with data: the stack's spare,
    started with it."""
    server = metrics_stack.take_spare()
    try:
        server.wait_for(ERROR_RATE_QUERY % {"job": JOB}, poll=0.05)
        yield server
    finally:
        server.stop()


@pytest.fixture
def nginx_lb(tmp_path: Path) -> Iterator[Nginx]:
    """Debian's nginx (own prefix, config, pid) in front of nothing yet: the test writes the upstream."""
    server = Nginx(tmp_path / "nginx")
    yield server
    server.stop()


@pytest.fixture
def local_inventory(tmp_path: Path) -> Path:
    """An inventory with one host, ``lb``, reached through the local connection."""
    path = tmp_path / "local.yml"
    path.write_text(json.dumps({"all": {"hosts": {"lb": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    return path


@pytest.fixture
def guard_vars(tmp_path: Path, prometheus: Prometheus) -> Dict[str, Any]:
    """Extra vars of a fast guard (a measurement per scrape, an operator's decision awaited 1 s) with its state,
    audit log and decision file in tmp."""
    return {
        "guard_metrics": gate_metrics(prometheus.url),
        "guard_interval": SCRAPE_INTERVAL, "guard_count": 4,
        "guard_rollback_role": "gitops.rollback.rollback_host",
        "guard_cooldown_path": str(tmp_path / "state" / "cooldown.json"),
        "guard_audit_log_path": str(tmp_path / "state" / "audit.jsonl"),
        "guard_decision_file": str(tmp_path / "state" / "decision"),
        "guard_decision_timeout": 1,
        "gitops_rollback_store_path": str(tmp_path / "store"),
    }
