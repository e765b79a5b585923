# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a restore must bring back of a tree, for the restore unit tests to compare."""

from __future__ import annotations

import os
import pathlib


def tree_state(root, times: bool = False) -> dict:
    """Every entry below ``root`` by relative path: type, mode and bytes or link target (and mtime with ``times``)."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, str(root))
            when = (st.st_mtime_ns,) if times else ()
            if os.path.islink(full):
                seen[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                seen[rel] = ("dir", st.st_mode) + when
            else:
                with open(full, "rb") as handle:
                    seen[rel] = ("file", st.st_mode) + when + (handle.read(),)
    return seen


def contents(top) -> dict:
    """Every entry under ``top`` by relative path: a file's bytes, a link's target, None for a directory."""
    top = pathlib.Path(top)
    return {str(p.relative_to(top)): (str(p.readlink()) if p.is_symlink() else p.read_bytes() if p.is_file() else None)
            for p in sorted(top.rglob("*"))}
