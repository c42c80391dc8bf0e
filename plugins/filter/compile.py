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


def compile_filter(policy: Any, hostvars: Any, options: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The compiled plan ``{"hosts": {...}, "warnings": [...]}``."""
    try:
        return compile_policy(policy, hostvars, options)
    except ZeroTrustPolicyError as error:
        raise AnsibleFilterError(f"zerotrust.workloads.compile: {error}") from error


class FilterModule:
    """The compile filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        """Filter name -> function."""
        return {"compile": compile_filter}
