# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a failed db_restore tells the user: the stage, the server, the live database's state, the way back."""

from __future__ import annotations

from ansible_collections.gitops.rollback.plugins.module_utils.db.backup import FailedRestore, shorten
from ansible_collections.gitops.rollback.plugins.module_utils.db.streams import DatabaseError


def test_staged_failure_with_the_server_gone_says_the_live_database_is_untouched() -> None:
    failure = FailedRestore("shop", "shop__gr_restore_abc123", "load", "20261122T010657.762Z-33c76e",
                            drop_problem="connection refused", server="connection refused")
    error = failure.error(DatabaseError("pg_restore of shop__gr_restore_abc123 failed (rc=1)", stderr="x"))
    message = str(error)
    assert message.startswith("The restore of shop failed while loading the dump into the staged copy "
                              "shop__gr_restore_abc123: pg_restore of shop__gr_restore_abc123 failed (rc=1).")
    assert "The server no longer answers (connection refused)" in message
    assert "The live database shop was not touched (the staged copy shop__gr_restore_abc123 could not be " \
           "dropped now; the next restore drops it; safety checkpoint 20261122T010657.762Z-33c76e also holds it)" \
           in message
    assert message.endswith("run the restore again once the server is back.")
    assert error.details == {"stderr": "x", "stage": "load", "safety_checkpoint": "20261122T010657.762Z-33c76e",
                             "live_database_touched": False}


def test_in_place_failure_names_the_safety_checkpoint_to_restore_from() -> None:
    error = FailedRestore("shop", "shop", "verify", "cp-1").error(DatabaseError("row counts differ"))
    assert "failed while comparing the row counts of shop: row counts differ" in str(error)
    assert "may hold a partial restore; its previous state is in safety checkpoint cp-1 (restore it with " \
           "checkpoint=cp-1), or run the restore again." in str(error)
    assert error.details["live_database_touched"] is True and "no longer answers" not in str(error)


def test_a_client_echoing_a_huge_statement_is_cut_in_the_middle() -> None:
    text = "ERROR at line 3: " + "(1,'x')," * 20000 + " Lost connection to server during query"
    short = shorten(text)
    assert len(short) < 1600 and short.startswith("ERROR at line 3") and short.endswith("during query")
    assert "characters left out" in short and shorten("short") == "short"
