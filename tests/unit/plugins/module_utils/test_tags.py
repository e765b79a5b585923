"""Tag events to decisions (plugins/module_utils/controller/tags.py)."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.controller.tags import (
    TagEventError, TagPatterns, decide, decide_awx, event_from_payload, parse_post_receive, patterns_from)

SHA = "a" * 40
ZERO = "0" * 40
PATTERNS = patterns_from()


def _one(line: str):
    return decide(parse_post_receive(line)[0], PATTERNS)


@pytest.mark.parametrize("line,action,detail", [
    (f"{ZERO} {SHA} refs/tags/v2", "checkpoint", "v2"),
    (f"{ZERO} {SHA} refs/tags/rollback/v1.2.0", "rollback", "v1.2.0"),
    (f"{SHA} {SHA} refs/heads/main", "ignore", "branch push"),
    (f"{SHA} {ZERO} refs/tags/v2", "ignore", "deleted"),
    (f"{ZERO} {SHA} refs/tags/nightly", "ignore", "matches no pattern"),
])
def test_post_receive_lines(line: str, action: str, detail: str) -> None:
    decision = _one(line)
    assert decision.action == action
    assert detail in (decision.target if action == "rollback" else decision.tag if action == "checkpoint"
                      else decision.reason)


def test_processed_tags_and_duplicate_events_are_ignored() -> None:
    event = event_from_payload({"ref": "refs/tags/v2", "before": ZERO, "after": SHA}, "push", "guid-1")
    assert decide(event, PATTERNS).action == "checkpoint"
    assert "processed already" in decide(event, PATTERNS, processed_tags={"v2"}).reason
    assert "duplicate event guid-1" in decide(event, PATTERNS, processed_events={"guid-1"}).reason


def test_gitlab_tag_push_and_deletion() -> None:
    push = {"object_kind": "tag_push", "ref": "refs/tags/rollback/v3", "before": ZERO, "after": SHA,
            "checkout_sha": "b" * 40}
    decision = decide(event_from_payload(push, "Tag Push Hook", "uuid"), PATTERNS)
    assert (decision.action, decision.target, decision.commit) == ("rollback", "v3", "b" * 40)
    gone = dict(push, after=ZERO, checkout_sha=None)
    assert decide(event_from_payload(gone), PATTERNS).action == "ignore"


def test_github_create_event_and_ping() -> None:
    created = event_from_payload({"ref": "v9", "ref_type": "tag"}, "create")
    assert decide(created, PATTERNS).action == "checkpoint"
    assert "not a push" in decide(event_from_payload({"zen": "hi"}, "ping"), PATTERNS).reason


def test_awx_variables_with_either_prefix() -> None:
    payload = {"ref": "refs/tags/v4", "before": ZERO, "after": SHA}
    assert decide_awx({"tower_webhook_payload": payload, "tower_webhook_event_type": "push"}, PATTERNS).tag == "v4"
    assert decide_awx({"rollback_to": "v1"}, PATTERNS).action == "manual"


def test_custom_patterns() -> None:
    patterns = TagPatterns(("release-*", "v[0-9]*"), "revert-to-{target}-now")
    assert patterns.rollback_target("revert-to-v1-now") == "v1"
    assert patterns.rollback_target("revert-to--now") is None
    assert patterns.rollback_target("revert-to-v1-now\n") is None  # "$" would accept a trailing newline
    assert patterns.is_release("release-7") and patterns.is_release("v2") and not patterns.is_release("vx")
    with pytest.raises(TagEventError, match="exactly once"):
        TagPatterns(("v*",), "rollback/")


def test_bad_post_receive_line() -> None:
    with pytest.raises(TagEventError, match="line 1"):
        parse_post_receive("garbage\n")


MARKER = "/tmp/gitops-rollback-marker"
HOSTILE = [
    "rollback/{{ lookup('pipe', 'touch %s') }}" % MARKER,
    "rollback/{{lookup('pipe','touch${IFS}%s')}}" % MARKER,
    "v{%print(lookup('pipe','id'))%}",
    "v{#x#}",
    "rollback/v1${IFS}x",
    "v1\nrollback/v1",
    "v1\x00",
    "v" + "1" * 1024,
    "rollback/v" + "1" * 1024,
    "\u0440ollback/v1",   # Cyrillic er
    "v1\u2024",            # one dot leader
    "\uff56" + "1",        # fullwidth v
    "rollback/-v1",
    "rollback/../v1",
    "-v1",
]


@pytest.mark.parametrize("tag", HOSTILE)
def test_tags_outside_the_grammar_are_refused_before_anything_runs(tag: str) -> None:
    """Every way a tag reaches decide() (post-receive, payload, AWX) refuses it, with the name escaped."""
    events = [event_from_payload({"ref": "refs/tags/" + tag, "before": ZERO, "after": SHA}, "push", "guid-9"),
              decide_awx({"awx_webhook_payload": {"ref": "refs/tags/" + tag, "before": ZERO, "after": SHA},
                          "awx_webhook_event_type": "push"}, PATTERNS)]
    decisions = [decide(events[0], PATTERNS), events[1]]
    for decision in decisions:
        assert decision.action == "refuse", decision
        assert not decision.runs
        assert decision.target == "" and decision.tag == ""
        assert "is refused" in decision.reason
        for raw in ("{{", "{%", "{#", "\n", "\x00", "${", "\u0440", "\uff56", "\u2024"):
            assert raw not in decision.reason, decision.reason
        assert len(decision.reason) < 600


def test_the_refused_tag_is_kept_escaped_for_the_record() -> None:
    decision = decide(event_from_payload({"ref": "refs/tags/v{{ 7*7 }}", "before": ZERO, "after": SHA}), PATTERNS)
    assert decision.action == "refuse"
    assert decision.ref == "'refs/tags/v\\x7b\\x7b 7*7 \\x7d\\x7d'"
    assert "Tag 'v\\x7b\\x7b 7*7 \\x7d\\x7d' is refused: it contains '\\x7b'" in decision.reason


def test_a_commit_that_is_no_object_name_is_refused() -> None:
    event = event_from_payload({"ref": "refs/tags/v2", "before": ZERO, "after": "{{ 7*7 }}"}, "push")
    decision = decide(event, PATTERNS)
    assert decision.action == "refuse" and decision.commit == ""
    assert "not a Git object name" in decision.reason and "{{" not in decision.reason


def test_deleted_and_branch_refs_with_odd_names_are_ignored_and_printed_escaped() -> None:
    gone = decide(event_from_payload({"ref": "refs/tags/v{{x}}", "before": SHA, "after": ZERO}), PATTERNS)
    branch = decide(event_from_payload({"ref": "refs/heads/a\nb", "before": SHA, "after": SHA}), PATTERNS)
    assert gone.action == branch.action == "ignore"
    assert "{{" not in gone.reason + gone.ref and "\n" not in branch.reason + branch.ref


def test_a_label_pattern_narrows_the_grammar_and_cannot_widen_it() -> None:
    narrow = patterns_from(None, None, r"(rollback/)?v[0-9]+(\.[0-9]+)*")
    assert decide(parse_post_receive(f"{ZERO} {SHA} refs/tags/v2.1")[0], narrow).action == "checkpoint"
    assert decide(parse_post_receive(f"{ZERO} {SHA} refs/tags/rollback/v2")[0], narrow).target == "v2"
    refused = decide(parse_post_receive(f"{ZERO} {SHA} refs/tags/v2-rc1")[0], narrow)
    assert refused.action == "refuse" and "configured label pattern" in refused.reason
    wide = patterns_from(None, None, r".*")
    assert decide(parse_post_receive(f"{ZERO} {SHA} refs/tags/v{{{{x}}}}")[0], wide).action == "refuse"
    with pytest.raises(TagEventError, match="label pattern"):
        patterns_from(None, None, "v[")


def test_a_rollback_target_outside_the_grammar_is_refused() -> None:
    patterns = TagPatterns(("v*",), "revert-{target}")
    decision = decide(parse_post_receive(f"{ZERO} {SHA} refs/tags/revert-.hidden")[0], patterns)
    assert decision.action == "refuse" and "Rollback target" in decision.reason


def test_events_without_a_tag_keep_empty_fields() -> None:
    decision = decide(event_from_payload({"zen": "hi"}, "ping"), PATTERNS)
    assert (decision.tag, decision.ref, decision.event_id) == ("", "", "")
