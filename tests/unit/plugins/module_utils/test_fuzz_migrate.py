# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzzing of the migration directory reader and version parser: only RollbackError subclasses."""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrate_plan import load_migrations, parse_version

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.one_of(
    st.builds(lambda v, n, d: "V%s__%s.%s.sql" % (v, n, d),
              st.sampled_from(["1", "0001", "2", "01", "x", ""]), st.sampled_from(["init", "a_b", "", "ü"]),
              st.sampled_from(["up", "down", "side"])),
    st.text(alphabet="Vv_.0123456789abcsqlupdown", min_size=1, max_size=20).map(lambda s: s + ".sql"),
)
files = st.dictionaries(names, st.binary(max_size=40) | st.text(max_size=40).map(str.encode), max_size=6)


@FUZZ
@given(files)
def test_migration_reader_fails_only_with_a_clear_error(content):
    directory = tempfile.mkdtemp(prefix="fuzz-mig-")
    try:
        for name, data in content.items():
            with open(os.path.join(directory, name), "wb") as handle:
                handle.write(data)
        try:
            migrations = load_migrations(directory)
        except RollbackError:
            return
        versions = [m.version for m in migrations]
        assert versions == sorted(set(versions))
    finally:
        shutil.rmtree(directory)


@FUZZ
@given(st.text(max_size=12) | st.integers())
def test_version_parser_fails_only_with_a_clear_error(text):
    try:
        assert parse_version(text) >= 0
    except RollbackError:
        pass
