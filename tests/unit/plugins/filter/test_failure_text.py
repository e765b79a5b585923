"""failure_text names the failed item, its command and exit code (plugins/filter/failure_text.py)."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.filter.failure_text import failure_text


def test_a_failed_loop_names_each_failed_item_with_its_command_and_exit_code():
    result = {"failed": True, "msg": "One or more items failed", "results": [
        {"changed": True, "rc": 0, "cmd": ["touch", "/run/ok"], "_ansible_item_label": "web"},
        {"failed": True, "msg": "non-zero return code", "rc": 3, "cmd": ["systemctl", "restart", "app"],
         "stderr": "Job for app.service failed.\nSee journalctl -xeu app.service\n", "_ansible_item_label": "app"},
    ]}
    assert failure_text(result) == ("item app: failed (command: systemctl restart app; exit code 3; "
                                    "stderr: See journalctl -xeu app.service)")


def test_a_plain_failure_keeps_its_message():
    assert failure_text({"failed": True, "msg": "Checkpoint 'v9' is not in /s"}) == "Checkpoint 'v9' is not in /s"
    assert failure_text({"failed": True, "msg": "boom", "cmd": "pg_restore -d app", "rc": 1}) == \
        "boom (command: pg_restore -d app; exit code 1)"
    assert failure_text(None) == "unknown failure"
