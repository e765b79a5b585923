"""One audit destination for every entry point: each playbook and task that writes or reads the audit log
uses the inventory's gitops_rollback_audit_log (through vars/inventory_layers.yml), so the report links a
guard's detection to its rollback and counts every run once."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "playbooks"
ENTRY_POINTS = ("checkpoint.yml", "rollback.yml", "guard.yml", "drill.yml", "report.yml")
ONE_LOG = "{{ rollback_audit_log }}"
# The guard resolves its log once (its own setting, else the play's rollback_audit_log) and hands it to the rollback.
GUARD_LOG = "{{ __guard_audit_log }}"
AUDIT_MODULE = "gitops.rollback.audit"
LOG_VARIABLES = ("guard_audit_log_path", "report_log_path", "rollback_audit_log", "log_path")


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


def test_every_entry_point_takes_the_inventorys_audit_log() -> None:
    layers = yaml.safe_load((PLAYBOOKS / "vars" / "inventory_layers.yml").read_text())
    assert layers["rollback_audit_log"].startswith("{{ gitops_rollback_audit_log | default("), layers
    for name in ENTRY_POINTS:
        for play in yaml.safe_load((PLAYBOOKS / name).read_text()):
            assert "vars/inventory_layers.yml" in play.get("vars_files", []), (name, play.get("name"))


def test_every_audit_record_and_report_uses_that_log() -> None:
    wrong = []
    for path in task_files():
        document = yaml.safe_load(path.read_text())
        where = str(path.relative_to(REPO))
        for keys, value in walk(document):
            if not keys or keys[-1] not in LOG_VARIABLES or not isinstance(value, str):
                continue
            in_guard_role = where.startswith("roles/guard/")
            if keys[-1] == "log_path" and AUDIT_MODULE not in keys:
                continue
            if keys[-1] == "log_path" and where.startswith("roles/report/"):
                continue  # the report role reads report_log_path, checked where it is set
            allowed = {ONE_LOG, GUARD_LOG} if in_guard_role else {ONE_LOG}
            if keys[-1] == "log_path" and where == "roles/guard/tasks/batch_gate.yml":
                allowed = {"{{ guard_audit_log_path if guard_audit_log_path | length > 0 else "
                           "(rollback_audit_log | default(omit)) }}"}
            if value.strip() not in allowed:
                wrong.append("%s %s: %s" % (where, ".".join(map(str, keys)), value))
    assert not wrong, "\n".join(wrong)


def test_the_guard_hands_its_log_to_the_rollback_it_runs() -> None:
    tasks = yaml.safe_load((REPO / "roles" / "guard" / "tasks" / "rollback.yml").read_text())
    includes = [task for _keys, task in walk(tasks)
                if isinstance(task, dict) and "ansible.builtin.include_role" in task]
    assert includes
    for task in includes:
        assert task["vars"]["rollback_audit_log"] == GUARD_LOG, task["name"]
    main = (REPO / "roles" / "guard" / "tasks" / "main.yml").read_text()
    assert "__guard_audit_log: >-" in main and "rollback_audit_log" in main
