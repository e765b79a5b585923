# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The receiver's refusals and what it computes over the bytes it holds: deltas and digests (docs/repository.md).

Part of the receiver program: :func:`~.client.receiver_source` sends what follows ``BODY_MARK`` with
:mod:`replication.receiver` to the repository host, so it is standard library only and names nothing
of the collection.
"""

from __future__ import annotations

import hashlib
import os

BODY_MARK = "# ---- sent with the receiver ----"  # what follows uses the receiver's imports only (hashlib, os)
# ---- sent with the receiver ----
DELTA_CHUNK = 1024 * 1024


class Refused(Exception):
    """A request the receiver will not carry out; the message goes back to the sender."""


def apply_delta(delta: bytes, base):
    """Yield the bytes of an object rebuilt from ``base`` (an open file) and ``delta`` (docs/repository.md).

    A delta is a sequence of instructions: ``C <offset> <length>\\n`` copies that range of the base,
    ``I <length>\\n`` followed by that many bytes inserts them. Anything else is refused. An object that would
    grow past the base's size plus the delta's ends there (it cannot hash as announced: it is sent whole).
    """
    size = os.fstat(base.fileno()).st_size
    position, room = 0, size + len(delta)
    while position < len(delta):
        end = delta.find(b"\n", position)
        fields = delta[position:end].split(b" ") if end >= 0 else []
        numbers = [int(field) for field in fields[1:]] if all(field.isdigit() for field in fields[1:]) else []
        position = end + 1
        room -= numbers[-1] if numbers else 0
        if room < 0:
            return
        if fields[:1] == [b"C"] and len(numbers) == 2 and sum(numbers) <= size:
            base.seek(numbers[0])
            left = numbers[1]
            while left:
                chunk = base.read(min(DELTA_CHUNK, left))
                if not chunk:
                    raise Refused("the base of a delta shrank while it was read")
                left -= len(chunk)
                yield chunk
        elif fields[:1] == [b"I"] and len(numbers) == 1 and numbers[0] <= len(delta) - position:
            yield delta[position:position + numbers[0]]
            position += numbers[0]
        else:
            raise Refused("a delta holds an instruction this receiver does not know (at byte %d)" % max(0, end))


def file_digest(path: str) -> str:
    """The SHA-256 of the bytes of a file the repository holds."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(DELTA_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
