#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: feature_flags
short_description: Checkpoint feature flags, put them back, or turn flags off (the fastest rollback)
version_added: 0.1.0
description:
  - Captures a set of feature flags into a checkpoint (O(state=checkpointed)), puts back the flags a
    checkpoint holds (O(state=restored)), or turns named flags off (O(state=off)). Switching flags takes
    seconds, so it can come before any slower layer of a rollback, or be the guard's first response.
  - O(backend=file) - a JSON (or YAML) flags file on the host. It is stored byte for byte with its mode
    and owner and written back atomically (a new file beside it, fsynced, renamed over it), never through
    a symlink.
  - O(backend=etcd) - the keys under O(etcd_prefix) of an etcd v3 cluster, through its JSON gateway. They
    are stored with their exact bytes and written back in one transaction, which applies only when no key
    under the prefix was written since they were read; keys added since the checkpoint are deleted.
  - Idempotent; check mode reports the changes (RV(changes)) without writing; diff mode shows the flags
    before and after.
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.store
  - gitops.rollback.attributes
requirements:
  - PyYAML on the managed host for a YAML flags file (JSON needs nothing).
  - For O(backend=etcd), an etcd v3.4 or later cluster reachable from the host with its gRPC gateway
    (enabled by default); no Python library.
options:
  state:
    description:
      - V(checkpointed) stores the current flags in the checkpoint O(checkpoint) (created when the label is new).
      - V(restored) puts back the flags checkpoint O(checkpoint) holds.
      - V(off) sets the flags O(names) to false (V(false) in etcd).
    type: str
    choices: [checkpointed, restored, "off"]
    default: restored
  backend:
    description: Where the flags live.
    type: str
    choices: [file, etcd]
    default: file
  path:
    description:
      - The flags file, for O(backend=file). C(.yml)/C(.yaml) files are YAML, others JSON; either holds a
        mapping of flag names to values.
    type: path
  checkpoint:
    description:
      - Label or id of the checkpoint, for O(state=checkpointed) and O(state=restored).
    type: str
  names:
    description:
      - The flags to turn off, for O(state=off). For etcd, the keys after O(etcd_prefix). Fails, listing the
        flags there are, when one is unknown.
    type: list
    elements: str
    default: []
  reason:
    description: Why, recorded in a checkpoint this module creates.
    type: str
  safety_checkpoint:
    description:
      - For O(state=restored) and O(state=off), a label - before the flags change, they are stored as they are
        in this checkpoint (created when new), in the same call, so the change can itself be undone. Nothing
        is stored when nothing changes, nor in check mode.
    type: str
  etcd_endpoints:
    description: Client URLs of the etcd cluster (tried in order), e.g. V(https://etcd1.example.com:2379).
    type: list
    elements: str
    default: []
  etcd_prefix:
    description: The key prefix that holds the flags, e.g. V(/flags/shop/).
    type: str
  etcd_user:
    description: etcd user, when authentication is enabled.
    type: str
  etcd_password:
    description: Password of O(etcd_user).
    type: str
  etcd_ca_cert:
    description: CA certificate that signed the etcd servers' certificates (for C(https) endpoints).
    type: path
  etcd_client_cert:
    description: Client certificate for etcd's client certificate authentication.
    type: path
  etcd_client_key:
    description: Key of O(etcd_client_cert).
    type: path
  etcd_timeout:
    description: Seconds to wait for each etcd request.
    type: float
    default: 10
  gate:
    description:
      - A health gate with the options of M(gitops.rollback.health_check) (C(metrics), C(interval), C(count),
        C(initial_delay), C(failure_limit), C(consecutive_error_limit), C(inconclusive_limit),
        C(health_threshold), C(high_failures), C(prometheus_url)), evaluated here, on the host; the moment its
        verdict is C(fail), the flags are put back (O(state=restored)) or turned off (O(state=off)) in the same
        process - no task or connection in between. Any other verdict leaves the flags alone.
      - The guard's first response (C(guard_first_response=flags)). RV(gate) holds the evaluation.
    type: dict
attributes:
  check_mode:
    support: full
    details: Reports RV(changes) and writes nothing.
  diff_mode:
    support: full
    details: The flags before and after, as JSON.
seealso:
  - module: gitops.rollback.checkpoint
  - module: gitops.rollback.guard_cooldown
"""

EXAMPLES = r"""
- name: Record the flags with the release checkpoint
  gitops.rollback.feature_flags:
    state: checkpointed
    path: /etc/shop/flags.json
    checkpoint: v2.4.0

- name: Roll the flags back to v2.3.0 first, before any slower layer
  gitops.rollback.feature_flags:
    path: /etc/shop/flags.json
    checkpoint: v2.3.0

- name: Turn the new checkout off now (the guard's first response)
  gitops.rollback.feature_flags:
    state: "off"
    backend: etcd
    etcd_endpoints: [https://etcd1.example.com:2379]
    etcd_prefix: /flags/shop/
    etcd_ca_cert: /etc/ssl/etcd-ca.pem
    etcd_user: shop
    etcd_password: "{{ vault_etcd_password }}"
    names: [checkout_v2]
"""

RETURN = r"""
flags:
  description: The flags after the operation (in check mode, what they would be), name to value.
  returned: always
  type: dict
  sample: {"checkout_v2": false, "banner": "winter"}
changes:
  description: The flags that change, each with its value before and after (null when absent).
  returned: when O(state=restored) or O(state=off)
  type: dict
  sample: {"checkout_v2": {"before": true, "after": false}}
gate:
  description: The evaluation of O(gate), as M(gitops.rollback.health_check) returns it (C(verdict), C(reason), ...).
  returned: when O(gate) is given
  type: dict
  sample: {"verdict": "fail", "reason": "metric checkout-errors failed", "detected": "2026-12-03T12:00:04.120Z"}
responded:
  description: Whether the gate failed and the flags were put back (or turned off).
  returned: when O(gate) is given
  type: bool
responded_at:
  description: When the flags were written (epoch seconds).
  returned: when the flags were put back after O(gate) failed
  type: float
safety_checkpoint:
  description: Id and label of the checkpoint the flags were stored in before they changed.
  returned: when O(safety_checkpoint) is given and the flags changed
  type: dict
  sample: {"id": "20261203T092450.101Z-c0ffee", "label": "safety/guard-20261203T092450-1"}
checkpoint:
  description: Id and label of the checkpoint the flags were stored in or restored from.
  returned: when O(state=checkpointed) or O(state=restored)
  type: dict
  sample: {"id": "20261203T092446.462Z-ab8fb3", "label": "v2.4.0"}
"""

from ansible_collections.gitops.rollback.plugins.module_utils.release.flags import (
    FlagsError, FlagsRequest, backend_from, capture, restore, restore_when_unhealthy, turn_off)
from ansible_collections.gitops.rollback.plugins.module_utils.health.options import evaluate_gate, gate_params, urls
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.common.lock import default_owner
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store

OPERATIONS = {"checkpointed": capture, "restored": restore, "off": turn_off}


def run(module: RollbackModule) -> dict:
    """Build the request and run the chosen operation."""
    p = module.params
    if p["state"] in ("checkpointed", "restored") and not p["checkpoint"]:
        raise FlagsError("state=%s needs checkpoint: the label or id of the checkpoint." % p["state"])
    request = FlagsRequest(backend_from(p), Store(p["store_path"], p["encryption_key"]), default_owner(p["owner"]),
                           checkpoint=p["checkpoint"], names=p["names"], reason=p["reason"],
                           lock_timeout=p["lock_timeout"], check_mode=module.check_mode,
                           safety_checkpoint=p["safety_checkpoint"] if p["state"] != "checkpointed" else None)
    if p["gate"]:
        if p["state"] == "checkpointed":
            raise FlagsError("gate is for state=restored or state=off: the flags go back when the gate fails.")
        gate = gate_params(p["gate"])
        result = restore_when_unhealthy(request, lambda: evaluate_gate(gate))
    else:
        result = OPERATIONS[p["state"]](request)
    diff = result.pop("diff", None)
    if diff is not None and module.diff_mode:
        result["diff"] = diff
    return result


def main() -> None:
    module = RollbackModule(
        dict(
            state=dict(type="str", choices=["checkpointed", "restored", "off"], default="restored"),
            backend=dict(type="str", choices=["file", "etcd"], default="file"),
            path=dict(type="path"),
            checkpoint=dict(type="str"),
            names=dict(type="list", elements="str", default=[]),
            reason=dict(type="str"),
            safety_checkpoint=dict(type="str"),
            etcd_endpoints=dict(type="list", elements="str", default=[]),
            etcd_prefix=dict(type="str"),
            etcd_user=dict(type="str"),
            etcd_password=dict(type="str", no_log=True),
            etcd_ca_cert=dict(type="path"),
            etcd_client_cert=dict(type="path"),
            etcd_client_key=dict(type="path", no_log=False),
            etcd_timeout=dict(type="float", default=10),
            gate=dict(type="dict"),  # checked by gate_params, as health_check checks its options
        ),
        store=True,
        supports_check_mode=True,
        secret_urls=lambda params: urls(params.get("gate") or {}),
    )
    module.exit_json(**module.run(lambda: run(module)))


if __name__ == "__main__":
    main()
