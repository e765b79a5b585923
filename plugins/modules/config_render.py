#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: config_render
short_description: Render configuration templates from Git as of a tag and push them to hosts
version_added: 0.1.0
description:
  - The config layer in its GitOps form. On the controller, takes the tree of O(version) (a tag,
    branch or commit) of the config repository O(repo) with GitPython, renders every template
    under O(src) with the host's variables and copies the results under O(dest) on the host.
  - Each template is rendered and copied by M(ansible.builtin.template), so check mode shows
    what would change and diff mode shows the change per file.
  - Templates also see C(config_render_version) and C(config_render_commit).
  - The tree is read from the object database into a temporary directory (bare repositories
    work; the repository is never written to, so renders for several hosts and pushes can run at
    the same time) and removed afterwards.
  - This is an action plugin; it needs GitPython on the controller only.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
options:
  repo:
    description: Path of the config repository on the controller (bare or with a working tree).
    type: path
    required: true
  version:
    description: Tag, branch or commit to render, usually the release tag rolled back to.
    type: str
    required: true
  src:
    description: Directory inside the repository holding the templates (empty for the top).
    type: str
    default: ""
  dest:
    description: Directory on the host the rendered files go to, keeping the relative layout.
    type: path
    required: true
  suffix:
    description: Only files ending in this are templates; the suffix is dropped from the destination name.
    type: str
    default: .j2
  mode:
    description: Mode of the rendered files.
    type: raw
    default: "0644"
  owner:
    description: Owner of the rendered files.
    type: str
  group:
    description: Group of the rendered files.
    type: str
attributes:
  action:
    description: Runs on the controller as an action plugin.
    support: full
  check_mode:
    support: full
  diff_mode:
    support: full
seealso:
  - module: ansible.builtin.template
"""

EXAMPLES = r"""
- name: Render the configuration as of v2.3.0
  gitops.rollback.config_render:
    repo: /srv/git/config.git
    version: v2.3.0
    src: templates
    dest: /etc/app
    mode: "0640"

- name: Show what rolling the configuration back to v2.3.0 would change
  gitops.rollback.config_render:
    repo: /srv/git/config.git
    version: v2.3.0
    src: templates
    dest: /etc/app
  check_mode: true
  diff: true
"""

RETURN = r"""
commit:
  description: The commit the version names.
  returned: always
  type: str
  sample: 4f0c3b8e2a1d9c7b6a5f4e3d2c1b0a9f8e7d6c5b
version:
  description: The version rendered, as given.
  returned: always
  type: str
  sample: v2.3.0
files:
  description: The rendered files.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Destination on the host.
      type: str
      sample: /etc/app/app.yml
    template:
      description: Template path relative to O(src).
      type: str
      sample: app.yml.j2
    changed:
      description: Whether the file changed (or would change in check mode).
      type: bool
      sample: true
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    """Only reached when the action plugin is bypassed."""
    module = AnsibleModule(
        argument_spec=dict(
            repo=dict(type="path", required=True),
            version=dict(type="str", required=True),
            src=dict(type="str", default=""),
            dest=dict(type="path", required=True),
            suffix=dict(type="str", default=".j2"),
            mode=dict(type="raw", default="0644"),
            owner=dict(type="str"),
            group=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    module.fail_json(msg="gitops.rollback.config_render runs on the controller as an action plugin; "
                         "call it as a task, not with 'ansible -m' against a host's Python directly.")


if __name__ == "__main__":
    main()
