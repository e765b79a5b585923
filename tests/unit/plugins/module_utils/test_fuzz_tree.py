# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzzing of the manifest and tree readers: only RollbackError subclasses, and no accepted entry
escapes its root or lies below a stored symlink."""

from __future__ import annotations

import json
import os
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.gitops.rollback.plugins.module_utils.common.errors import RollbackError
from ansible_collections.gitops.rollback.plugins.module_utils.store.store import Store
from ansible_collections.gitops.rollback.plugins.module_utils.store.tree import TreeValidator

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROOT = "/srv/app"
_STORE_DIR = tempfile.mkdtemp(prefix="fuzz-store-")
STORE = Store(os.path.join(_STORE_DIR, "store"))
STORE.init()

segments = st.sampled_from(["a", "b", "..", ".", "", "c d", "\x00", "ü", "x" * 3, "a.b"])
paths = st.lists(segments, min_size=0, max_size=5).map("/".join) | st.sampled_from(["/etc/passwd", "../x", "a//b"])
scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
entries = st.fixed_dictionaries({
    "path": paths | scalars,
    "type": st.sampled_from(["file", "dir", "symlink", "fifo", None, 3]),
}, optional={
    "sha256": st.sampled_from(["0" * 64, None, 5, "zz"]),
    "target": st.sampled_from(["/", "../../etc", "x", None]),
    "mode": st.integers(-1, 0o7777),
})
lines = st.lists(entries.map(lambda e: json.dumps(e).encode()) | st.binary(max_size=20)
                 | st.sampled_from([b"[]", b"1", b"null", b"\"x\"", b"{", b"\xff\xfe"]), max_size=12)


def _below_root(rel: str) -> bool:
    full = os.path.normpath(os.path.join(ROOT, rel))
    return full.startswith(ROOT + "/")


@FUZZ
@given(lines)
def test_tree_reader_accepts_only_safe_entries(raw_lines):
    sha = STORE.put_bytes(b"\n".join(raw_lines) + b"\n")
    validator = TreeValidator(ROOT)
    accepted = []
    try:
        for entry in STORE.iter_tree(sha):
            validator.check(entry)
            accepted.append(entry)
    except RollbackError:
        pass
    links = []
    for entry in accepted:
        assert isinstance(entry["path"], str) and _below_root(entry["path"]), entry
        assert not any(entry["path"].startswith(link + "/") for link in links), entry
        if entry["type"] == "symlink":
            links.append(entry["path"])


@FUZZ
@given(st.binary(max_size=200) | st.lists(entries).map(lambda e: json.dumps(e).encode())
       | st.dictionaries(st.sampled_from(["format_version", "id", "roots", "components", "label"]),
                         scalars | st.lists(scalars, max_size=3)).map(lambda d: json.dumps(d).encode()))
def test_manifest_reader_fails_only_with_a_clear_error(data):
    checkpoint_id = "20261121T221558.396Z-103ab2"
    with open(STORE.manifest_path(checkpoint_id), "wb") as handle:
        handle.write(data)
    try:
        manifest = STORE.load(checkpoint_id)
        list(STORE.referenced(manifest))
        STORE.verify(manifest)
        STORE.find("anything-else")
    except RollbackError:
        pass
    finally:
        os.unlink(STORE.manifest_path(checkpoint_id))
