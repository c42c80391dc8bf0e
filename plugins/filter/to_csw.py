# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""zerotrust.workloads.to_csw: our policy -> a Secure Workload workspace document.

Documentation: to_csw.yml beside this file; the mapping in docs/csw.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.csw import export_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError


def to_csw(policy: Any, name: str = "zerotrust.workloads") -> dict[str, Any]:
    """The workspace document for a policy; every item without a Secure Workload equivalent in one error."""
    if not isinstance(name, str) or not name:
        raise AnsibleFilterError(f"zerotrust.workloads.to_csw: name must be non-empty text, got {name!r}")
    try:
        return export_policy(policy, name=name)
    except ZeroTrustPolicyError as error:
        raise AnsibleFilterError(f"zerotrust.workloads.to_csw: {error}") from error


class FilterModule:
    """The to_csw filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        """Filter name -> function."""
        return {"to_csw": to_csw}
