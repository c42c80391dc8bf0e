# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""zerotrust.workloads.from_csw: a Secure Workload workspace document -> our policy.

Documentation: from_csw.yml beside this file; the mapping in docs/csw.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.csw import import_workspace
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError


def from_csw(workspace: Any, widen_icmp: bool = False) -> dict[str, Any]:
    """Our policy for a workspace (a mapping or its JSON text); every untranslatable item in one error."""
    if not isinstance(widen_icmp, bool):
        raise AnsibleFilterError(f"zerotrust.workloads.from_csw: widen_icmp must be true or false, got {widen_icmp!r}")
    try:
        return import_workspace(workspace, widen_icmp=widen_icmp)
    except ZeroTrustPolicyError as error:
        raise AnsibleFilterError(f"zerotrust.workloads.from_csw: {error}") from error


class FilterModule:
    """The from_csw filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        """Filter name -> function."""
        return {"from_csw": from_csw}
