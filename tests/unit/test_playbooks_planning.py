"""The dry-run answer is a play variable of each playbook (not a vars file Ansible would read for every task): one
expression, the same in every playbook that sets it."""

from __future__ import annotations

from pathlib import Path

import yaml

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
PLANNING = "{{ rollback_dry_run | default(false) | gitops.rollback.dry_run(ansible_check_mode) }}"
PLAY_FACT = "__gitops_rollback_play_planning"
PLAY_CHECK_MODE = "{{ %s | default(true) }}" % PLAY_FACT
PLANNING_FACT_TASKS = "tasks/planning_fact.yml"


def _plays():
    """(name, play) of every play of every playbook, named "<file> play <n>"."""
    for playbook in sorted(PLAYBOOKS.glob("*.yml")):
        for index, play in enumerate(yaml.safe_load(playbook.read_text()) or []):
            if isinstance(play, dict):
                yield "%s play %d" % (playbook.name, index + 1), play


def test_every_play_that_decides_the_dry_run_decides_it_the_same_way():
    decided = {name: play["vars"]["gitops_rollback_planning"] for name, play in _plays()
               if "gitops_rollback_planning" in (play.get("vars") or {})}
    assert {"checkpoint.yml", "demo.yml", "drill.yml", "guard.yml", "rollback.yml"} <= {
        name.split(" ")[0] for name in decided}, sorted(decided)
    assert {name: expression for name, expression in decided.items() if expression != PLANNING} == {}


def test_no_play_reads_its_settings_from_a_vars_file():
    """Ansible's main process reads and parses a play's vars files again for every task on every host (the drill's
    settings file: once per task result); play variables are parsed once, with the playbook."""
    assert [name for name, play in _plays() if play.get("vars_files")] == []


def test_a_play_with_a_templated_check_mode_decides_the_dry_run_once_per_host():
    """A play-level check_mode is templated again for every task on every host, in Ansible's workers; from the
    filter's expression, each worker loads the collection's filter plugin (a 3-host checkpoint run: 6.3 -> 5.0 CPU-s
    of Ansible). Each such play stores the answer as a fact in its first task, and its check_mode reads that fact.
    The first task, tagged always: a fact outlives its play, so a later play of the same run (a dry run, then the
    real one, as import_playbook chains them) must not run a task before it decides again; until the fact is set
    (the first play's first task, or one --start-at-task skips) the play plans in check mode."""
    (task,) = yaml.safe_load((PLAYBOOKS / PLANNING_FACT_TASKS).read_text())
    assert task["ansible.builtin.set_fact"] == {PLAY_FACT: "{{ gitops_rollback_planning }}"}
    decides, undecided = [], []
    for name, play in _plays():
        if "{{" not in str(play.get("check_mode", "")):
            continue
        decides.append(name)
        first = (play.get("pre_tasks") or play.get("tasks") or [{}])[0]
        if first.get("ansible.builtin.import_tasks") != PLANNING_FACT_TASKS or "always" not in first.get("tags", []) \
                or play["check_mode"] != PLAY_CHECK_MODE:
            undecided.append(name)
    assert {"checkpoint.yml play 1", "drill.yml play 1", "guard.yml play 1"} <= set(decides), decides
    assert undecided == []
