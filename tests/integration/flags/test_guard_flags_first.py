"""The guard's first response: a bad feature flag flip, seen by the health gate, is undone by the flags layer
alone (ansible-playbook gitops.rollback.guard with guard_first_response=flags); nothing slower runs."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from harness import repo_root

pytestmark = pytest.mark.slow
GUARD = str(repo_root() / "playbooks" / "guard.yml")
INTERVAL = 2.0
GOOD = '{"checkout_v2": false, "banner": "winter"}\n'
BAD = '{"checkout_v2": true, "banner": "winter"}\n'


class Shop(http.server.ThreadingHTTPServer):
    """An app that reads its flags file on every request: the new checkout fails every order."""

    def __init__(self, flags: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.flags = flags
        self.requests: List[float] = []
        self.changed = threading.Condition()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d/health" % self.server_address[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802  (the http.server name)
        shop = self.server
        errors = 1.0 if json.loads(shop.flags.read_text()).get("checkout_v2") else 0.0
        body = json.dumps({"error_rate": errors}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with shop.changed:
            shop.requests.append(time.monotonic())
            shop.changed.notify_all()

    def log_message(self, *args) -> None:  # pylint: disable=arguments-differ
        pass


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    flags = tmp_path / "etc" / "flags.json"
    flags.parent.mkdir()
    flags.write_text(GOOD)
    server = Shop(flags)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_bad_flag_flip_is_undone_by_the_flags_layer_alone_within_one_interval_and_a_second(
        run_playbook, run_task, shop: Shop, tmp_path: Path) -> None:
    store, config = tmp_path / "store", tmp_path / "srv" / "app"
    config.mkdir(parents=True)
    (config / "app.ini").write_text("workers = 4\n")
    flag_set = {"backend": "file", "path": str(shop.flags)}
    for module, args in (("gitops.rollback.checkpoint", {"paths": [str(config)], "label": "v1"}),
                         ("gitops.rollback.feature_flags", dict(flag_set, state="checkpointed", checkpoint="v1"))):
        _run, made = run_task(module, dict(args, store_path=str(store)))  # the release checkpoint v1 (set-up)
        assert made["status"] == "ok", made
    (config / "app.ini").write_text("workers = 8\n")  # v2 deployed: its config stays, whatever the flags do
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"shop1": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    audit_log = tmp_path / "state" / "audit.jsonl"
    extra = {
        "rollback_to": "v1", "guard_first_response": "flags", "guard_first_response_count": 1,
        "guard_metrics": [{"name": "checkout-errors", "severity": "critical", "success_condition": "result < 0.5",
                           "provider": {"type": "http", "url": shop.url, "value": "json", "json_path": "error_rate"}}],
        "guard_interval": INTERVAL, "guard_count": 60,
        "guard_cooldown_path": str(tmp_path / "state" / "cooldown.json"), "guard_audit_log_path": str(audit_log),
        "gitops_rollback_store_path": str(store), "gitops_rollback_flags": [flag_set],
        "gitops_rollback_paths": [str(config)],
    }
    outcome = {}
    guard = threading.Thread(target=lambda: outcome.update(run=run_playbook(GUARD, inventory=inventory,
                                                                            extra_vars=extra)))
    guard.start()
    with shop.changed:  # the gate measures a healthy shop, then the flag flips right after that measurement:
        assert shop.changed.wait_for(lambda: len(shop.requests) >= 1, timeout=120), "the gate never measured"
        flipped = time.monotonic()  # the worst moment, a whole interval before the next measurement
        shop.flags.write_text(BAD)
    undone = None
    while guard.is_alive() and undone is None:
        if json.loads(shop.flags.read_text())["checkout_v2"] is False:
            undone = time.monotonic()
        time.sleep(0.02)
    guard.join()
    run = outcome["run"]
    assert run.ok, str(run)
    assert undone is not None, "the flags were not put back while the guard ran"
    detected = next(t for t in shop.requests if t > flipped)
    print("flag flip undone %.3f s after the flip: detected %.3f s after it, put back %.3f s after that"
          % (undone - flipped, detected - flipped, undone - detected))
    assert undone - flipped <= INTERVAL + 1.0, (
        "undone %.2f s after the flip (detected after %.2f s, put back %.2f s after that)"
        % (undone - flipped, detected - flipped, undone - detected))
    assert shop.flags.read_text() == GOOD  # byte for byte
    assert (config / "app.ini").read_text() == "workers = 8\n"  # no slower layer ran
    records = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert [(r["operation"], r["event"]) for r in records] == [
        ("guard", "alert"), ("guard", "progress"), ("guard", "completed")], records
    assert "no other layer was rolled back" in records[-1]["reason"]
    safety = records[1]["reason"].split("(the flags as they were: ")[1].split(")")[0]
    _run, listed = run_task("gitops.rollback.checkpoint_info", {"store_path": str(store), "checkpoint": safety})
    assert [c["label"] for c in listed["checkpoints"]] == [safety]  # the bad flags, kept to undo the undo
