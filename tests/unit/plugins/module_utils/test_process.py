# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Commands as argument lists (common/process.py): outputs, failures named, secrets scrubbed."""

from __future__ import annotations

import sys

import pytest

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import CommandError
from ansible_collections.gitops.rollback.plugins.module_utils.common.process import run

PY = sys.executable
SECRET = "s3cret-Pa55"


def test_run_returns_the_output_and_passes_arguments_without_a_shell():
    done = run([PY, "-c", "import sys; print(sys.argv[1])", "$(touch /tmp/x) ; rm -rf /"], "echo")
    assert done.rc == 0 and done.stdout == b"$(touch /tmp/x) ; rm -rf /\n"


def test_run_uses_the_c_locale_and_the_extra_environment():
    code = "import os; print(os.environ['LC_ALL'], os.environ['LANG'], os.environ['GR_EXTRA'])"
    assert run([PY, "-c", code], "env", env={"GR_EXTRA": "yes"}).stdout == b"C C yes\n"


def test_a_failed_command_names_what_failed_its_code_and_output_with_the_secret_scrubbed():
    argv = [PY, "-c", "import sys; sys.stderr.write('auth failed for ' + sys.argv[1]); sys.exit(3)", SECRET]
    with pytest.raises(CommandError) as caught:
        run(argv, "pg_dump of shop", secrets=[SECRET])
    text = str(caught.value)
    assert "pg_dump of shop failed (rc=3): auth failed for ********" in text
    assert SECRET not in text and SECRET not in str(caught.value.public_details())


def test_check_false_returns_the_failure_instead():
    done = run([PY, "-c", "import sys; sys.exit(4)"], "probe", check=False)
    assert done.rc == 4


def test_a_missing_program_is_named():
    with pytest.raises(CommandError, match="backup: the program mariadb-dump-that-does-not-exist is not installed"):
        run(["mariadb-dump-that-does-not-exist"], "backup")


def test_output_to_a_file_never_overwrites_one_that_exists(tmp_path):
    target = tmp_path / "dump.sql"
    run([PY, "-c", "print('rows')"], "dump", stdout_path=str(target))
    assert target.read_bytes() == b"rows\n"
    with pytest.raises(FileExistsError):
        run([PY, "-c", "print('other')"], "dump", stdout_path=str(target))
    assert target.read_bytes() == b"rows\n"
