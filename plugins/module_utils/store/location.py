# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a host's store is when no ``store_path`` is given: its own file, so the modules' shared options
(``module.options``) name it without importing the store's code."""

DEFAULT_STORE = "/var/lib/gitops-rollback"
