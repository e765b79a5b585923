"""Write an offline stand-in for the get-pip script that ansible-test downloads.

OFFLINE BOOTSTRAP. ansible-test bootstraps pip into each virtualenv it creates by running
``~/.ansible/test/cache/get_pip_<ver>.py`` and downloads that script from the internet when it
is not cached. Where only the package registries are reachable the download fails. The script
written here installs the same pip version from a wheel fetched earlier with
``pip download --no-deps -d WHEELS pip==<ver>``. On a machine with internet access it is not
needed, and it is harmless: it installs exactly the pip ansible-test asked for.

Usage: offline_get_pip.py PIP_VERSION WHEELS_DIR CACHE_FILE
"""

import os
import sys

TEMPLATE = '''\
"""Offline get-pip written by gitops.rollback .ci/offline_get_pip.py (pip {version}).

ansible-test runs this instead of downloading get-pip-{version}.py. It imports pip from the
wheel in {wheels!r} and installs the requested packages from that directory.
"""
import glob
import sys

WHEELS = {wheels!r}
_found = sorted(glob.glob(WHEELS + "/pip-{version}-*.whl"))
if not _found:
    sys.exit("offline get-pip: no pip-{version} wheel in " + WHEELS + "; run ./dev.sh sanity to fetch it")
sys.path.insert(0, _found[0])

from pip._internal.cli.main import main  # noqa: E402  pylint: disable=wrong-import-position

_args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--find-links", WHEELS, *_args]))
'''


def main():
    """Write the offline get-pip script for the given pip version."""
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    version, wheels, cache_file = sys.argv[1:]
    wheels = os.path.abspath(wheels)
    os.makedirs(os.path.dirname(cache_file), exist_ok=True)
    tmp = cache_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(TEMPLATE.format(version=version, wheels=wheels))
    os.replace(tmp, cache_file)


if __name__ == "__main__":
    main()
