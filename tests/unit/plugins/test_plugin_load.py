"""What an Ansible worker compiles to load the collection's filter and lookup plugins.

To find any one filter of a collection, Ansible loads every filter file of that collection, in each worker
process that templates one, and its collection loader compiles the collection's Python from source each time.
So loading the filter files imports no engine module (plugins/plugin_utils/deferred.py), and the setting lookup,
which the roles' variables call in nearly every task, imports the settings table and nothing of the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import ansible_collections.gitops.rollback.plugins.filter.dry_run as a_filter

COLLECTION = Path(os.path.abspath(a_filter.__file__)).parents[2]  # <root>/ansible_collections/gitops/rollback
ENGINE = "ansible_collections.gitops.rollback.plugins.module_utils."

# Loads plugins as an Ansible worker does, in a fresh interpreter, and prints the engine modules they imported.
_LOAD = r"""
import importlib, json, sys
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
_AnsibleCollectionFinder(paths=[sys.argv[1]])._install()
before = set(sys.modules)
for name in sys.argv[2:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in set(sys.modules) - before if m.startswith(%r))))
""" % ENGINE


def engine_modules_loaded(*plugins: str) -> List[str]:
    """The module_utils modules (relative names) that importing ``plugins`` (e.g. ``filter.dry_run``) loads."""
    names = ["ansible_collections.gitops.rollback.plugins." + p for p in plugins]
    out = subprocess.run([sys.executable, "-c", _LOAD, str(COLLECTION.parents[2]), *names],
                         check=True, capture_output=True, text=True).stdout
    return [m[len(ENGINE):] for m in json.loads(out)]


def test_loading_every_filter_file_imports_no_engine_module():
    filters = sorted("filter." + p.stem for p in (COLLECTION / "plugins" / "filter").glob("*.py")
                     if p.stem != "__init__")
    assert len(filters) >= 8, filters
    assert engine_modules_loaded(*filters) == []


def test_the_setting_lookup_imports_the_settings_table_and_nothing_of_the_store():
    loaded = engine_modules_loaded("lookup.setting")
    assert "controller.namespace" in loaded
    assert set(loaded) <= {"controller", "controller.namespace", "store", "store.location"}, loaded


def test_a_deferred_filter_answers_as_its_engine_function():
    from ansible_collections.gitops.rollback.plugins.filter.rollback_outcome import FilterModule
    from ansible_collections.gitops.rollback.plugins.module_utils.controller.plan import layer_list

    deferred_layer_list = FilterModule().filters()["layer_list"]
    assert deferred_layer_list.__name__ == "layer_list"
    assert deferred_layer_list("config,database") == layer_list("config,database") == ["config", "database"]
