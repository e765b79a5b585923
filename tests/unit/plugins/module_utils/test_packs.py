# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding packed objects across many pack indexes, in little memory."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc

from ansible_collections.gitops.rollback.plugins.module_utils.store import packs as _packs
from ansible_collections.gitops.rollback.plugins.module_utils.store.packs import PackIndex


def _name(number):
    return hashlib.sha256(b"%d" % number).digest()


def _index(pack, names):
    """A finished pack's index of ``names`` (each object 10 bytes long, at 10 * its position)."""
    return PackIndex(pack, PackIndex.encode({name: (10 * at, 10) for at, name in enumerate(names)})[8:])


def _expected(pack, names):
    return {name: (pack, 10 * at, 10) for at, name in enumerate(names)}


def test_objects_are_found_in_every_index_read_or_added_later():
    twins = [bytes(8) + _name(n)[8:] for n in range(3)]  # names that share their first 8 bytes
    packs, expected = [], {}
    for number in range(_packs._Lookup.MAX_RUNS * 2 + 3):  # more finished packs than runs kept apart
        names = [_name(1000 * number + n) for n in range(50)] + ([twins[number]] if number < 3 else [])
        packs.append(_index("p%d.pack" % number, names))
        for name, location in _expected("p%d.pack" % number, names).items():
            expected.setdefault(name, location)
    shared = _name(999999)  # one object in two packs: either copy will do
    packs.append(_index("shared-a.pack", [shared]))
    packs.append(_index("shared-b.pack", [shared]))
    lookup = _packs._Lookup(packs[:4])
    for index in packs[4:]:
        lookup.add(index)
    for name, location in expected.items():
        assert lookup.find(name) == location and lookup.has(name)
    assert lookup.find(shared)[0] in ("shared-a.pack", "shared-b.pack")
    for missing in (_name(-1), bytes(8) + _name(-2)[8:], bytes(32), b"\xff" * 32):
        assert lookup.find(missing) is None and not lookup.has(missing)


def test_the_lookup_takes_little_memory_beside_the_indexes():
    """Every module run that reads the store loads the lookup of all its packs; a restore of
    40,000 files must stay under 60 MB with it."""
    count = 20000
    indexes = [_index("a.pack", [_name(n) for n in range(count // 2)]),
               _index("b.pack", [_name(n) for n in range(count // 2, count)])]
    gc.collect()
    tracemalloc.start()
    try:
        lookup = _packs._Lookup(indexes)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert lookup.find(_name(count - 1)) == ("b.pack", 10 * (count // 2 - 1), 10)
    assert kept / count < 24, "%d bytes per object beside the index records" % (kept / count)
