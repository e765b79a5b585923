"""Tag patterns and event decisions, re-exported from the collection's ``module_utils/_tags.py``.

The collection holds the one implementation (the ``gitops.rollback.tag_event`` filter used by the
playbooks under AWX imports it too); this module loads that file so the command line and the
playbooks decide alike.
"""

from __future__ import annotations

from .collection import find_collection, load_module_util

_tags = load_module_util(find_collection(), "_tags")

CHECKPOINT = _tags.CHECKPOINT
ROLLBACK = _tags.ROLLBACK
IGNORE = _tags.IGNORE
REFUSE = _tags.REFUSE
ZERO_SHA = _tags.ZERO_SHA
OBJECT_NAME = _tags.OBJECT_NAME
TAG_PREFIX = _tags.TAG_PREFIX
DEFAULT_RELEASE_PATTERNS = _tags.DEFAULT_RELEASE_PATTERNS
DEFAULT_ROLLBACK_PATTERN = _tags.DEFAULT_ROLLBACK_PATTERN
Decision = _tags.Decision
RefEvent = _tags.RefEvent
TagPatterns = _tags.TagPatterns
TagEventError = _tags.TagEventError
decide = _tags.decide
event_from_ref = _tags.event_from_ref
event_from_payload = _tags.event_from_payload
parse_post_receive = _tags.parse_post_receive
patterns_from = _tags.patterns_from
shown = _tags.shown

__all__ = [
    "CHECKPOINT", "DEFAULT_RELEASE_PATTERNS", "DEFAULT_ROLLBACK_PATTERN", "Decision", "IGNORE", "OBJECT_NAME", "ROLLBACK",
    "REFUSE", "RefEvent", "TAG_PREFIX", "TagEventError", "TagPatterns", "ZERO_SHA", "decide", "event_from_payload",
    "event_from_ref", "parse_post_receive", "patterns_from", "shown",
]
