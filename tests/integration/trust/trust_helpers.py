"""Helpers of the trust tests (a module of its own: ``conftest`` names clash across directories)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict


def tree_snapshot(root: Path) -> Dict[str, Any]:
    """Every entry under ``root``: type, mode and content (files) or target (symlinks)."""
    snap: Dict[str, Any] = {}
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            full = Path(base) / name
            rel = str(full.relative_to(root))
            st = full.lstat()
            if full.is_symlink():
                snap[rel] = ("link", os.readlink(full))
            elif full.is_dir():
                snap[rel] = ("dir", st.st_mode & 0o7777)
            else:
                snap[rel] = ("file", st.st_mode & 0o7777, full.read_bytes())
    return snap
