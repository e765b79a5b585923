"""Secrets never reach a log or a result: real ansible-playbook runs with -vvv, a real Prometheus
behind basic authentication, an HTTP endpoint that wants a bearer token and an API key, and a
webhook receiver that checks each POST's HMAC-SHA256 signature."""

from __future__ import annotations

import crypt  # pylint: disable=deprecated-module  # bcrypt hash for Prometheus' web config, stdlib only
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from harness import repo_root

pytestmark = pytest.mark.slow

PROM_PASSWORD = "promPASS-s3cret-111"
BEARER = "bearer-T0KEN-222"
API_KEY = "apikey-S3CRET-333"
HOOK_PATH = "hookpath-S3CRET-444"
HOOK_SECRET = "hmac-S3CRET-555"
DEAD_TOKEN = "deadtoken-S3CRET-666"
SECRETS = (PROM_PASSWORD, BEARER, API_KEY, HOOK_PATH, HOOK_SECRET, DEAD_TOKEN)
SIGNATURE = "X-Gitops-Rollback-Signature-256"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """A local HTTP server: ``/health`` wants the bearer token and the API key; ``/hooks/<path>``
    records webhook POSTs and whether their signature is valid."""

    def __init__(self) -> None:
        self.posts: List[Dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                ok = (self.headers.get("Authorization") == "Bearer " + BEARER
                      and self.path == "/health?api_key=" + API_KEY)
                self.send_response(200 if ok else 401)
                self.end_headers()
                self.wfile.write(b'{"up": 1}' if ok else b"{}")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
                receiver.posts.append({"path": self.path, "body": body, "signature": self.headers.get(SIGNATURE),
                                       "valid": hmac.compare_digest(expected, self.headers.get(SIGNATURE) or "")})
                self.send_response(204 if self.path == "/hooks/" + HOOK_PATH else 404)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's prometheus requiring basic authentication (user ``prom``); yields its URL with credentials.
    One server for the module: the tests only query it (``vector(0)``)."""
    binary = shutil.which("prometheus")
    if not binary:
        pytest.fail("prometheus is missing: apt-get install -y prometheus", pytrace=False)
    work = tmp_path_factory.mktemp("prometheus")
    hashed = crypt.crypt(PROM_PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))
    (work / "web.yml").write_text(json.dumps({"basic_auth_users": {"prom": hashed}}))
    (work / "prometheus.yml").write_text(json.dumps({"global": {"scrape_interval": "1m"}}))
    port = free_port()
    with open(work / "log", "ab") as log:
        proc = subprocess.Popen([binary, "--config.file=%s" % (work / "prometheus.yml"),
                                 "--web.config.file=%s" % (work / "web.yml"), "--storage.tsdb.path=%s" % (work / "data"),
                                 "--web.listen-address=127.0.0.1:%d" % port], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % port, timeout=1)  # nosec
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # up, and it wants credentials
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (work / "log").read_text()[-2000:]
            time.sleep(0.1)
        yield "http://prom:%s@127.0.0.1:%d" % (PROM_PASSWORD, port)
    finally:
        proc.terminate()
        proc.wait(10)


def metrics(receiver: Receiver) -> list:
    return [
        {"name": "prometheus-up", "severity": "critical",
         "provider": {"type": "prometheus", "query": "vector(0)", "timeout": 30}, "success_condition": "result < 1"},
        {"name": "health", "severity": "critical", "success_condition": "result == 200",
         "provider": {"type": "http", "url": receiver.url + "/health?api_key=" + API_KEY,
                      "headers": {"Authorization": "Bearer " + BEARER}, "timeout": 30}},
    ]


def assert_no_secret(where: str, text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, "%s shows %s" % (where, leaked)


def files_text(*roots: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for root in roots if root.exists()
                     for p in ([root] if root.is_file() else sorted(root.rglob("*"))) if p.is_file())


def test_health_check_and_audit_keep_every_secret_out_of_vvv_and_the_log(run_playbook, local_inventory, tmp_path,
                                                                         receiver, prometheus):
    log = tmp_path / "audit.jsonl"
    closed = "http://user:%s@127.0.0.1:%d/down?token=%s" % (DEAD_TOKEN, free_port(), DEAD_TOKEN)
    play = [{"name": "secrets", "hosts": "local", "gather_facts": False, "tasks": [
        {"name": "gate", "register": "gate", "gitops.rollback.health_check": {
            "prometheus_url": prometheus, "count": 1, "interval": 0, "metrics": metrics(receiver)}},
        {"name": "gate with an endpoint that is down", "register": "down", "gitops.rollback.health_check": {
            "count": 1, "interval": 0, "fail_on": ["error"], "consecutive_error_limit": 0,
            "metrics": [{"name": "down", "success_condition": "result == 200",
                         "provider": {"type": "http", "url": closed, "timeout": 1}}]},
         "ignore_errors": True},
        {"name": "audit", "gitops.rollback.audit": {
            "event": "completed", "operation": "guard", "run_id": "g-1", "log_path": str(log),
            "measurements": "{{ gate }}", "result": "{{ down }}",
            "webhook_url": receiver.url + "/hooks/" + HOOK_PATH, "webhook_secret": HOOK_SECRET}},
        {"name": "audit to a webhook that refuses", "gitops.rollback.audit": {
            "event": "completed", "operation": "guard", "run_id": "g-2", "log_path": str(log), "webhook_retries": 0,
            "webhook_url": receiver.url + "/elsewhere/" + HOOK_PATH, "webhook_secret": HOOK_SECRET}},
        {"name": "a drill's failed rollback pages nobody", "register": "drill", "gitops.rollback.audit": {
            "event": "failed", "operation": "rollback", "run_id": "d-1", "log_path": str(log), "trigger": "drill",
            "level": "critical", "webhook_url": receiver.url + "/hooks/" + HOOK_PATH, "webhook_secret": HOOK_SECRET}},
        {"name": "show the drill's webhook outcome", "ansible.builtin.debug": {"msg": "drill webhook {{ drill.webhook }}"}},
    ]}]
    result = run_playbook(play, inventory=local_inventory, verbosity=3)
    assert result.ok, result
    assert_no_secret("ansible-playbook -vvv", result.stdout + result.stderr)
    assert_no_secret("the audit log", files_text(log, Path(str(log) + ".head")))
    assert '"verdict": "pass"' in result.stdout  # the credentials were really sent: both metrics passed
    assert "HTTP endpoint http://user:********@127.0.0.1:" in result.stdout  # the failing one, redacted
    assert "Webhook http://127.0.0.1:%s/... did not accept" % receiver.url.rsplit(":", 1)[1] in result.stdout + result.stderr
    assert len(receiver.posts) == 2 and all(post["valid"] for post in receiver.posts), receiver.posts
    assert [json.loads(post["body"])["run_id"] for post in receiver.posts] == ["g-1", "g-2"]  # not the drill's
    assert json.loads(log.read_text().splitlines()[-1])["run_id"] == "d-1"  # the drill's record is in the log
    assert "a drill's records are not sent to the webhook" in result.stdout
    assert json.loads(receiver.posts[0]["body"])["hash"] == json.loads(log.read_text().splitlines()[0])["hash"]


def test_guard_and_rollback_playbooks_keep_every_secret_out(run_playbook, run_task, local_inventory, tmp_path, receiver,
                                                            prometheus):
    app = tmp_path / "srv" / "app"
    app.mkdir(parents=True)
    (app / "index.html").write_text("v1\n")
    store, log, state = tmp_path / "store", tmp_path / "state" / "audit.jsonl", tmp_path / "state"
    common = {"gitops_rollback_paths": [str(app)], "gitops_rollback_store_path": str(store),
              "gitops_rollback_audit_log": str(log), "rollback_lock_dir": str(state / "locks"),
              "gitops_rollback_webhook_url": receiver.url + "/hooks/" + HOOK_PATH,
              "gitops_rollback_webhook_secret": HOOK_SECRET}
    failing = metrics(receiver)
    failing[0]["success_condition"] = "result > 1"  # the gate fails: an automatic rollback
    guard_vars = {"guard_metrics": failing, "guard_prometheus_url": prometheus, "guard_interval": 0,
                  "guard_count": 1, "guard_cooldown_path": str(state / "cooldown.json"), "guard_on_error": "fail",
                  "guard_on_inconclusive": "fail"}
    index = str(app / "index.html")

    def deploy(content: str, now: str | None = None) -> dict:
        """A play writing index.html (after checking what the previous play left there)."""
        check = [{"name": "Read index.html", "ansible.builtin.slurp": {"src": index}, "register": "now"},
                 {"name": "Check what the previous play left", "ansible.builtin.assert": {
                     "that": ["now.content | b64decode == %s" % json.dumps(now)]}}] if now else []
        return {"name": "deploy " + content.strip(), "hosts": "local", "gather_facts": False,
                "tasks": check + [{"name": "Deploy", "ansible.builtin.copy": {"dest": index, "content": content}}]}

    # One run with -vvv: checkpoint.yml, a bad deploy, guard.yml (its failing gate rolls back), a check that the
    # guard put v1 back. rollback.yml runs on its own: a run that imports it after the guard's rollback would
    # take that rollback's run id (a fact) with it.
    playbooks = repo_root() / "playbooks"
    guarded = run_playbook([{"import_playbook": str(playbooks / "checkpoint.yml"),
                             "vars": {"checkpoint_label": "v1"}},
                            deploy("v2 broken\n"),
                            {"import_playbook": str(playbooks / "guard.yml"), "vars": guard_vars},
                            deploy("v2 again\n", now="v1\n")],
                           inventory=local_inventory, extra_vars={**common, "rollback_to": "v1"}, verbosity=3)
    assert guarded.ok, guarded
    assert [e["status"] for e in guarded.results("Check what the previous play left")] == ["ok"], guarded.results()

    rollback = run_playbook(str(playbooks / "rollback.yml"), inventory=local_inventory,
                            extra_vars={**common, "rollback_to": "v1"}, verbosity=3)
    assert rollback.ok, rollback
    assert (app / "index.html").read_text() == "v1\n"

    for name, run in (("checkpoint and guard", guarded), ("rollback", rollback)):
        assert_no_secret("the %s playbooks with -vvv" % name, run.stdout + run.stderr)
    assert_no_secret("the audit log, the store or the state", files_text(store, state))
    report = tmp_path / "report"
    _run, reported = run_task("gitops.rollback.rollback_report", {  # the module as Ansible runs it, no playbook run
        "log_path": str(log), "html_path": str(report / "r.html"), "prom_path": str(report / "r.prom"),
        "postmortem_path": str(report / "pm.md")})
    assert reported["status"] == "ok", reported
    assert_no_secret("the report", files_text(report))
    events = [json.loads(post["body"])["event"] for post in receiver.posts]
    assert events[0] == "alert" and events.count("completed") >= 2, events  # guard, its rollback, the rollback
    assert all(post["valid"] for post in receiver.posts), [p for p in receiver.posts if not p["valid"]]
