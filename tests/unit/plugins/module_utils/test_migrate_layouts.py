# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the migration layouts (detection, dbmate sections, Flyway), the script markers
and the MariaDB multi-statement wrapping (no server needed)."""

from __future__ import annotations

import os
import threading

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.db.mysql_migrations import mysql_batch, mysql_statements
from ansible_collections.gitops.rollback.plugins.module_utils.db.migrate_layouts import (
    _read, dbmate_sections, flyway_key, flyway_text, read_folder, wants_transaction,
)


def files(directory, names):
    for name, text in names.items():
        (directory / name).write_text(text)
    return str(directory)


@pytest.mark.parametrize("names, layout", [
    ({"V0001__a.up.sql": "", "V0001__a.down.sql": ""}, "gitops"),
    ({"V0001__a.b.up.sql": ""}, "gitops"),
    ({"000001_a.up.sql": "", "000001_a.down.sql": "", "000002_b.c.up.sql": ""}, "golang-migrate"),
    ({"V1__a.sql": "", "U1__a.sql": "", "R__views.sql": ""}, "flyway"),
    ({"20260101120000_a.sql": "-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;\n"}, "dbmate"),
    ({}, "gitops"),
])
def test_layout_is_detected(tmp_path, names, layout):
    assert read_folder(files(tmp_path, names)).layout == layout


def test_mixed_layouts_name_the_odd_file(tmp_path):
    directory = files(tmp_path, {"000001_a.up.sql": "", "000002_b.up.sql": "", "V3__c.sql": ""})
    with pytest.raises(RollbackError, match=r"V3__c\.sql in .* golang-migrate layout"):
        read_folder(directory)


def test_explicit_layout_refuses_other_files(tmp_path):
    directory = files(tmp_path, {"000001_a.up.sql": "", "notes.sql": ""})
    with pytest.raises(RollbackError, match=r"notes\.sql .* golang-migrate layout"):
        read_folder(directory, "golang-migrate")
    with pytest.raises(RollbackError, match="Unknown migration layout"):
        read_folder(directory, "liquibase")


def test_golang_migrate_pairs_and_names_with_dots(tmp_path):
    directory = files(tmp_path, {"000002_users.email.up.sql": "CREATE INDEX i ON users (email);\n",
                                 "000002_users.email.down.sql": "DROP INDEX i;\n",
                                 "000001_users.up.sql": "CREATE TABLE users (email text);\n"})
    first, second = read_folder(directory).migrations
    assert (first.version, first.name, first.irreversible) == (1, "users", True)
    assert (second.version, second.name, second.down_sql) == (2, "users.email", "DROP INDEX i;\n")


def test_flyway_undo_repeatable_and_dotted_versions(tmp_path):
    directory = files(tmp_path, {"V1__users.sql": "CREATE TABLE users (id int);\n",
                                 "U1__users.sql": "DROP TABLE users;\n", "V2__orders.sql": "SELECT 1;\n",
                                 "R__views.sql": "CREATE VIEW v AS SELECT 1;\n"})
    folder = read_folder(directory)
    assert [(m.version_text, m.irreversible) for m in folder.migrations] == [("1", False), ("2", True)]
    assert len(folder.ignored) == 1 and folder.ignored[0].startswith("R__views.sql: a Flyway repeatable")
    (tmp_path / "V2_1__fix.sql").write_text("SELECT 1;\n")  # Flyway reads 2_1 as 2.1
    assert [m.label for m in read_folder(directory).migrations] == ["V1__users", "V2__orders", "V2.1__fix"]


def test_flyway_versions_are_ordered_by_their_parts_as_numbers(tmp_path):
    names = ["V1.9__a.sql", "V1.10__b.sql", "V1.2.3__c.sql", "U1.2.3__c.sql", "V1_2__d.sql", "V2__e.sql",
             "V1.2.10__f.sql", "V0.9.1__g.sql", "V2026.11.21.1430__h.sql"]
    folder = read_folder(files(tmp_path, {name: "SELECT 1;\n" for name in names}))
    assert [m.version_text for m in folder.migrations] == [
        "0.9.1", "1.2", "1.2.3", "1.2.10", "1.9", "1.10", "2", "2026.11.21.1430"]
    assert [m.version for m in folder.migrations] == sorted(m.version for m in folder.migrations)
    assert folder.migrations[2].down_sql == "SELECT 1;\n" and folder.migrations[2].label == "V1.2.3__c"
    assert flyway_key("1.2.3") == 1000200030000 and flyway_text(1000200030000) == "1.2.3"
    assert flyway_key("V1_2") == flyway_key("1.2.0") == flyway_key("1.02")


@pytest.mark.parametrize("names, message", [
    ({"V1__a.sql": "", "V1.0__b.sql": ""}, r"Version 1 appears twice"),
    ({"V1.2.3.4.5__a.sql": ""}, r"V1\.2\.3\.4\.5__a\.sql in .*: Flyway version 1\.2\.3\.4\.5 is out of range"),
    ({"V1.10000__a.sql": ""}, r"out of range"),
    ({"V20260101120000__a.sql": ""}, r"out of range.*dbmate"),
    ({"V1.2__a.sql": "", "U1.3__a.sql": ""}, r"U1\.3__a\.sql has no matching up file V1\.3__a\.sql"),
])
def test_flyway_versions_out_of_range_or_twice_are_refused(tmp_path, names, message):
    with pytest.raises(RollbackError, match=message):
        read_folder(files(tmp_path, names))


def test_flyway_undo_without_its_migration_is_refused(tmp_path):
    directory = files(tmp_path, {"V1__users.sql": "", "U2__orders.sql": ""})
    with pytest.raises(RollbackError, match=r"U2__orders\.sql has no matching up file V2__orders\.sql"):
        read_folder(directory)


def test_dbmate_sections_split_at_the_markers():
    up, down = dbmate_sections("-- a file comment\n-- migrate:up\nCREATE TABLE t (id int);\n\n"
                               "-- migrate:down\nDROP TABLE t;\n", "f.sql")
    assert up == "-- migrate:up\nCREATE TABLE t (id int);\n\n" and down == "-- migrate:down\nDROP TABLE t;\n"
    up, down = dbmate_sections("-- migrate:down\nDROP TABLE t;\n-- migrate:up\nCREATE TABLE t (id int);\n", "f.sql")
    assert up.startswith("-- migrate:up") and down == "-- migrate:down\nDROP TABLE t;\n"
    assert dbmate_sections("-- migrate:up\nSELECT 1;\n", "f.sql")[1] is None


@pytest.mark.parametrize("text, problem", [
    ("CREATE TABLE t (id int);\n", "exactly one '-- migrate:up'"),
    ("-- migrate:up\nSELECT 1;\n-- migrate:up\nSELECT 2;\n", "exactly one '-- migrate:up'"),
    ("SELECT 0;\n-- migrate:up\nSELECT 1;\n", "SQL before its first"),
])
def test_dbmate_malformed_sections_are_refused(text, problem):
    with pytest.raises(RollbackError, match=problem):
        dbmate_sections(text, "f.sql")


def test_dbmate_empty_down_is_irreversible_and_checksums_are_per_section(tmp_path):
    path = tmp_path / "1_a.sql"
    path.write_text("-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\n-- nothing to do\n")
    first = read_folder(str(tmp_path)).migrations[0]
    assert first.irreversible and first.down_sql is None
    path.write_text("-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\nDROP TABLE a;\n")
    second = read_folder(str(tmp_path)).migrations[0]
    assert second.checksum == first.checksum and not second.irreversible  # only the down section changed


@pytest.mark.parametrize("sql, transaction", [
    ("CREATE INDEX CONCURRENTLY i ON t (c);\n", True),
    ("-- gitops-rollback: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);\n", False),
    ("-- why\n--   GITOPS-ROLLBACK:   no-transaction  \nVACUUM;\n", False),
    ("SELECT 1;\n-- gitops-rollback: no-transaction\n", True),  # only the leading comment lines count
    ("-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (c);\n", False),
    ("-- migrate:up\nSELECT 1;\n", True),
])
def test_no_transaction_marker(sql, transaction):
    assert wants_transaction(sql) is transaction


def test_irreversible_marker_in_a_dbmate_up_section(tmp_path):
    (tmp_path / "1_a.sql").write_text("-- migrate:up\n-- gitops-rollback: irreversible\nDROP TABLE old;\n"
                                      "-- migrate:down\nSELECT 1;\n")
    assert read_folder(str(tmp_path)).migrations[0].marked_irreversible


def test_mysql_batch_sends_each_statement_whole():
    body = "CREATE TABLE t (id INT);\nCREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND;\n-- the end\n"
    assert mysql_batch(body) == ("DELIMITER $$gr_end$$\nCREATE TABLE t (id INT)\n$$gr_end$$\n"
                                 "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND\n$$gr_end$$\n"
                                 "DELIMITER ;\n")
    clash = "SELECT '$$gr_end$$';\n"
    assert mysql_batch(clash).startswith("DELIMITER $$gr_end1$$\n")
    assert len("$$gr_end99$$") <= 15  # the client's delimiter limit


@pytest.mark.parametrize("sql, statements", [
    ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`); -- x;y\n# z;w\n/* q;r */ SELECT 'it''s;';",
     ["INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`)", "-- x;y\n# z;w\n/* q;r */ SELECT 'it''s;'"]),
    ("BEGIN; INSERT INTO t VALUES (1); COMMIT;", ["BEGIN", "INSERT INTO t VALUES (1)", "COMMIT"]),
    ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; SET NEW.b = 2; END; SELECT 1;",
     ["CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; SET NEW.b = 2; END", "SELECT 1"]),
    ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW IF NEW.a > 1 THEN SET NEW.a = 1; END IF; SELECT 1;",
     ["CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW IF NEW.a > 1 THEN SET NEW.a = 1; END IF", "SELECT 1"]),
    ("CREATE PROCEDURE p() lbl: BEGIN DECLARE x INT DEFAULT 0; WHILE x < 3 DO SET x = x + 1; END WHILE; "
     "SELECT start, end FROM t; CASE x WHEN 1 THEN SELECT 1; ELSE SELECT 2; END CASE; "
     "SELECT CASE WHEN x THEN 1 END; END lbl; SELECT 9;",
     ["CREATE PROCEDURE p() lbl: BEGIN DECLARE x INT DEFAULT 0; WHILE x < 3 DO SET x = x + 1; END WHILE; "
      "SELECT start, end FROM t; CASE x WHEN 1 THEN SELECT 1; ELSE SELECT 2; END CASE; "
      "SELECT CASE WHEN x THEN 1 END; END lbl", "SELECT 9"]),
    ("BEGIN NOT ATOMIC DECLARE x INT; SET x = IF(1, 2, 3); END; SELECT REPEAT('a', 3);",
     ["BEGIN NOT ATOMIC DECLARE x INT; SET x = IF(1, 2, 3); END", "SELECT REPEAT('a', 3)"]),
    ("-- only a comment\n", []),
])
def test_mysql_statements_keep_compound_statements_whole(sql, statements):
    assert [part.strip() for part in mysql_statements(sql)] == statements


def test_mysql_statements_never_cut_when_unsure():
    # 'begin' and 'end' as column names: one piece, which the server runs as a multi-statement query
    assert mysql_statements("CREATE TABLE t (begin DATE, end DATE); SELECT 1;") == [
        "CREATE TABLE t (begin DATE, end DATE); SELECT 1;"]


def test_mysql_batch_leaves_client_delimiters_alone():
    body = "DELIMITER //\nCREATE FUNCTION f() RETURNS INT RETURN 1//\ndelimiter ;\nSELECT 1"
    assert mysql_batch(body) == body + "\n;\n"


def test_a_migration_file_planted_as_a_link_is_refused_not_read(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("SELECT 'root only';\n")
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "000001_a.up.sql").symlink_to(secret)
    with pytest.raises(RollbackError, match="symbolic link"):
        read_folder(str(folder))


def test_a_fifo_in_place_of_a_migration_file_is_refused_not_waited_on(tmp_path):
    """A migration file swapped for a FIFO after the folder was listed is refused; the run never hangs."""
    fifo = str(tmp_path / "V2__planted.sql")
    os.mkfifo(fifo)
    outcome = []

    def read():
        try:
            outcome.append(_read(fifo))
        except RollbackError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # let the stuck open return before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert outcome and isinstance(outcome[0], RollbackError) and "not a regular file" in str(outcome[0])
