# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module run pays for what it uses: a checkpoint of a plain store imports no cipher and no maintenance code.

Ansible sends the collection's code as source on every run, so each module imported is compiled at every
module start (a large share of an incremental checkpoint's time).
"""

from __future__ import annotations

import os
import subprocess
import sys

PACKAGE = "ansible_collections.gitops.rollback.plugins.module_utils"

CHECKPOINT_TWICE = """
import sys
from ansible_collections.gitops.rollback.plugins.modules import checkpoint  # what the module file imports
from ansible_collections.gitops.rollback.plugins.module_utils.files.checkpoint_ops import (
    CheckpointParams, make_checkpoint,
)
params = dict(store_path=sys.argv[1], owner="test@host", paths=[sys.argv[2]], force=True)
make_checkpoint(CheckpointParams(label="cold", **params))
with open(sys.argv[2] + "/changed", "w") as handle:
    handle.write("new content")
result = make_checkpoint(CheckpointParams(label="incremental", **params))
assert result["stats"]["hashed"] == 1, result
print("\\n".join(sorted(sys.modules)))
"""


def test_a_checkpoint_of_a_plain_store_imports_no_cipher_and_no_maintenance(tmp_path):
    """Cold and incremental checkpoints of a plain store never import the cipher modules (and so never
    ``cryptography``) nor garbage collection, verify and rekey."""
    managed = tmp_path / "managed"
    (managed / "etc").mkdir(parents=True)
    (managed / "etc" / "app.conf").write_text("setting = 1\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    done = subprocess.run([sys.executable, "-c", CHECKPOINT_TWICE, str(tmp_path / "store"), str(managed)],
                          env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(done.stdout.split())
    assert PACKAGE + ".files.capture" in loaded  # the check sees the collection's modules
    unused = {PACKAGE + ".store.crypto", PACKAGE + ".store.crypto_legacy", PACKAGE + ".store.maintenance"}
    assert not unused & loaded, sorted(unused & loaded)
    assert not [name for name in loaded if name.split(".")[0] == "cryptography"]
