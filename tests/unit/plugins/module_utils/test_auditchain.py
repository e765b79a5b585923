# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit log's hash chain: every alteration, removal, truncation and damaged line is named."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.controller import audit as _audit
from ansible_collections.gitops.rollback.plugins.module_utils.controller import auditchain as chain


def write_log(path, count=5):
    for number in range(1, count + 1):
        _audit.append(str(path), _audit.make_record("progress", "rollback", "run-%d" % number, reason="step %d" % number))
    return path.read_text().splitlines()


def put_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


@pytest.fixture
def log(tmp_path):
    return tmp_path / "state" / "audit.jsonl"


def test_a_clean_log_verifies_and_the_head_names_its_last_record(log):
    lines = write_log(log)
    result = chain.verify(str(log))
    assert result.ok, result.problems
    assert len(result.records) == 5 and result.last[0] == 5
    records = [json.loads(line) for line in lines]
    assert records[0]["prev_hash"] == chain.GENESIS
    for before, after in zip(records, records[1:]):
        assert after["prev_hash"] == before["hash"]
    body = {k: v for k, v in records[2].items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert records[2]["hash"] == hashlib.sha256(canonical).hexdigest()
    head = json.loads((log.parent / "audit.jsonl.head").read_text())
    assert head == {"seq": 5, "hash": records[-1]["hash"]}
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    assert "hash chain intact" in result.summary()


def test_a_record_altered_in_the_middle_is_named(log):
    lines = write_log(log)
    record = json.loads(lines[2])
    record["reason"] = "nothing happened here"
    put_lines(log, lines[:2] + [json.dumps(record)] + lines[3:])
    result = chain.verify(str(log))
    assert not result.ok
    assert result.first_problem["line"] == 3 and result.first_problem["seq"] == 3
    assert result.first_problem["kind"] == "altered"
    assert "record #3 (line 3) was altered" in result.first_problem["message"]
    assert len(result.problems) == 1  # the records after it still chain to what it recorded


def test_an_altered_record_whose_hash_was_recomputed_is_named_by_its_successor(log):
    lines = write_log(log)
    record = json.loads(lines[1])
    record["reason"] = "forged"
    record["hash"] = chain.record_hash(record)
    put_lines(log, lines[:1] + [json.dumps(record)] + lines[2:])
    problem = chain.verify(str(log)).first_problem
    assert problem["seq"] == 2 and problem["line"] == 3
    assert "does not chain to record #2 (line 2): record #2 (line 2) was altered or replaced" in problem["message"]


def test_a_deleted_record_is_named(log):
    lines = write_log(log)
    put_lines(log, lines[:2] + lines[3:])
    result = chain.verify(str(log))
    assert result.first_problem["kind"] == "missing" and result.first_problem["seq"] == 3
    assert "record #3 missing before line 3 (record #4), after line 2" in result.first_problem["message"]
    assert len(result.problems) == 1


def test_deleting_the_first_record_is_seen(log):
    lines = write_log(log)
    put_lines(log, lines[1:])
    problem = chain.verify(str(log)).first_problem
    assert problem["seq"] == 1 and "record #1 missing before line 1 (record #2)" in problem["message"]


def test_a_truncated_tail_disagrees_with_the_head_file(log):
    lines = write_log(log)
    put_lines(log, lines[:3])
    result = chain.verify(str(log))
    assert result.first_problem["kind"] == "missing"
    assert result.first_problem["seq"] == 4
    assert ("record #4-#5 missing at the end of the log, after line 3 (record #3): the head file records #5"
            in result.first_problem["message"])


def test_a_replaced_last_record_disagrees_with_the_head_file(log):
    lines = write_log(log)
    record = json.loads(lines[-1])
    record["event"] = "completed"
    record["hash"] = chain.record_hash(record)
    put_lines(log, lines[:-1] + [json.dumps(record)])
    problem = chain.verify(str(log)).first_problem
    assert problem["seq"] == 5 and "differs from the head file" in problem["message"]


def test_a_damaged_line_is_reported_and_the_chain_goes_on(log):
    lines = write_log(log)
    put_lines(log, lines[:2] + ['{"event": "started", "run_i'] + lines[2:])
    result = chain.verify(str(log))
    assert [p["kind"] for p in result.problems] == ["damaged"]
    assert result.first_problem["line"] == 3
    assert 'line 3 is damaged (not a JSON record): "{\\"event\\": \\"started\\", \\"run_i"' \
        in result.first_problem["message"]
    assert len(result.records) == 5


def test_a_missing_head_file_is_reported(log):
    write_log(log, 2)
    os.unlink(chain.head_path(str(log)))
    problem = chain.verify(str(log)).first_problem
    assert problem["kind"] == "head" and "is missing" in problem["message"]


def test_a_log_from_before_the_chain_stays_readable_and_says_where_the_chain_starts(log):
    log.parent.mkdir(parents=True)
    old = [json.dumps({"event": "started", "run_id": "old-%d" % n, "operation": "rollback"}) for n in (1, 2)]
    put_lines(log, old)
    _audit.append(str(log), _audit.make_record("completed", "rollback", "new"))
    result = chain.verify(str(log))
    assert result.ok, result.problems
    assert result.legacy == 2 and result.chain_starts == 3 and len(result.records) == 3
    assert "lines 1-2 were written before the hash chain (not verifiable), the chain starts at line 3" \
        in result.summary()
    assert json.loads(log.read_text().splitlines()[2])["seq"] == 1


def test_a_writer_after_a_truncation_keeps_the_gap_visible(log):
    lines = write_log(log)
    put_lines(log, lines[:3])
    _audit.append(str(log), _audit.make_record("completed", "rollback", "after"))
    result = chain.verify(str(log))
    assert result.first_problem["kind"] == "missing" and result.first_problem["seq"] == 4
    assert "record #4-#5 missing before line 4 (record #6)" in result.first_problem["message"]


def test_a_torn_last_line_stays_a_damaged_line_of_its_own(log):
    write_log(log, 2)
    with open(log, "a") as handle:
        handle.write('{"event": "sta')  # a writer killed mid-line
    _audit.append(str(log), _audit.make_record("completed", "rollback", "after"))
    result = chain.verify(str(log))
    assert [(p["line"], p["kind"]) for p in result.problems] == [(3, "damaged")]
    assert result.last[0] == 3


def _writer(path, name, count):
    for number in range(count):
        _audit.append(path, _audit.make_record("progress", "rollback", "%s-%d" % (name, number)))


def test_concurrent_writers_never_break_the_chain(log):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(log), "w%d" % n, 40)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    result = chain.verify(str(log))
    assert result.ok, result.problems[:3]
    assert len(result.records) == 160
    assert [r["seq"] for r in result.records] == list(range(1, 161))


def test_a_missing_log_is_a_clear_error(tmp_path):
    with pytest.raises(chain.ChainError, match="does not exist"):
        chain.verify(str(tmp_path / "nope.jsonl"))
