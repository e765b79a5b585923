#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: traffic_weights
short_description: Set the weights of an nginx upstream, test the configuration and reload
version_added: 0.1.0
description:
  - Writes an nginx C(upstream) block with one C(server) line per entry of O(servers) to O(path)
    (included by the nginx configuration), atomically (temporary file, fsync, rename).
  - Runs C(nginx -t) on the whole configuration (argument list, no shell); when it fails, the
    previous file is put back and nothing is reloaded. Then reloads nginx and, when O(pid_file)
    is given, waits until the workers of the old configuration are gone, so the new weights are
    in effect when the task returns.
  - A weight of 0 is written as C(down) (nginx has no weight 0). Weights that would leave no
    server to answer are refused before anything is written.
  - Idempotent; check mode reports the new weights and the diff and changes nothing.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.attributes
options:
  path:
    description: File holding the upstream block, included from the C(http) context.
    type: path
    required: true
  upstream:
    description: Name of the upstream (the C(proxy_pass http://NAME) target).
    type: str
    required: true
  servers:
    description:
      - The servers of the upstream, in order, with their weights. Give either O(servers) or
        O(stable), O(canary) and O(canary_percent).
    type: list
    elements: dict
    suboptions:
      address:
        description: C(host:port), C([ipv6]:port) or C(unix:/path).
        type: str
        required: true
      weight:
        description: Relative weight, 0 to 1000; 0 takes the server out (C(down)).
        type: int
        required: true
      parameters:
        description: Further C(server) parameters such as C(max_fails=3) or C(fail_timeout=5s).
        type: list
        elements: str
        default: []
  stable:
    description: Addresses of the stable servers (with O(canary) and O(canary_percent) instead of O(servers)).
    type: list
    elements: str
  canary:
    description: Addresses of the canary servers.
    type: list
    elements: str
  canary_percent:
    description:
      - Share of requests, 0 to 100, that the canary group receives in all; the stable group gets
        the rest. Weights are computed so the shares are exact whatever the group sizes.
    type: int
  parameters:
    description: C(server) parameters for every server when O(stable)/O(canary) are used.
    type: list
    elements: str
    default: []
  nginx_binary:
    description: The nginx program.
    type: str
    default: nginx
  nginx_args:
    description: Arguments given before C(-t) and C(-s reload), for example C([-p, /srv/lb, -c, /srv/lb/nginx.conf]).
    type: list
    elements: str
    default: []
  validate:
    description: Test the configuration with C(nginx -t) before reloading.
    type: bool
    default: true
  reload:
    description: Reload nginx after writing a changed file.
    type: bool
    default: true
  reload_command:
    description: Command that reloads nginx instead of C(nginx -s reload), for example C([systemctl, reload, nginx]).
    type: list
    elements: str
    default: []
  pid_file:
    description: nginx master pid file; when given, the task waits until the reload took effect.
    type: path
  reload_timeout:
    description: Seconds to wait for the new workers.
    type: float
    default: 10
attributes:
  check_mode:
    support: full
    details: Reports the weights and the diff; writes, tests and reloads nothing.
  diff_mode:
    support: full
seealso:
  - name: Health gates and staged traffic rollback
    description: docs/health-gates.md in the collection.
    link: https://github.com/gitops/rollback/blob/main/docs/health-gates.md
"""

EXAMPLES = r"""
- name: Send 10 % of requests to the canary group
  gitops.rollback.traffic_weights:
    path: /etc/nginx/conf.d/app-upstream.conf
    upstream: app
    stable: ["10.0.0.11:8080", "10.0.0.13:8080"]
    canary: ["10.0.0.12:8080"]
    canary_percent: 10
    pid_file: /run/nginx.pid

- name: Move half of the traffic back from the canary
  gitops.rollback.traffic_weights:
    path: /etc/nginx/conf.d/app-upstream.conf
    upstream: app
    servers:
      - {address: "10.0.0.11:8080", weight: 50}
      - {address: "10.0.0.12:8080", weight: 50, parameters: [max_fails=3]}
    reload_command: [systemctl, reload, nginx]
"""

RETURN = r"""
weights:
  description: Weight per server address after the task.
  returned: success
  type: dict
  sample: {"10.0.0.11:8080": 100, "10.0.0.12:8080": 0}
previous:
  description: Weight per server address found in O(path) before the task (empty when new).
  returned: success
  type: dict
  sample: {"10.0.0.11:8080": 50, "10.0.0.12:8080": 50}
shares:
  description: Percentage of requests each server receives.
  returned: success
  type: dict
  sample: {"10.0.0.11:8080": 100.0, "10.0.0.12:8080": 0.0}
commands:
  description: Commands run (or that would run in check mode).
  returned: success
  type: list
  elements: list
  sample: [[nginx, -t, -q], [nginx, -s, reload]]
reload_confirmed:
  description: Whether the old workers were seen gone after the reload; null when not checked.
  returned: success
  type: bool
  sample: true
"""

import os

from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.release.traffic import (
    Nginx, Server, apply, parse_weights, render, shares, split,
)


def _read(path: str) -> "bytes | None":
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _apply(module: RollbackModule, nginx: Nginx) -> dict:
    params = module.params
    path = params["path"]
    if params["servers"] is not None:
        servers = [Server(item["address"], item["weight"], tuple(item["parameters"])) for item in params["servers"]]
    else:
        servers = split(params["stable"], params["canary"], params["canary_percent"], params["parameters"])
    content = render(params["upstream"], servers)
    previous = _read(path)
    before_text = previous.decode("utf-8", "replace") if previous is not None else ""
    changed = previous != content.encode("utf-8")
    result = dict(changed=changed, weights={item.address: item.weight for item in servers},
                  previous=parse_weights(before_text), shares=shares(servers), commands=[],
                  reload_confirmed=None)
    if module.diff_mode:
        result["diff"] = dict(before=before_text, after=content, before_header=path, after_header=path)
    if changed and module.check_mode:
        result["commands"] = ([nginx.test_argv()] if params["validate"] else []) + (
            [nginx.reload_argv()] if params["reload"] else [])
    elif changed:
        if not os.path.isdir(os.path.dirname(path) or "."):
            module.fail_json(msg="Directory of %s does not exist; create it or fix path." % path)
        applied = apply(path, content, previous, nginx, params["validate"], params["reload"])
        result.update(commands=applied.commands, reload_confirmed=applied.reload_confirmed)
        if applied.reload_confirmed is False:
            module.warn("nginx was reloaded but old workers of %s still ran after %ss (long requests?)"
                        % (params["pid_file"], params["reload_timeout"]))
    return result


def main() -> None:
    server = dict(address=dict(type="str", required=True), weight=dict(type="int", required=True),
                  parameters=dict(type="list", elements="str", default=[]))
    module = RollbackModule(
        dict(
            path=dict(type="path", required=True), upstream=dict(type="str", required=True),
            servers=dict(type="list", elements="dict", options=server),
            stable=dict(type="list", elements="str"), canary=dict(type="list", elements="str"),
            canary_percent=dict(type="int"), parameters=dict(type="list", elements="str", default=[]),
            nginx_binary=dict(type="str", default="nginx"), nginx_args=dict(type="list", elements="str", default=[]),
            validate=dict(type="bool", default=True), reload=dict(type="bool", default=True),
            reload_command=dict(type="list", elements="str", default=[]), pid_file=dict(type="path"),
            reload_timeout=dict(type="float", default=10),
        ),
        required_one_of=[("servers", "canary_percent")],
        mutually_exclusive=[("servers", "canary_percent"), ("servers", "stable"), ("servers", "canary")],
        required_by={"canary_percent": ("stable", "canary")},
        error_details=("cmd", "rc", "stderr"),
        supports_check_mode=True,
    )
    params = module.params
    nginx = Nginx(params["nginx_binary"], params["nginx_args"], params["reload_command"], params["pid_file"],
                  params["reload_timeout"])
    result = module.run(lambda: _apply(module, nginx))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
