"""One audit destination for every entry point: each playbook and task that writes or reads the audit log
uses the inventory's gitops_rollback_audit_log (read by the lookup gitops.rollback.setting), so the report
links a guard's detection to its rollback and counts every run once."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "playbooks"
SETTING = "{{ lookup('gitops.rollback.setting', 'gitops_rollback_audit_log') }}"
# Where each file reads the setting: the rollback role and the drill through an alias of the lookup, the
# guard through its own setting falling back to it (resolved once, and handed to the rollback it runs).
ALIASES = {"roles/rollback/": "{{ __rollback_audit_log }}", "playbooks/tasks/drill_": "{{ __drill_audit_log }}",
           "roles/guard/": "{{ __guard_audit_log }}"}
GUARD_LOG = "{{ __guard_audit_log }}"
AUDIT_MODULE = "gitops.rollback.audit"
LOG_VARIABLES = ("guard_audit_log_path", "report_log_path", "gitops_rollback_audit_log", "log_path")


def walk(node, path=()):
    """Every (key path, value) of a YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,), value
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield path + (index,), value
            yield from walk(value, path + (index,))


def task_files():
    yield from sorted(PLAYBOOKS.glob("*.yml"))
    yield from sorted((PLAYBOOKS / "tasks").glob("*.yml"))
    yield from sorted(REPO.glob("roles/*/tasks/*.yml"))


def test_every_alias_is_the_inventorys_setting() -> None:
    assert yaml.safe_load((REPO / "roles/rollback/vars/main.yml").read_text())["__rollback_audit_log"] == SETTING
    assert yaml.safe_load((PLAYBOOKS / "drill.yml").read_text())[0]["vars"]["__drill_audit_log"] == SETTING
    guard = yaml.safe_load((REPO / "roles/guard/vars/main.yml").read_text())["__guard_audit_log_path"]
    assert guard.strip().endswith("else " + SETTING[3:]), guard
    assert not (PLAYBOOKS / "vars" / "inventory_layers.yml").exists(), "no mapping of inventory names onto others"


def test_every_audit_record_and_report_uses_that_log() -> None:
    wrong = []
    for path in task_files():
        document = yaml.safe_load(path.read_text())
        where = str(path.relative_to(REPO))
        for keys, value in walk(document):
            if not keys or keys[-1] not in LOG_VARIABLES or not isinstance(value, str):
                continue
            if keys[-1] == "log_path" and AUDIT_MODULE not in keys:
                continue
            if keys[-1] == "log_path" and where.startswith("roles/report/"):
                continue  # the report role reads report_log_path, checked where it is set
            allowed = {SETTING} | {alias for prefix, alias in ALIASES.items() if where.startswith(prefix)}
            if where == "roles/guard/tasks/batch_gate.yml":
                allowed = {"{{ __guard_audit_log_path }}"}
            if value.strip() not in allowed:
                wrong.append("%s %s: %s" % (where, ".".join(map(str, keys)), value))
    assert not wrong, "\n".join(wrong)


def test_the_guard_hands_its_log_to_the_rollback_it_runs() -> None:
    tasks = yaml.safe_load((REPO / "roles" / "guard" / "tasks" / "rollback.yml").read_text())
    includes = [task for _keys, task in walk(tasks)
                if isinstance(task, dict) and "ansible.builtin.include_role" in task]
    assert includes
    for task in includes:
        assert task["vars"]["gitops_rollback_audit_log"] == GUARD_LOG, task["name"]
    steps = (REPO / "roles" / "guard" / "tasks" / "guard_steps.yml").read_text()  # both guard_run*.yml import it
    assert '__guard_audit_log: "{{ __guard_audit_log_path }}"' in steps
