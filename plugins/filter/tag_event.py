# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter tag_event: AWX/Tower webhook extra vars -> checkpoint, rollback, ignore, refuse or manual.

The decision logic lives in module_utils/controller/tags.py, shared with the gitops-rollback command.
Documentation: tag_event.yml.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from ansible.errors import AnsibleFilterError


def tag_event(variables: Mapping[str, Any], release_patterns: Optional[Sequence[str]] = None,
              rollback_pattern: Optional[str] = None, processed_tags: Sequence[str] = (),
              processed_events: Sequence[str] = (), label_pattern: Optional[str] = None) -> Dict[str, Any]:
    """Decide what the webhook variables in ``variables`` trigger."""
    if not isinstance(variables, Mapping):
        raise AnsibleFilterError("tag_event expects a dict of the webhook variables (awx_webhook_payload, "
                                 "awx_webhook_event_type, awx_webhook_event_guid), got %s" % type(variables).__name__)
    # imported here: Ansible loads this file for any filter of the collection (plugin_utils/deferred.py)
    from ansible_collections.gitops.rollback.plugins.module_utils.controller.tags import TagEventError, decide_awx, patterns_from

    try:
        patterns = patterns_from(list(release_patterns) if release_patterns is not None else None, rollback_pattern,
                                 label_pattern)
        decision = decide_awx(variables, patterns, set(processed_tags or ()), set(processed_events or ()))
    except TagEventError as exc:
        raise AnsibleFilterError("tag_event: %s" % exc) from exc
    return decision.as_dict()


class FilterModule:
    """gitops.rollback tag filters."""

    def filters(self) -> Dict[str, Any]:
        return {"tag_event": tag_event}
