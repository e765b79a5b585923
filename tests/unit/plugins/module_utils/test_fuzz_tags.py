# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzzing of the webhook payload filter and tag patterns: only TagEventError (a validation error)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.gitops.rollback.plugins.module_utils.controller import tags as _tags
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLEAR = (_tags.TagEventError, RollbackError)

leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.sampled_from(
    ["refs/tags/v1.2.0", "refs/tags/rollback/v1.0.0", "refs/heads/main", "0" * 40, "tag", "tag_push", "v1"])
json_values = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
payloads = st.fixed_dictionaries({}, optional={
    key: json_values for key in ("ref", "after", "before", "deleted", "ref_type", "object_kind",
                                 "checkout_sha", "head_commit", "repository", "project")
}) | json_values
globs = st.text(alphabet="v*?[]{}.0123456789/rolback-", max_size=12)


@FUZZ
@given(payloads, st.sampled_from(["", "push", "create", "delete", "Tag Push Hook", "x"]), st.text(max_size=8))
def test_payload_filter_decides_or_refuses_clearly(payload, event_type, event_id):
    patterns = _tags.TagPatterns()
    try:
        event = _tags.event_from_payload(payload, event_type, event_id)
        decision = _tags.decide(event, patterns)
        json.dumps(decision.as_dict())
    except CLEAR:
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(["awx_webhook_payload", "tower_webhook_payload", "awx_webhook_event_type",
                                        "awx_webhook_event_guid"]), st.text(max_size=30) | payloads, max_size=3))
def test_awx_vars_decide_or_refuse_clearly(variables):
    try:
        _tags.decide_awx(variables, _tags.TagPatterns())
    except CLEAR:
        pass


@FUZZ
@given(st.lists(globs, max_size=3), globs | st.just("rollback/{target}") | st.text(max_size=12).map(
    lambda s: s + "{target}"), st.text(max_size=20))
def test_tag_patterns_match_or_refuse_clearly(release, rollback, tag):
    try:
        patterns = _tags.patterns_from(release, rollback)
    except CLEAR:
        return
    target = patterns.rollback_target(tag)
    assert target is None or (target and target in tag)
    assert patterns.is_release(tag) in (True, False)
