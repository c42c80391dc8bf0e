# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""zerotrust.workloads.compile: policy + hostvars -> one ruleset per enforcement point.

Documentation: compile.yml beside this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from ansible.errors import AnsibleFilterError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError


def compile_filter(policy: Any, hostvars: Any, options: Optional[dict[str, Any]] = None, outline: bool = False) -> dict[str, Any]:
    """The compiled plan ``{"hosts": {...}, "warnings": [...]}``; with ``outline``, hosts without their rules."""
    try:
        plan = compile_policy(policy, hostvars, options)
    except ZeroTrustPolicyError as error:
        raise AnsibleFilterError(f"zerotrust.workloads.compile: {error}") from error
    if outline:
        # Storing a whole plan as a fact costs far more than compiling it: a validation pass keeps only this.
        return {"hosts": {host: {} for host in plan["hosts"]}, "warnings": plan["warnings"], "findings": plan["findings"]}
    return plan


class FilterModule:
    """The compile filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        """Filter name -> function."""
        return {"compile": compile_filter}
