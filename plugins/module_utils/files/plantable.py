# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A restore plan's actions and tree entries packed in columns, about 110 bytes per action.

A full restore of 40,000 files plans 40,000 creates; kept as a dict and an object per action
(a dozen Python objects each) the plan alone took about 18 MB. Here a tree entry is one
fixed-size row (type, mode, ids, mtime, size, the 32-byte object name; owner, group and link
target as numbers into small tables) and its path is a slice of one byte buffer. An entry that
does not fit the row (other keys, values of other types) is kept marshalled, exactly as it was
read. Entries are decoded one at a time when used, into the same dict the tree object holds.
"""

from __future__ import annotations

import marshal
import re
import struct
from array import array
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ..store.tree import DIR, FIFO, FILE, LINK, TYPES, Key

_ROW = struct.Struct("<BIIIqq32sHHI")  # type, mode, uid, gid, mtime_ns, size, sha256, owner, group, target
_BLOB = struct.Struct("<B20xq32s")  # the row's type, size and sha256 alone
_BLANK = bytes(_ROW.size)
_NO_TARGET = 0xFFFFFFFF
_MAX_NAMES = 0xFFFF
_KEYS = frozenset(("gid", "group", "mode", "mtime_ns", "owner", "path", "sha256", "size", "target", "type", "uid"))
_NAME = re.compile(r"[0-9a-f]{64}\Z")
_CODEC = ("utf-8", "surrogatepass")  # any str, lone surrogates from undecodable file names included
_PACKED, _MARSHALLED, _HAS_SHA = 1, 2, 4  # row flags; 0: no entry


def _is_int(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value < high  # pylint: disable=unidiomatic-typecheck  # bool is not int here


def _is_text_or_none(value: object) -> bool:
    return value is None or type(value) is str  # pylint: disable=unidiomatic-typecheck


def _fits_row(rel: str, entry: dict) -> bool:
    """Tell whether an entry round-trips through a row exactly (else it is kept marshalled)."""
    return (entry.keys() == _KEYS and entry["path"] == rel and entry["type"] in TYPES
            and _is_int(entry["mode"], 0, 1 << 32) and _is_int(entry["uid"], 0, 1 << 32)
            and _is_int(entry["gid"], 0, 1 << 32) and _is_int(entry["mtime_ns"], -(1 << 63), 1 << 63)
            and _is_int(entry["size"], 0, 1 << 63)
            and (entry["sha256"] is None or (type(entry["sha256"]) is str  # pylint: disable=unidiomatic-typecheck
                                             and _NAME.match(entry["sha256"]) is not None))
            and _is_text_or_none(entry["owner"]) and _is_text_or_none(entry["group"])
            and _is_text_or_none(entry["target"]))


class Entries:
    """Tree entries (or none, for a path only) with their paths, numbered in the order added."""

    def __init__(self) -> None:
        self._paths = bytearray()
        self._ends = array("Q")
        self._rows = bytearray()
        self._flags = bytearray()
        self._names: List[Optional[str]] = [None]  # owners and groups; number 0 is None
        self._name_numbers: Dict[str, int] = {}
        self._targets: List[str] = []
        self._marshalled: Dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._flags)

    def _name_number(self, name: Optional[str]) -> Optional[int]:
        if name is None:
            return 0
        number = self._name_numbers.get(name)
        if number is None and len(self._names) < _MAX_NAMES:
            number = self._name_numbers[name] = len(self._names)
            self._names.append(name)
        return number

    def _row(self, rel: str, entry: dict) -> Optional[bytes]:
        if not _fits_row(rel, entry):
            return None
        owner, group = self._name_number(entry["owner"]), self._name_number(entry["group"])
        if owner is None or group is None or len(self._targets) >= _NO_TARGET:
            return None
        target = _NO_TARGET
        if entry["target"] is not None:
            target = len(self._targets)
            self._targets.append(entry["target"])
        sha = entry["sha256"]
        return _ROW.pack(TYPES.index(entry["type"]), entry["mode"], entry["uid"], entry["gid"], entry["mtime_ns"],
                         entry["size"], bytes.fromhex(sha) if sha else _BLANK[:32], owner, group, target)

    def add(self, rel: str, entry: Optional[dict]) -> int:
        """Keep a path and its entry; return its number."""
        number = len(self._flags)
        self._paths += rel.encode(*_CODEC)
        self._ends.append(len(self._paths))
        row = None if entry is None else self._row(rel, entry)
        if row is not None:
            self._flags.append(_PACKED | (_HAS_SHA if entry["sha256"] else 0))
        elif entry is not None:
            self._marshalled[number] = marshal.dumps(entry)
            self._flags.append(_MARSHALLED)
        else:
            self._flags.append(0)
        self._rows += row or _BLANK
        return number

    def path(self, number: int) -> str:
        """Return the path of entry ``number``."""
        start = self._ends[number - 1] if number else 0
        return self._paths[start:self._ends[number]].decode(*_CODEC)

    def blob(self, number: int) -> Tuple[Optional[str], int, Optional[str]]:
        """Return (type, size, sha256) of entry ``number`` without decoding it whole (type None: no entry)."""
        flags = self._flags[number]
        if flags & _PACKED:
            kind, size, sha = _BLOB.unpack_from(self._rows, number * _ROW.size)
            return TYPES[kind], size, sha.hex() if flags & _HAS_SHA else None
        entry = self.entry(number)
        if entry is None:
            return None, 0, None
        return entry.get("type"), entry.get("size"), entry.get("sha256")

    def entry(self, number: int) -> Optional[dict]:
        """Return entry ``number`` as the tree object holds it (None when there is none)."""
        flags = self._flags[number]
        if flags & _MARSHALLED:
            return marshal.loads(self._marshalled[number])
        if not flags:
            return None
        kind, mode, uid, gid, mtime_ns, size, sha, owner, group, target = _ROW.unpack_from(
            self._rows, number * _ROW.size)
        return {"gid": gid, "group": self._names[group], "mode": mode, "mtime_ns": mtime_ns,
                "owner": self._names[owner], "path": self.path(number),
                "sha256": sha.hex() if flags & _HAS_SHA else None, "size": size,
                "target": None if target == _NO_TARGET else self._targets[target], "type": TYPES[kind], "uid": uid}


_OPS = ("create", "update", "meta", "delete", "retype")
_KINDS = (None, FILE, DIR, LINK, FIFO, "special")
_REASONS = ("content", "target", "mode", "owner", "mtime", "type", "extra")
_HAS_INO = 0x80  # in the reasons byte: the action carries the inode the plan saw


class Action:
    """One change that brings a live entry to its checkpointed state."""

    __slots__ = ("op", "rel", "live_kind", "reasons", "live_ino", "_entry", "_source")

    def __init__(self, op: str, rel: str, entry: Optional[dict], live_kind: Optional[str] = None,
                 reasons: Sequence[str] = (), live_ino: Optional[int] = None) -> None:
        self.op = op  # create | update | meta | delete | retype
        self.rel = rel
        self.live_kind = live_kind
        self.reasons = tuple(reasons)
        self.live_ino = live_ino  # for meta: the inode the plan saw, the only one whose metadata may change
        self._entry = entry
        self._source: Optional[Tuple[Entries, int]] = None

    @property
    def entry(self) -> Optional[dict]:
        """The checkpointed entry (None for a delete), decoded when first asked for."""
        if self._source is not None:
            entries, number = self._source
            self._entry, self._source = entries.entry(number), None
        return self._entry

    def as_dict(self) -> dict:
        """Return the reportable form of the action."""
        return {"op": self.op, "path": self.rel, "reasons": list(self.reasons),
                "type": (self.entry or {}).get("type") or self.live_kind}


def _reason_bits(reasons: Tuple[str, ...]) -> Optional[int]:
    """Return the reasons as bits, or None when the bits would not give back the same tuple."""
    try:
        bits = sum(1 << _REASONS.index(reason) for reason in reasons)
    except ValueError:
        return None
    return bits if _bits_reasons(bits) == reasons else None


def _bits_reasons(bits: int) -> Tuple[str, ...]:
    return tuple(reason for number, reason in enumerate(_REASONS) if bits & (1 << number))


_REASON_SETS = tuple(_bits_reasons(bits) for bits in range(1 << len(_REASONS)))


class ActionList:
    """The actions of a plan in order, packed; indexing and iteration give an Action each."""

    def __init__(self) -> None:
        self._entries = Entries()
        self._ops = bytearray()
        self._kinds = bytearray()
        self._reasons = bytearray()
        self._inos = array("Q")
        self._odd_reasons: Dict[int, Tuple[str, ...]] = {}

    def append(self, action: Action) -> None:
        """Add an action at the end."""
        number = self._entries.add(action.rel, action.entry)
        self._ops.append(_OPS.index(action.op))
        self._kinds.append(_KINDS.index(action.live_kind))
        bits = _reason_bits(action.reasons)
        if bits is None:
            self._odd_reasons[number] = action.reasons
            bits = 0
        if action.live_ino is not None:
            bits |= _HAS_INO
        self._reasons.append(bits)
        self._inos.append(action.live_ino or 0)

    def __len__(self) -> int:
        return len(self._ops)

    def __getitem__(self, number: int) -> Action:
        if number < 0:
            number += len(self._ops)
        if not 0 <= number < len(self._ops):
            raise IndexError("action %d of %d" % (number, len(self._ops)))
        bits = self._reasons[number]
        reasons = self._odd_reasons.get(number) or _REASON_SETS[bits & ~_HAS_INO]
        action = Action(_OPS[self._ops[number]], self._entries.path(number), None, _KINDS[self._kinds[number]],
                        reasons, self._inos[number] if bits & _HAS_INO else None)
        action._source = (self._entries, number)  # pylint: disable=protected-access
        return action

    def __iter__(self) -> Iterator[Action]:
        for number in range(len(self._ops)):
            yield self[number]

    def __reversed__(self) -> Iterator[Action]:
        for number in range(len(self._ops) - 1, -1, -1):
            yield self[number]

    def head(self, count: int) -> List[Action]:
        """Return the first ``count`` actions."""
        return [self[number] for number in range(min(count, len(self._ops)))]

    def op(self, number: int) -> str:
        """Return the operation of action ``number``."""
        return _OPS[self._ops[number]]

    def rel(self, number: int) -> str:
        """Return the path of action ``number``."""
        return self._entries.path(number)

    def blob(self, number: int) -> Tuple[Optional[str], int, Optional[str]]:
        """Return (type, size, sha256) of action ``number``'s entry, not decoded whole (type None: a delete)."""
        return self._entries.blob(number)

    def counts(self) -> Dict[str, int]:
        """Count the actions per operation."""
        return {op: self._ops.count(number) for number, op in enumerate(_OPS) if number in self._ops}


class DirEntries:
    """The directories whose metadata a plan sets last, by key; each key's entry kept once.

    A plan's directories all come from one stored tree, where a key names one entry: a key added
    again keeps the entry it has.
    """

    def __init__(self) -> None:
        self._entries = Entries()
        self._numbers: Dict[Key, int] = {}

    def add(self, key: Key, entry: dict) -> None:
        """Keep a directory's entry (once per key)."""
        if key not in self._numbers:
            self._numbers[key] = self._entries.add("/".join(key), entry)

    def __contains__(self, key: Key) -> bool:
        return key in self._numbers

    def __len__(self) -> int:
        return len(self._numbers)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._numbers)

    def __getitem__(self, key: Key) -> Optional[dict]:
        return self._entries.entry(self._numbers[key])

    def items(self) -> Iterator[Tuple[Key, Optional[dict]]]:
        """Yield (key, entry) in the order added."""
        for key in self._numbers:
            yield key, self[key]
