# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration directories for the db_migrate unit tests."""

from __future__ import annotations


def write(directory, version, name, up, down=None):
    """Write ``V<version>__<name>.up.sql`` (and its down script when given)."""
    (directory / ("V%04d__%s.up.sql" % (version, name))).write_text(up)
    if down is not None:
        (directory / ("V%04d__%s.down.sql" % (version, name))).write_text(down)


def write_chain(tmp_path):
    """Write five migrations, each creating (and its down script dropping) a table; return the directory."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    for version in range(1, 6):
        write(directory, version, "t%d" % version, "CREATE TABLE t%d (id INTEGER)" % version,
              "DROP TABLE t%d;\n" % version)
    return directory
