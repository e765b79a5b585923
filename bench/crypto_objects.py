# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stores the first COUNT files of up to 256 KiB of a tree into a new store, plain or encrypted, in-process.

For instruction counts per packed object, which do not depend on the machine's load: run it under
callgrind at two counts and take the difference, for each side::

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg-%p.out python bench/crypto_objects.py TREE encrypted 1100
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg-%p.out python bench/crypto_objects.py TREE encrypted 100
    grep totals: /tmp/cg-*.out

(TREE: e.g. the tree bench_checkpoint.make_tree builds.) The key derivation is made cheap here: it
is paid once per store, not per object. Without valgrind it prints the CPU seconds of the loop.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdef-crypto"


def main(tree: str, side: str, count: int) -> None:
    """Store ``count`` small files of ``tree`` into a new store; print the CPU seconds it took."""
    with tempfile.TemporaryDirectory(prefix="gr-crypto-objects-") as work:
        link = Path(work) / "ansible_collections" / "gitops" / "rollback"
        link.parent.mkdir(parents=True)
        link.symlink_to(REPO)
        sys.path.insert(0, work)
        # pylint: disable=import-outside-toplevel
        from ansible_collections.gitops.rollback.plugins.module_utils.store import crypto
        from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
        crypto.SCRYPT = {"n": 1024, "r": 8, "p": 1}
        files = sorted(str(path) for path in Path(tree).rglob("*")
                       if path.is_file() and not path.is_symlink() and path.stat().st_size <= 256 * 1024)[:count]
        store = Store(os.path.join(work, "store"), KEY if side == "encrypted" else None)
        store.init()
        started = resource.getrusage(resource.RUSAGE_SELF)
        for path in files:
            store.put_file_counted(path)
        store.packs.finish()
        ended = resource.getrusage(resource.RUSAGE_SELF)
        cpu = ended.ru_utime + ended.ru_stime - started.ru_utime - started.ru_stime
        print("%s: %d files, %.3f s CPU" % (side, len(files), cpu))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[2] not in ("plain", "encrypted"):
        sys.exit("usage: python bench/crypto_objects.py TREE plain|encrypted COUNT")
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
