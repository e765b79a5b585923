#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_info
short_description: List the releases of a release root with their current, good and bad marks
version_added: 0.1.0
description:
  - Reads the index C(releases.json) of a release root managed by M(gitops.rollback.release) and
    where C(current) points. Read-only; never reports a change.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
options:
  root:
    description:
      - The release root directory on the host.
    type: path
    required: true
  release:
    description:
      - Id or label of one release to show. Fails, listing the releases there are, when unknown.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: gitops.rollback.release
"""

EXAMPLES = r"""
- name: List the releases of /srv/app
  gitops.rollback.release_info:
    root: /srv/app
  register: app_releases

- name: Show the release labelled v2.3.0
  gitops.rollback.release_info:
    root: /srv/app
    release: v2.3.0
"""

RETURN = r"""
releases:
  description: Releases, oldest deploy first (one element when O(release) is given).
  returned: always
  type: list
  elements: dict
  sample:
    - id: 20261121T221530.123Z
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
current:
  description: Id of the release C(current) points to; null when there is none.
  returned: always
  type: str
  sample: 20261121T221530.123Z
previous:
  description: Id of the release a rollback without a target would switch to; null when there is none.
  returned: always
  type: str
  sample: 20261120T101500.000Z
good:
  description: Id of the last known good release; null when none was marked.
  returned: always
  type: str
  sample: 20261121T221530.123Z
incomplete:
  description: Directories under C(releases/) that are not complete listed releases (interrupted deploys).
  returned: always
  type: list
  elements: str
  sample: []
root:
  description: The release root.
  returned: always
  type: str
  sample: /srv/app
"""

from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.release.operations import ReleaseParams, list_releases


def main() -> None:
    module = RollbackModule(
        dict(root=dict(type="path", required=True), release=dict(type="str")),
        error_details=("available", "labels"),
        supports_check_mode=True,
    )
    request = ReleaseParams(root=module.params["root"], owner="", release=module.params["release"])
    result = module.run(lambda: list_releases(request))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
