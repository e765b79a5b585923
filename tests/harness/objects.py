"""Tamper with a checkpoint store's objects the way bit rot or an attacker would, for tests.

An object is either a file of its own (objects/<aa>/<name>) or a range of a pack file found
through packs/<pack>.idx (docs/store-format.md, "Packs"). These helpers read that documented
format directly, without the engine, so a test checks the format as well as the behaviour.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Dict, Optional, Tuple

IDX_MAGIC = b"GRIDX001"
RECORD = struct.Struct(">32sQQ")


def _read_index(idx: Path) -> Dict[bytes, Tuple[int, int]]:
    data = idx.read_bytes()
    assert data.startswith(IDX_MAGIC), "%s is not a pack index" % idx
    return {key: (offset, length) for key, offset, length in RECORD.iter_unpack(data[len(IDX_MAGIC):])}


def _write_index(idx: Path, entries: Dict[bytes, Tuple[int, int]]) -> None:
    idx.write_bytes(IDX_MAGIC + b"".join(RECORD.pack(key, *entries[key]) for key in sorted(entries)))


def _find_packed(store: Path, name: str) -> Optional[Tuple[Path, Dict[bytes, Tuple[int, int]]]]:
    key = bytes.fromhex(name)
    for idx in sorted((Path(store) / "packs").glob("*.idx")):
        entries = _read_index(idx)
        if key in entries:
            return idx, entries
    return None


def stored_bytes(store: str | os.PathLike[str], name: str) -> bytes:
    """Return an object's bytes as stored (sealed when the store is encrypted)."""
    loose = Path(store) / "objects" / name[:2] / name
    if loose.exists():
        return loose.read_bytes()
    found = _find_packed(Path(store), name)
    assert found, "object %s is not in %s" % (name, store)
    idx, entries = found
    offset, length = entries[bytes.fromhex(name)]
    with open(idx.with_suffix(".pack"), "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def replace_object(store: str | os.PathLike[str], name: str, data: bytes) -> None:
    """Make the object named ``name`` hold ``data`` instead of its content (any length)."""
    loose = Path(store) / "objects" / name[:2] / name
    if loose.exists():
        loose.chmod(0o600)
        loose.write_bytes(data)
        return
    found = _find_packed(Path(store), name)
    assert found, "object %s is not in %s" % (name, store)
    idx, entries = found
    pack = idx.with_suffix(".pack")
    offset = pack.stat().st_size
    with open(pack, "ab") as handle:
        handle.write(data)
    entries[bytes.fromhex(name)] = (offset, len(data))
    _write_index(idx, entries)


def remove_object(store: str | os.PathLike[str], name: str) -> None:
    """Make the object named ``name`` disappear from the store."""
    loose = Path(store) / "objects" / name[:2] / name
    if loose.exists():
        loose.unlink()
        return
    found = _find_packed(Path(store), name)
    assert found, "object %s is not in %s" % (name, store)
    idx, entries = found
    del entries[bytes.fromhex(name)]
    _write_index(idx, entries)


def object_names(store: str | os.PathLike[str]) -> set[str]:
    """Return the name of every object in the store, loose or packed."""
    names = {path.name for path in (Path(store) / "objects").glob("*/*")}
    for idx in (Path(store) / "packs").glob("*.idx"):
        names.update(key.hex() for key in _read_index(idx))
    return names


def grep_store(store: Path, needle: bytes) -> list:
    """Files under the store whose bytes contain ``needle``."""
    hits = []
    for base, _dirs, files in os.walk(store):
        for name in files:
            path = Path(base) / name
            if needle in path.read_bytes():
                hits.append(str(path))
    return hits
