"""``gitops-rollback rollback``: the rollback playbook from the command line, whole or selective.

    gitops-rollback rollback --to v2.3.0 -i inventory.yml
    gitops-rollback rollback --to previous~2:v* -i inventory.yml --check        # the plan only
    gitops-rollback rollback --to v2.3.0 -i inventory.yml --components postgresql/billing
    gitops-rollback rollback --to v2.3.0 -i inventory.yml --layers config --paths /etc/app

The playbook runs through ansible-runner as the other commands run it (every value inert, ``!unsafe``);
``--layers``, ``--components`` and ``--paths`` become ``rollback_layers``, ``rollback_components`` and
``rollback_paths`` (managed paths, or paths below them), which the plan checks like any other run: the pre-flight and the safety checkpoint
cover exactly what will change.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .collection import find_collection, import_module_util
from .extravars import parse_extra_vars
from .runner import RunRequest, error_lines, prune_runs, run
from .state import default_state_path

LAYERS = ("flags", "traffic", "release", "config", "database", "infrastructure", "services")
COMPONENT = re.compile(r"[A-Za-z0-9@:/._+-]{1,200}")


class RollbackCommandError(RuntimeError):
    """Bad arguments: nothing ran."""


def _list(text: Optional[str]) -> List[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def rollback_extravars(args: argparse.Namespace, labels: Any) -> Dict[str, Any]:
    """The rollback playbook's extra vars for the command line, each checked first."""
    problem = labels.target_problem(args.to)
    if problem:
        raise RollbackCommandError("--to %s: %s. A target is %s." % (labels.escape(args.to), problem, labels.TARGET_GRAMMAR))
    variables: Dict[str, Any] = {**parse_extra_vars(args.extra_vars or []), "rollback_to": args.to,
                                 "rollback_trigger": "manual", "rollback_reason": args.reason or "gitops-rollback rollback"}
    layers = _list(args.layers)
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown:
        shown = ", ".join(map(labels.escape, unknown))
        raise RollbackCommandError("--layers: unknown %s; choose from %s." % (shown, ", ".join(LAYERS)))
    components = _list(args.components)
    bad = [name for name in components if not COMPONENT.fullmatch(name)]
    if bad:
        raise RollbackCommandError("--components: %s is not a component name (a database postgresql/app, a Terraform "
                                   "project default@infra, a release root or managed path /srv/app, a flag set "
                                   "file:/etc/shop/flags.json)." % labels.escape(bad[0]))
    paths = _list(args.paths)
    bad = [path for path in paths if not os.path.isabs(path) or os.path.normpath(path) != path.rstrip("/") or "\n" in path]
    if bad:
        raise RollbackCommandError("--paths: %s is not an absolute, normalized path." % labels.escape(bad[0]))
    if layers:
        variables["rollback_layers"] = layers
    if components:
        variables["rollback_components"] = components
    if paths:
        variables["rollback_paths"] = paths
    return variables


def cmd_rollback(args: argparse.Namespace) -> int:
    """Run the rollback playbook (in check mode with --check); 0 when it succeeded."""
    labels = import_module_util("common.labels", args.collections_path)
    try:
        extravars = rollback_extravars(args, labels)
    except RollbackCommandError as exc:
        print("gitops-rollback: %s" % exc)
        return 2
    ident = "rollback-cli-%s-%d" % (time.strftime("%Y%m%dT%H%M%S"), os.getpid())
    runs = default_state_path().parent / "runs"
    request = RunRequest(playbook="rollback", inventory=Path(args.inventory).resolve(), extravars=extravars,
                         collection_root=find_collection(args.collections_path), run_dir=runs / ident, ident=ident,
                         check=args.check)
    outcome = run(request, print)
    prune_runs(runs, args.keep_runs)
    if not outcome.ok:
        for line in error_lines(request, outcome):
            print("gitops-rollback: %s" % line)
    return 0 if outcome.ok else 1


def add_parser(sub: Any) -> None:
    """The ``rollback`` command."""
    parser = sub.add_parser("rollback", help="roll back now: every layer, or only some layers, components or paths",
                            description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--to", required=True, help="checkpoint id or label, or a relative target (previous, "
                        "previous~2:v*, latest:v2.3.*)")
    parser.add_argument("-i", "--inventory", required=True, help="Ansible inventory the playbook runs against")
    parser.add_argument("--layers", help="comma-separated layers (default: all, in order): " + ", ".join(LAYERS))
    parser.add_argument("--components", help="comma-separated components: only these roll back (a database "
                        "postgresql/app, a Terraform project default@infra, the release root, a flag set, a managed path)")
    parser.add_argument("--paths", help="comma-separated paths the config layer restores: managed paths, or paths "
                        "below them (/etc/app/nginx.conf), the rest of their managed path left as it is (default: all)")
    parser.add_argument("--reason", help="why (recorded in the audit log)")
    parser.add_argument("--check", action="store_true", help="the plan only: nothing changes on any host")
    parser.add_argument("-e", "--extra-vars", action="append", metavar="VARS", help="KEY=VALUE, JSON or @file")
    parser.add_argument("--collections-path", help="collections path holding gitops.rollback")
    parser.add_argument("--keep-runs", type=int, default=20, help="run directories (artifacts) kept (default 20)")
    parser.set_defaults(func=cmd_rollback)
