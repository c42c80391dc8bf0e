# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""zerotrust.workloads.nodeport: a service port (number or name) -> its NodePort.

Documentation: nodeport.yml beside this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from ansible.errors import AnsibleFilterError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.services import node_port


def nodeport(service: Any, port: Any, protocol: Optional[str] = None) -> int:
    """The NodePort of ``port`` (service port number or name) of a service's hostvars."""
    try:
        return node_port(service, port, protocol)
    except ZeroTrustPolicyError as error:
        raise AnsibleFilterError(f"zerotrust.workloads.nodeport: {error}") from error


class FilterModule:
    """The nodeport filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        """Filter name -> function."""
        return {"nodeport": nodeport}
