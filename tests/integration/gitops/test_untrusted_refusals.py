"""Every hostile tag, label and payload is refused before anything runs, decided in-process.

A playbook's first task decides whether outside values may go on: the ``input_check`` action reads
the extra vars raw (a label outside the grammar, template text Ansible trusts: "Refused before
anything ran"), then the webhook filter ``tag_event`` (as ``playbooks/tasks/awx_webhook.yml`` calls it)
refuses a tag, target or commit outside the grammar. Here the extra vars are loaded the way
``ansible-playbook`` loads them (``-e @payload.json``, ``-e key=value``, and AWX's ``env/extravars``,
which ansible-runner passes as ``-e @file``, with its ``!unsafe`` tags) and those two steps run
in-process, for every hostile variant of ``test_untrusted_refs.hostile`` and every entry point.
test_untrusted_payloads.py runs the playbooks for one variant of each path (the wiring) and checks
that nothing ran and no host changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Tuple

import pytest
from ansible.errors import AnsibleActionFail
from harness.actions import collection_module, extra_vars, run_action
from test_awx_runner import awx_extravars
from test_untrusted_payloads import webhook_vars
from test_untrusted_refs import hostile

MARKER = Path("/nonexistent/gitops-rollback-marker")
HOSTILE = [name for name, _git_ok in hostile(MARKER)]
EXPLOITS = [name for name in HOSTILE if "{{" in name and "\n" not in name]
"""The exploit itself (``{{ lookup('pipe', ...) }}``), for the entry points that take any string."""
IN_ARGV = [name for name in HOSTILE if "\x00" not in name and "\n" not in name]
"""argv holds no NUL, and ``-e KEY=VALUE`` splits at a newline."""
TEMPLATE_OR_CONTROL = ("{{", "{%", "{#", "\n", "\x00")

Launch = Callable[[Dict[str, Any], str], str]


def body_file(tmp_path: Path, data: Dict[str, Any], name: str = "payload.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(name="launch")
def fixture_launch(collections_path: Path) -> Iterator[Launch]:
    """``launch(extra_vars, expect) -> refusal``: what the first play of a playbook that acts on ``expect``
    events (rollback or checkpoint) says on these extra vars: the failure of its ``input_check`` task,
    else the ``awx_webhook.yml`` refusal of the webhook's ref; empty when the launch may go on."""
    input_check_action = collection_module(collections_path, "plugins.action.input_check").ActionModule
    tag_event = collection_module(collections_path, "plugins.filter.tag_event").tag_event

    def input_check(variables: Dict[str, Any]) -> str:
        try:
            run_action(input_check_action, {}, variable_manager_extra_vars=variables)
        except AnsibleActionFail as exc:
            return str(exc)
        return ""

    def webhook_refusal(variables: Dict[str, Any], expect: str) -> str:
        if "awx_webhook_payload" not in variables:
            return ""
        event = tag_event({name: variables.get(name) for name in (
            "awx_webhook_payload", "awx_webhook_event_type", "awx_webhook_event_guid")},
            release_patterns=["v*"], rollback_pattern="rollback/{target}")
        assert event["action"] in ("refuse", expect, "ignore"), event
        return event["reason"] + " Nothing runs for %s." % event["ref"] if event["action"] == "refuse" else ""

    yield lambda variables, expect: input_check(variables) or webhook_refusal(variables, expect)


def refused_lines(said: str) -> str:
    return "".join(line for line in said.splitlines() if "is refused" in line)


@pytest.mark.parametrize("expect", ["rollback", "checkpoint"])
@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_a_webhook_body_with_a_hostile_tag_is_refused(launch: Launch, tmp_path: Path, name: str,
                                                      expect: str) -> None:
    ref = ("refs/tags/rollback/" if expect == "rollback" else "refs/tags/") + name
    said = launch(extra_vars("-e", "@%s" % body_file(tmp_path, webhook_vars(ref, "guid-1"))), expect)
    assert "Refused before anything ran" in said or "is refused" in said, said
    assert not any(raw in refused_lines(said) for raw in TEMPLATE_OR_CONTROL), said


def test_template_text_anywhere_in_a_webhook_body_is_refused(launch: Launch, tmp_path: Path) -> None:
    """Even in a field nobody reads."""
    body = webhook_vars("refs/tags/rollback/v1", "guid-m", commits=[
        {"message": "fix {{ lookup('pipe', 'touch %s') }}" % MARKER}])
    said = launch(extra_vars("-e", "@%s" % body_file(tmp_path, body)), "rollback")
    assert said.startswith("Refused before anything ran: ")
    assert "awx_webhook_payload['commits'][0]['message'] holds template text" in said


@pytest.mark.parametrize("variable", ["rollback_to", "checkpoint_label", "guard_rollback_to"])
@pytest.mark.parametrize("name", IN_ARGV, ids=range(len(IN_ARGV)))
def test_a_plain_extra_var_outside_the_grammar_is_refused(launch: Launch, tmp_path: Path, name: str,
                                                          variable: str) -> None:
    """rollback.yml, guard.yml (``rollback_to``), checkpoint.yml and a play of the user's own that uses the
    checkpoint role (``checkpoint_label``) run the same check first."""
    said = launch(extra_vars("-e", "%s=%s" % (variable, name)), "rollback")
    assert said.startswith("Refused before anything ran: %s '" % variable) and "is refused" in said, said
    assert "{{" not in said, said


def awx_cases() -> Iterator[Tuple[str, str, bool]]:
    """(tag name, expected action, every extra var plain as with ALLOW_JINJA_IN_EXTRA_VARS=always)."""
    for name in HOSTILE:
        yield name, "rollback", False
        if name in EXPLOITS:
            yield name, "checkpoint", False
            yield name, "rollback", True


@pytest.mark.parametrize("name,expect,plain", list(awx_cases()), ids=range(len(list(awx_cases()))))
def test_an_awx_webhook_with_a_hostile_tag_is_refused(launch: Launch, tmp_path: Path, name: str, expect: str,
                                                      plain: bool) -> None:
    """AWX passes webhook variables ``!unsafe`` (or all plain): either way the tag is refused."""
    ref = ("refs/tags/rollback/" if expect == "rollback" else "refs/tags/") + name
    extravars = tmp_path / "extravars"
    extravars.write_text(awx_extravars(101, webhook_vars(ref, "guid-101"), all_plain=plain))
    said = launch(extra_vars("-e", "@%s" % extravars), expect)
    assert "is refused" in said or "holds template text" in said, said
    assert "{{" not in said and "\x00" not in said, said


@pytest.mark.parametrize("name", EXPLOITS, ids=range(len(EXPLOITS)))
def test_an_awx_survey_answer_with_a_template_is_refused(launch: Launch, tmp_path: Path, name: str) -> None:
    """A survey answer reaches the job ``!unsafe``: not rendered, and refused as a label."""
    extravars = tmp_path / "extravars"
    extravars.write_text(awx_extravars(102, {"rollback_to": name}))
    said = launch(extra_vars("-e", "@%s" % extravars), "rollback")
    assert "rollback_to '" in said and "is refused" in said, said


def test_valid_values_pass(launch: Launch, tmp_path: Path) -> None:
    """The same steps let a valid release tag, rollback tag and label through (the refusals above are theirs)."""
    for ref, expect in (("refs/tags/v2.1", "checkpoint"), ("refs/tags/rollback/v1", "rollback")):
        extravars = tmp_path / "extravars"
        extravars.write_text(awx_extravars(103, webhook_vars(ref, "guid-103")))
        assert launch(extra_vars("-e", "@%s" % extravars), expect) == ""
        assert launch(extra_vars("-e", "@%s" % body_file(tmp_path, webhook_vars(ref, "g"))), expect) == ""
    assert launch(extra_vars("-e", "rollback_to=v1", "-e", "checkpoint_label=v2.1"), "rollback") == ""
