"""``gitops-rollback rollback``: the command line becomes the rollback playbook's extra vars, checked first. Pure."""

from __future__ import annotations

import pytest

from gitops_rollback.cli import build_parser
from gitops_rollback.collection import import_module_util
from gitops_rollback.rollback import RollbackCommandError, rollback_extravars

LABELS = import_module_util("common.labels", None)


def extravars(*argv: str) -> dict:
    return rollback_extravars(build_parser().parse_args(["rollback", "-i", "inventory.yml", *argv]), LABELS)


def test_a_selective_rollback_names_its_layers_components_and_paths() -> None:
    assert extravars("--to", "previous~2:v*", "--layers", "flags, database", "--components",
                     "postgresql/billing,default@dns", "--paths", "/etc/app") == {
        "rollback_to": "previous~2:v*", "rollback_trigger": "manual", "rollback_reason": "gitops-rollback rollback",
        "rollback_layers": ["flags", "database"], "rollback_components": ["postgresql/billing", "default@dns"],
        "rollback_paths": ["/etc/app"]}
    assert extravars("--to", "v2.3.0", "-e", "rollback_serial=2") == {
        "rollback_serial": "2", "rollback_to": "v2.3.0", "rollback_trigger": "manual",
        "rollback_reason": "gitops-rollback rollback"}


@pytest.mark.parametrize("argv, message", [
    (["--to", "previous~0"], "--to 'previous~0': it counts back 0 checkpoints"),
    (["--to", "v1", "--layers", "config,files"], "--layers: unknown 'files'"),
    (["--to", "v1", "--components", "{{ lookup('pipe','id') }}"], "--components: '\\x7b\\x7b lookup"),
    (["--to", "v1", "--paths", "etc/app"], "--paths: 'etc/app' is not an absolute, normalized path"),
    (["--to", "v1", "--paths", "/etc/../app"], "--paths: '/etc/../app' is not an absolute, normalized path"),
])
def test_anything_outside_the_grammar_is_refused_before_a_playbook_runs(argv, message) -> None:
    with pytest.raises(RollbackCommandError) as caught:
        extravars(*argv)
    assert str(caught.value).startswith(message), str(caught.value)
