# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MariaDB objects: how SHOW CREATE rows are read, in which order objects are re-created, and the
client script that re-creates each one in its own session."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import FailedRestore
from ansible_collections.gitops.rollback.plugins.module_utils.db.streams import DatabaseError
from ansible_collections.gitops.rollback.plugins.module_utils.db.mysql import retarget_collation_switches
from ansible_collections.gitops.rollback.plugins.module_utils.db.mysql_swap import swap_error
from ansible_collections.gitops.rollback.plugins.module_utils.db.mysql_objects import (
    DbObject, creation_script, delimiter_for, ordered, parse_objects, unescape_bytes)
from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError


def view(name: str, body: str) -> DbObject:
    return DbObject("VIEW", name, ("CREATE VIEW `%s` AS %s" % (name, body)).encode("utf-8"), "utf8mb4",
                    "utf8mb4_general_ci")


def test_rows_of_show_create_give_each_object_its_bytes_and_session() -> None:
    objects = [("PROCEDURE", "p"), ("EVENT", "e"), ("VIEW", "v"), ("TRIGGER", "t")]
    rows = [[b"p", b"ANSI_QUOTES", b"CREATE PROCEDURE \"p\"() SELECT 'caf\xe9\\tx\\\\n'", b"latin1", b"latin1_swedish_ci",
             b"utf8mb4_unicode_ci"],
            [b"e", b"", b"+05:30", b"CREATE EVENT `e` ON SCHEDULE EVERY 1 DAY DO SET @a = 1", b"utf8mb4",
             b"utf8mb4_general_ci", b"latin1_swedish_ci"],
            [b"v", b"CREATE VIEW `v` AS select 1", b"utf8mb3", b"utf8mb3_general_ci"],
            [b"t", b"STRICT_ALL_TABLES,NO_ZERO_DATE", b"CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET @a=1",
             b"utf8mb4", b"utf8mb4_bin", b"latin1_bin", b"2026-01-01 00:00:00.00"]]
    found = parse_objects(objects, rows, "shop")
    assert found[0] == DbObject("PROCEDURE", "p", b"CREATE PROCEDURE \"p\"() SELECT 'caf\xe9\tx\\n'", "latin1",
                                "latin1_swedish_ci", "ANSI_QUOTES", "utf8mb4_unicode_ci", None)
    assert (found[1].time_zone, found[1].sql_mode, found[1].db_collation) == ("+05:30", "", "latin1_swedish_ci")
    assert (found[2].charset_client, found[2].sql_mode, found[2].db_collation) == ("utf8mb3", "", None)
    assert (found[3].sql_mode, found[3].collation_connection) == ("STRICT_ALL_TABLES,NO_ZERO_DATE", "utf8mb4_bin")


def test_an_unreadable_definition_or_a_changed_object_is_refused_by_name() -> None:
    with pytest.raises(RollbackError, match="procedure p in shop cannot be read.*SHOW CREATE ROUTINE"):
        parse_objects([("PROCEDURE", "p")], [[b"p", b"", b"NULL", b"utf8mb4", b"utf8mb4_bin", b"latin1_bin"]], "shop")
    with pytest.raises(RollbackError, match="returned 0 rows for 1 objects"):
        parse_objects([("VIEW", "v")], [], "shop")
    with pytest.raises(RollbackError, match="unexpected session setting"):
        parse_objects([("VIEW", "v")], [[b"v", b"CREATE VIEW v AS select 1", b"utf8mb4'; DROP", b"x"]], "shop")


def test_unescape_bytes_undoes_the_batch_escapes_only() -> None:
    assert unescape_bytes(b"a\\tb\\nc\\0d\\\\n\\x\xff") == b"a\tb\nc\0d\\n\\x\xff"


def test_views_come_after_the_views_they_name_and_after_routines() -> None:
    objects = [view("a_sum", "select count(0) from `z_base`"), view("m_mid", "select 1 from `a_sum`"),
               view("z_base", "select 1"),
               DbObject("TRIGGER", "zz", b"CREATE TRIGGER zz", "utf8mb4", "utf8mb4_bin"),
               DbObject("TRIGGER", "aa", b"CREATE TRIGGER aa", "utf8mb4", "utf8mb4_bin"),
               DbObject("FUNCTION", "f", b"CREATE FUNCTION f", "utf8mb4", "utf8mb4_bin"),
               DbObject("EVENT", "e", b"CREATE EVENT e", "utf8mb4", "utf8mb4_bin")]
    assert [o.name for o in ordered(objects)] == ["f", "e", "z_base", "a_sum", "m_mid", "zz", "aa"]
    cycle = [view("b", "select `a` from t"), view("a", "select `b` from t")]  # look-alike names: still all placed
    assert sorted(o.name for o in ordered(cycle)) == ["a", "b"]


def test_the_script_sets_each_objects_session_and_uses_a_delimiter_found_in_no_definition() -> None:
    proc = DbObject("PROCEDURE", "p", b"CREATE PROCEDURE \"p\"() SELECT 'caf\xe9 ;; $$'", "latin1", "latin1_swedish_ci",
                    "ANSI_QUOTES", "utf8mb4_unicode_ci")
    event = DbObject("EVENT", "e", b"CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO SET @a = 1", "utf8mb4",
                     "utf8mb4_general_ci", "", "latin1_swedish_ci", "+05:30")
    script = creation_script("sh`op", [event, proc], {"charset": "utf8mb4", "collation": "utf8mb4_bin"})
    delimiter = script.split(b"DELIMITER ")[1].split(b"\n")[0]
    assert len(delimiter) <= 15 and delimiter not in proc.definition
    assert script == b"".join([
        b"SET NAMES utf8mb4;\nUSE `sh``op`;\n",
        b"SET SESSION sql_mode = 'ANSI_QUOTES';\nALTER DATABASE `sh``op` COLLATE `utf8mb4_unicode_ci`;\n",
        b"SET character_set_client = `latin1`, collation_connection = `latin1_swedish_ci`;\n",
        b"DELIMITER ", delimiter, b"\n", proc.definition, delimiter, b"\nDELIMITER ;\nSET NAMES utf8mb4;\n",
        b"SET SESSION sql_mode = '', time_zone = '+05:30';\nALTER DATABASE `sh``op` COLLATE `latin1_swedish_ci`;\n",
        b"SET character_set_client = `utf8mb4`, collation_connection = `utf8mb4_general_ci`;\n",
        b"DELIMITER ", delimiter, b"\n", event.definition, delimiter, b"\nDELIMITER ;\nSET NAMES utf8mb4;\n",
        b"SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT;\n",
        b"ALTER DATABASE `sh``op` CHARACTER SET `utf8mb4` COLLATE `utf8mb4_bin`;\n"])
    assert delimiter_for([]) != delimiter_for([])


@pytest.mark.parametrize("dumped, target", [("shop", "shop__gr_restore_abc123"), ("a.b*c$/&\\`[x]", "x&/y\\1"),
                                            ("ünï客", "ünï客__gr_restore_1")])
def test_mariadb_dumps_collation_switches_are_retargeted_and_nothing_else(dumped: str, target: str) -> None:
    def quoted(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    lines = ["ALTER DATABASE %s CHARACTER SET latin1 COLLATE latin1_swedish_ci ;" % quoted(dumped),
             "ALTER DATABASE `other` CHARACTER SET latin1 COLLATE latin1_swedish_ci ;",
             "INSERT INTO `t` VALUES ('ALTER DATABASE %s CHARACTER SET latin1 COLLATE latin1_swedish_ci ;');"
             % quoted(dumped)]
    done = subprocess.run(["sed", "-e", retarget_collation_switches(dumped, target)],
                          input="\n".join(lines).encode("utf-8") + b"\n", capture_output=True, check=True,
                          env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    assert done.stdout.decode("utf-8").split("\n")[:3] == [
        "ALTER DATABASE %s CHARACTER SET latin1 COLLATE latin1_swedish_ci ;" % quoted(target)] + lines[1:]


def test_a_swap_that_put_the_live_database_back_says_so() -> None:
    cause = DatabaseError("ERROR 1146 (42S02): Table 'x' doesn't exist", stderr="x")
    error = swap_error("shop", "objects", cause, touched=False, state="shop was put back as it was (...)")
    told = FailedRestore("shop", "shop__gr_restore_abc123", "swap", None).error(error)
    assert str(told) == (
        "The restore of shop failed while putting the staged copy shop__gr_restore_abc123 in the live database's "
        "place: swap phase 'objects' (re-creating the views, routines, events and triggers in the live database) of "
        "shop failed: ERROR 1146 (42S02): Table 'x' doesn't exist. shop was put back as it was (...) (the staged "
        "copy was dropped). Fix the cause, then run the restore again.")
    assert told.details["live_database_touched"] is False and told.details["swap_phase"] == "objects"
