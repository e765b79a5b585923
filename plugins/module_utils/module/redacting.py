# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An AnsibleModule that keeps the secrets inside URL options out of every log and result."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from ansible.module_utils.basic import AnsibleModule

from ..common.secrets import url_secrets

UrlPicker = Callable[[dict], Iterable[Optional[str]]]


class RedactingModule(AnsibleModule):
    """AnsibleModule whose ``no_log_values`` also hold the secret parts of URL options.

    ``secret_urls(params)`` names the URL values (a password or token in the userinfo, token-like
    query parameters); their secret parts are masked in the invocation Ansible logs on the host
    and in every result, warning and error, like a ``no_log`` option, while the rest of the URL
    stays readable.
    """

    def __init__(self, *args: Any, secret_urls: UrlPicker, **kwargs: Any) -> None:
        self._secret_urls = secret_urls
        super().__init__(*args, **kwargs)
        self._mask_url_secrets()

    def _mask_url_secrets(self) -> None:
        for url in self._secret_urls(self.params):
            self.no_log_values.update(url_secrets(url))

    def _log_invocation(self) -> None:
        self._mask_url_secrets()  # before the invocation reaches syslog/journald
        super()._log_invocation()
