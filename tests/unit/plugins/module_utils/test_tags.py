"""Tag events to decisions (plugins/module_utils/_tags.py)."""

from __future__ import annotations

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils._tags import (
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
    assert patterns.is_release("release-7") and patterns.is_release("v2") and not patterns.is_release("vx")
    with pytest.raises(TagEventError, match="exactly once"):
        TagPatterns(("v*",), "rollback/")


def test_bad_post_receive_line() -> None:
    with pytest.raises(TagEventError, match="line 1"):
        parse_post_receive("garbage\n")
