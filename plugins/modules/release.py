#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release
short_description: Deploy, switch, roll back, mark and prune application releases (ansistrano layout)
version_added: 0.1.0
description:
  - Manages releases under a release root O(root) laid out as C(releases/<id>/), C(shared/) and a
    C(current) symlink to C(releases/<id>). C(current) is switched atomically by renaming a new
    symlink over it, so a reader never sees it missing.
  - The index C(releases.json) in the root records each release's id, label (Git tag), commit,
    creation time and marks (V(bad), V(good)); it is written atomically. A directory under
    C(releases/) that the index does not list is an incomplete release and is never switched to.
  - Every change holds the lock C(.gitops-rollback-release.lock) in the root.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.store
  - gitops.rollback.attributes
options:
  root:
    description:
      - The release root directory on the host (for example C(/srv/app)).
    type: path
    required: true
  state:
    description:
      - V(present) deploys a release from O(src) or from O(repo) at O(version), links O(shared)
        paths into it and switches C(current) to it unless O(activate=false). A release with the
        same O(release_id), else the same O(label), else the same content (tree digest or commit)
        is reused instead of deployed again.
      - V(rolled_back) switches C(current) to O(to), to the release recorded in O(checkpoint), or
        else to the newest release deployed before the current one that is not marked bad. The
        abandoned release is marked V(bad) and kept unless O(keep_bad=false).
      - V(good) marks the current release (or O(release)) as the last known good one, for example
        after a health gate passed.
      - V(pruned) keeps the newest O(keep) releases and never removes the current one, the last known
        good one, nor releases marked bad (unless O(prune_bad=true)); it also removes leftovers of
        interrupted deploys.
      - V(recorded) attaches the current release to checkpoint O(checkpoint) of the store at
        O(store_path) (created when no checkpoint has that label), as a component of type
        C(release) named after O(root) that holds the release id, label and commit.
    type: str
    choices: [present, rolled_back, good, pruned, recorded]
    default: present
  src:
    description:
      - Directory on the host holding the build to deploy. Mutually exclusive with O(repo).
    type: path
  repo:
    description:
      - Git repository URL or path to deploy from (cloned with the git CLI, without its C(.git)).
      - A token or password in the URL (C(https://TOKEN@host/repo.git), C(https://user:password@host/repo.git))
        is masked in logs and results and never stored in the release's record.
    type: str
  version:
    description:
      - Tag, branch or commit of O(repo) to deploy. When it is a tag it is also the default O(label).
    type: str
    default: HEAD
  release_id:
    description:
      - Id of the new release (a directory name). Default is the UTC time, such as V(20261121T221530.123Z),
        so ids sort by deploy time.
    type: str
  label:
    description:
      - Label of the new release, usually its Git tag; O(to) accepts it.
    type: str
  commit:
    description:
      - Git commit recorded with a release deployed from O(src).
    type: str
  shared:
    description:
      - Paths relative to the release linked to C(shared/<path>) (such as V(log) or
        V(config/app.yml)). A path missing under C(shared/) is seeded from the release, or created as
        an empty directory.
    type: list
    elements: str
    default: []
  activate:
    description:
      - Switch C(current) to the deployed release. V(false) only stages it.
    type: bool
    default: true
  to:
    description:
      - Release id or label to roll back to. Fails, listing the releases there are, when unknown.
    type: str
  checkpoint:
    description:
      - With O(state=rolled_back), roll back to the release this checkpoint recorded for O(root).
      - With O(state=recorded), the checkpoint id or label to attach the current release to.
    type: str
  keep_bad:
    description:
      - Keep the abandoned release on disk for forensics after a rollback; V(false) removes it.
    type: bool
    default: true
  reason:
    description:
      - Why a release is rolled back or marked good; recorded in the index.
    type: str
  release:
    description:
      - With O(state=good), the release id or label to mark instead of the current one.
    type: str
  keep:
    description:
      - With O(state=pruned), how many of the newest releases to keep (at least 1).
    type: int
    default: 5
  prune_bad:
    description:
      - With O(state=pruned), also remove old releases marked bad.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows where C(current) points before and after.
seealso:
  - module: gitops.rollback.release_info
  - module: gitops.rollback.checkpoint
"""

EXAMPLES = r"""
- name: Deploy v2.4.0 from Git and make it current
  gitops.rollback.release:
    root: /srv/app
    repo: https://git.example.com/shop.git
    version: v2.4.0
    shared: [log, config/app.yml]

- name: Deploy a build directory without switching to it
  gitops.rollback.release:
    root: /srv/app
    src: /tmp/build-1234
    label: v2.4.1
    activate: false

- name: Mark the current release good after the health gate
  gitops.rollback.release:
    root: /srv/app
    state: good

- name: Roll back to the previous release (the current one is marked bad and kept)
  gitops.rollback.release:
    root: /srv/app
    state: rolled_back
    reason: error rate above 5 %

- name: Roll back to v2.3.0
  gitops.rollback.release:
    root: /srv/app
    state: rolled_back
    to: v2.3.0

- name: Keep five releases (never the current or last good one)
  gitops.rollback.release:
    root: /srv/app
    state: pruned
    keep: 5

- name: Record the current release in checkpoint v2.4.0
  gitops.rollback.release:
    root: /srv/app
    state: recorded
    checkpoint: v2.4.0
"""

RETURN = r"""
release:
  description: The release that is (or in check mode would be) current. State V(new) in check mode for one not yet deployed.
  returned: always
  type: dict
  sample:
    id: 20261121T221530.123Z
    label: v2.3.0
    commit: 3f2c1e0a9d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a
    created: "2026-11-21T22:15:30Z"
    source: https://git.example.com/shop.git@v2.3.0
    path: /srv/app/releases/20261121T221530.123Z
    state: active
    marks: [good]
    current: true
    good: true
    bad: false
verified:
  description:
    - With O(state=rolled_back), true when the switch was made and C(current), read back from disk
      afterwards, points to the target release (the module fails otherwise).
  returned: when a rollback switched current (not in check mode)
  type: bool
  sample: true
previous_release:
  description: The release that was current before, when it changed.
  returned: always
  type: dict
  sample:
    id: 20261122T091002.001Z
    label: v2.4.0
    state: bad
    marks: [bad]
current:
  description: Id of the release C(current) points to afterwards (or would in check mode).
  returned: always
  type: str
  sample: 20261121T221530.123Z
root:
  description: The release root.
  returned: always
  type: str
  sample: /srv/app
commands:
  description: Git commands run (or that would run) to deploy, as argument lists.
  returned: always
  type: list
  elements: list
  sample: [[git, ls-remote, --, https://git.example.com/shop.git, v2.4.0]]
created:
  description: Whether O(state=present) deployed a new release (or would in check mode).
  returned: when O(state=present)
  type: bool
  sample: true
would_create:
  description: Id the new release would get.
  returned: in check mode when O(state=present) would deploy
  type: str
  sample: 20261121T221530.123Z
staged:
  description: Id of the release deployed with O(activate=false).
  returned: when O(state=present) and O(activate=false)
  type: str
  sample: 20261121T221530.123Z
marked_bad:
  description: Id of the release abandoned by the rollback and marked bad.
  returned: when O(state=rolled_back) switched away from a release
  type: str
  sample: 20261122T091002.001Z
marked_good:
  description: Id of the release marked last known good.
  returned: when O(state=good)
  type: str
  sample: 20261121T221530.123Z
removed:
  description: Ids of releases removed (by pruning, or the bad release with O(keep_bad=false)).
  returned: when O(state=pruned) or O(state=rolled_back)
  type: list
  elements: str
  sample: [20261101T101010.000Z]
leftovers_removed:
  description: Directories of interrupted deploys removed by pruning.
  returned: when O(state=pruned)
  type: list
  elements: str
  sample: []
checkpoint:
  description: The checkpoint the release was attached to.
  returned: when O(state=recorded)
  type: dict
  sample: {id: 20261121T220257.448Z-452f73, label: v2.4.0}
component:
  description: The release component attached to the checkpoint.
  returned: when O(state=recorded)
  type: dict
  sample: {type: release, name: /srv/app, release: 20261121T221530.123Z, label: v2.4.0, commit: null, blobs: []}
diff:
  description: Where C(current) points before and after.
  returned: in diff mode
  type: dict
  sample:
    before: "current -> releases/20261122T091002.001Z (v2.4.0)\n"
    after: "current -> releases/20261121T221530.123Z (v2.3.0)\n"
"""

from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.common.lock import default_owner
from ansible_collections.gitops.rollback.plugins.module_utils.module.options import check_label_options
from ansible_collections.gitops.rollback.plugins.module_utils.release.operations import ReleaseParams, apply

STATES = ["present", "rolled_back", "good", "pruned", "recorded"]


def argument_spec() -> dict:
    """Return the module's options."""
    spec = dict(
        root=dict(type="path", required=True),
        state=dict(type="str", choices=STATES, default="present"),
        src=dict(type="path"),
        repo=dict(type="str"),
        version=dict(type="str", default="HEAD"),
        release_id=dict(type="str"),
        label=dict(type="str"),
        commit=dict(type="str"),
        shared=dict(type="list", elements="str", default=[]),
        activate=dict(type="bool", default=True),
        to=dict(type="str"),
        checkpoint=dict(type="str"),
        keep_bad=dict(type="bool", default=True),
        reason=dict(type="str"),
        release=dict(type="str"),
        keep=dict(type="int", default=5),
        prune_bad=dict(type="bool", default=False),
    )
    return spec


def _apply(params: dict, request: ReleaseParams) -> dict:
    check_label_options(params, "label")
    return apply(params["state"], request)


def main() -> None:
    module = RollbackModule(
        argument_spec(),
        store=True,
        error_details=("available", "labels"),
        secret_urls=lambda params: [params.get("repo")],
        mutually_exclusive=[("src", "repo"), ("to", "checkpoint")],
        required_if=[("state", "present", ("src", "repo"), True), ("state", "recorded", ("checkpoint",))],
        supports_check_mode=True,
    )
    params = dict(module.params)
    fields = {name: params[name] for name in ReleaseParams.__dataclass_fields__ if name in params}
    fields["owner"] = default_owner(params.get("owner"))
    request = ReleaseParams(check_mode=module.check_mode, diff=module.diff_mode, **fields)
    result = module.run(lambda: _apply(params, request))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
