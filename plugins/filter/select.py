# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""zerotrust.workloads.select: a filter query -> the matching workloads and their addresses.

Documentation: select.yml beside this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import type_phrase
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import QuerySyntaxError, WorkloadError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import Selector, parse_query
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import workloads_from_hostvars


def select(query: Any, hostvars: Any) -> list[dict[str, Any]]:
    """The workloads of ``hostvars`` matching ``query``, sorted by inventory hostname."""
    if not isinstance(query, str):
        raise AnsibleFilterError(f"zerotrust.workloads.select: the input must be a query string, got {type_phrase(query)}")
    try:
        node = parse_query(query)
    except QuerySyntaxError as error:
        raise AnsibleFilterError(f"zerotrust.workloads.select: {error}") from error
    try:
        workloads, _unused_report = workloads_from_hostvars(hostvars)
    except WorkloadError as error:
        raise AnsibleFilterError(f"zerotrust.workloads.select: {error}") from error
    return [
        {
            "host": workload.host,
            "kind": workload.kind,
            "name": workload.name,
            "namespace": workload.namespace,
            "addresses": list(workload.addresses),
        }
        for workload in Selector(workloads).select(node)
    ]


class FilterModule:
    """The select filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        """Filter name -> function."""
        return {"select": select}
