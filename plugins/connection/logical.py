# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: contributors to zerotrust.workloads
"""Connection plugin for logical hosts (Kubernetes Services): it never connects, it explains."""

from __future__ import annotations

DOCUMENTATION = r"""
name: logical
short_description: Refuses to connect to a logical host such as a Kubernetes Service
version_added: 0.1.0
description:
  - The C(zerotrust.workloads.kubernetes) inventory gives every Service host this connection. A Service is a
    virtual address, not a machine, and there is nothing to log in to; any task or fact gathering that targets one
    fails at once with a message saying what to target instead, rather than timing out on a ClusterIP.
author:
  - zerotrust.workloads maintainers (@zerotrust)
options:
  hint:
    description: What to target instead; the inventory plugin sets it per Service.
    type: str
    default: target its pods or its nodes
    vars:
      - name: zt_logical_hint
"""

from typing import Any, NoReturn  # noqa: E402

from ansible.errors import AnsibleConnectionFailure  # noqa: E402
from ansible.plugins.connection import ConnectionBase  # noqa: E402


class Connection(ConnectionBase):  # type: ignore[misc]
    """Every operation raises AnsibleConnectionFailure with the same explanation."""

    transport = "zerotrust.workloads.logical"
    has_pipelining = False

    def _refuse(self) -> NoReturn:
        host = self._play_context.remote_addr or "this host"
        raise AnsibleConnectionFailure(f"{host} is a Kubernetes Service, a logical host: {self.get_option('hint')}")

    def _connect(self) -> Any:
        self._refuse()

    def exec_command(self, cmd: str, in_data: Any = None, sudoable: bool = True) -> tuple[int, bytes, bytes]:
        """Never runs anything."""
        self._refuse()

    def put_file(self, in_path: str, out_path: str) -> None:
        """Never copies anything."""
        self._refuse()

    def fetch_file(self, in_path: str, out_path: str) -> None:
        """Never fetches anything."""
        self._refuse()

    def close(self) -> None:
        """Nothing was opened."""
        self._connected = False
