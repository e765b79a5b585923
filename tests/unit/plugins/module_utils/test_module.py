# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""RollbackModule: the store options merged, typed errors as failed tasks with chosen details, diff mode."""

from __future__ import annotations

import errno

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import CheckpointNotFound
from ansible_collections.gitops.rollback.plugins.module_utils.module.rollback_module import RollbackModule
from ansible_collections.gitops.rollback.plugins.module_utils.module.options import DEFAULT_STORE
from ansible_collections.gitops.rollback.plugins.module_utils.store import crypto as _crypto
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store


def make(args, **kwargs):
    with patch_module_args(args):
        return RollbackModule(dict(name=dict(type="str")), supports_check_mode=True, **kwargs)


class Failed(Exception):
    """fail_json was called (with the result as its argument)."""


def failure(module, operation, **fields):
    """The result the task fails with when ``operation`` raises."""
    def fail_json(**result):
        raise Failed(dict(result, failed=True))
    module.fail_json = fail_json
    with pytest.raises(Failed) as failed:
        module.run(operation, **fields)
    return failed.value.args[0]


def missing():
    raise CheckpointNotFound("Checkpoint v9 is not in the store.", available=["v1"], path="/secret/internal")


def test_store_options_are_merged_and_the_key_is_kept_out_of_logs():
    module = make({"name": "x", "encryption_key": "k" * 32}, store=True)
    assert module.params["store_path"] == DEFAULT_STORE and module.params["lock_timeout"] == 0
    assert "k" * 32 in module.no_log_values
    with pytest.raises(SystemExit):  # without store=True the store options are unknown
        make({"name": "x", "store_path": "/x"})


def test_a_typed_error_fails_the_task_with_its_message_and_only_the_named_details():
    result = failure(make({"name": "x"}, error_details=("available",)), missing, commands=["pg_dump"])
    assert result["failed"] and result["msg"] == "Checkpoint v9 is not in the store."
    assert result["available"] == ["v1"] and result["commands"] == ["pg_dump"]
    assert "path" not in result


def test_fields_are_defaults_that_details_replace():
    result = failure(make({}, error_details=("available",)), missing, available=[])
    assert result["available"] == ["v1"]


def test_the_result_of_a_good_operation_is_returned_and_other_errors_propagate():
    module = make({})
    assert module.run(lambda: {"changed": False}) == {"changed": False}
    with pytest.raises(ZeroDivisionError):
        module.run(lambda: 1 // 0)


@pytest.mark.parametrize("diff", [True, False])
def test_diff_mode_follows_the_task(diff):
    assert make({"_ansible_diff": diff}).diff_mode is diff


def test_with_an_encryption_key_the_store_key_is_being_derived_once_the_module_is_built(tmp_path, monkeypatch):
    """The slow key derivation starts with the module object (before the module imports its engine) and
    the store then opens with its result."""
    monkeypatch.setattr(_crypto, "SCRYPT", {"n": 1024, "r": 8, "p": 1})
    monkeypatch.setattr(_crypto, "_RUNNING", {})
    monkeypatch.setattr(_crypto, "_PREPARED", {})
    key, root = "module-test-key-0123456789", str(tmp_path / "store")
    _crypto._scrypt_once.cache_clear()
    make({"name": "x", "store_path": root, "encryption_key": key}, store=True)
    assert len(_crypto._RUNNING) == 1
    store = Store(root, key)
    store.init()
    assert store.read_blob(store.put_bytes(b"sealed")) == b"sealed"
    assert not _crypto._RUNNING
    make({"name": "x", "store_path": str(tmp_path / "plain")}, store=True)
    assert not _crypto._RUNNING


def test_a_full_disk_no_writer_named_fails_the_task_clearly_instead_of_a_traceback():
    def full():
        raise OSError(errno.ENOSPC, "No space left on device")
    result = failure(make({}), full)
    assert result["failed"] and result["msg"].startswith("No space left on device") and "prune" in result["msg"]

    def denied():
        raise PermissionError(errno.EACCES, "denied")
    with pytest.raises(PermissionError):  # other system errors are not dressed up as a full disk
        make({}).run(denied)
