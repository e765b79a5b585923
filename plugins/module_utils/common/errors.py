# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors of the gitops.rollback engine; each message names the problem and the way out."""

from __future__ import annotations

import errno

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space left on the device, disk quota exceeded


class RollbackError(Exception):
    """A failure the user can act on; ``str()`` is the message to show."""

    # never "path": Ansible adds the metadata of a returned path (mode, owner, size), which would read as
    # describing whatever the message is about (a damaged object), not the live file
    PUBLIC = ("available", "holder", "expected", "actual", "differences", "damaged")

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.details = details

    def public_details(self) -> dict:
        """Return the details a module may show (never secrets or internals)."""
        return {key: value for key, value in self.details.items() if key in self.PUBLIC}


class CheckpointNotFound(RollbackError):
    """A checkpoint id or label is not in the store."""


class IntegrityError(RollbackError):
    """A stored object does not hash to its name, or a manifest is malformed."""


class UnsafePathError(RollbackError):
    """A manifest path would escape its managed root."""


class LockHeldError(RollbackError):
    """Another live process holds the lock."""


class StoreFullError(RollbackError):
    """The disk filled up while writing to the store."""


class BadLabel(RollbackError):
    """A label given for a new checkpoint, release, snapshot or migration is outside the label grammar."""


class NotAStore(RollbackError):
    """A store_path names something other than a checkpoint store (a file, a link, another directory)."""


class UnsupportedFormat(RollbackError):
    """A manifest or store has a format version this code does not know."""


class CommandError(RollbackError):
    """An external command failed; ``details`` carries cmd, rc and stderr."""


class EncryptionKeyError(RollbackError):
    """The encryption key is missing, too short, or not the key of the store."""


class MissingLibraryError(RollbackError):
    """A Python library that an operation needs is not installed on the host running it."""
