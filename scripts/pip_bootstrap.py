# SPDX-License-Identifier: GPL-3.0-or-later
"""Offline stand-in for the pip bootstrap script ansible-test downloads.

ansible-test creates empty virtual environments for some sanity tests and fetches a
"get-pip" script from a host this machine cannot reach. It runs the script with pip
install options as arguments, so this one installs the pip bundled with CPython
(ensurepip, no network) and then installs what ansible-test asked for (a current pip)
with the development environment's pip, whose path sanity.sh leaves beside this file: the
bundled pip is too old to use the system trust store, which the package index here needs.
"""

import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
arguments = [argument for argument in sys.argv[1:] if argument not in ("--no-setuptools", "--no-wheel")]
# ansible-test passes only a reduced environment on, so the path comes from a file.
host_pip_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zt_host_pip")
host_pip = ""
if os.path.isfile(host_pip_file):
    with open(host_pip_file, encoding="utf-8") as recorded:
        host_pip = recorded.read().strip()
installer = [host_pip, "--python", sys.executable] if host_pip else [sys.executable, "-m", "pip"]
sys.exit(subprocess.call([*installer, "install", *arguments]))
