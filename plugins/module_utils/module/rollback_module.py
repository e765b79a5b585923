# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AnsibleModule of the collection's modules: store options, typed errors, check and diff mode.

A module builds one :class:`RollbackModule` and runs its operation through :meth:`RollbackModule.run`;
the engine below it raises :class:`~._errors.RollbackError` and never sees Ansible.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional, Sequence, TypeVar

from ..common.errors import FULL_ERRNOS, RollbackError, StoreFullError
from .options import store_argument_spec
from .redacting import RedactingModule

T = TypeVar("T")


def no_secret_urls(params: dict) -> Iterable[Optional[str]]:
    """Name no URL option (the default of :class:`RollbackModule`)."""
    del params
    return []


class RollbackModule(RedactingModule):
    """AnsibleModule that merges the shared store options and turns typed errors into failed tasks.

    ``store=True`` adds the options of the store doc fragment (``store_argument_spec()``); with an
    ``encryption_key``, the store's key derivation starts at once in the background (a module that
    imports its engine after building this object has it derived meanwhile on another core). A
    :class:`RollbackError` raised by :meth:`run` fails the task with its message and those of its
    details named in ``error_details`` (only those: details may hold internals). ``secret_urls``
    names URL options whose secret parts are masked (see :class:`RedactingModule`).
    """

    def __init__(self, argument_spec: Dict[str, Any], *, store: bool = False, error_details: Sequence[str] = (),
                 secret_urls: Callable[[dict], Iterable[Optional[str]]] = no_secret_urls, **kwargs: Any) -> None:
        spec = dict(argument_spec)
        if store:
            spec.update(store_argument_spec())
        self.error_details = tuple(error_details)
        super().__init__(argument_spec=spec, secret_urls=secret_urls, **kwargs)
        if store and self.params.get("encryption_key"):
            # the store's code only here (an encrypted store): a module that never opens a store does not load it
            from ..store.root import StoreRoot  # pylint: disable=import-outside-toplevel
            StoreRoot(self.params["store_path"], self.params["encryption_key"]).derive_key_soon()

    @property
    def diff_mode(self) -> bool:
        """Whether the task runs with ``--diff`` (or ``diff: true``)."""
        return bool(self._diff)

    def fail_on_error(self, exc: RollbackError, **fields: Any) -> None:
        """Fail the task with the error's message, its shown details and ``fields`` (details win)."""
        shown = {key: value for key, value in exc.details.items() if key in self.error_details}
        self.fail_json(msg=str(exc), **dict(fields, **shown))

    def run(self, operation: Callable[[], T], **fields: Any) -> T:
        """Return what ``operation()`` returns; a RollbackError fails the task (with ``fields`` in the result)."""
        try:
            return operation()
        except RollbackError as exc:
            self.fail_on_error(exc, **fields)
            raise  # not reached: fail_json exits
        except OSError as exc:
            if exc.errno not in FULL_ERRNOS:
                raise
            # every store write names a full disk itself; this is the net under one that does not
            self.fail_on_error(StoreFullError("No space left on device (%s). Free space (or prune old checkpoints "
                                              "with gitops.rollback.checkpoint state=pruned) and run again." % exc))
            raise  # not reached: fail_json exits
