"""The GitOps modules that share an expensive session fixture run on one pytest-xdist worker together."""

from __future__ import annotations

from pathlib import Path

from harness.scheduling import SHARED_SCOPES, scope_of

ROOT = Path(__file__).resolve().parents[3]


def test_modules_sharing_a_session_fixture_are_one_scope_and_exist() -> None:
    """A renamed module would silently leave its group and make the fixture again on another worker."""
    assert [m for group in SHARED_SCOPES for m in group if not (ROOT / m).is_file()] == []
    for group in SHARED_SCOPES:
        assert {scope_of(f"{module}::test_x") for module in group} == {group[0]}, group
    assert scope_of("tests/integration/gitops/test_schedule.py::test_x") == "tests/integration/gitops/test_schedule.py"
