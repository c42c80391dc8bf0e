# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Compiler options: implicit allowances (each switchable), management addresses, scope."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import PolicyError, Problem, QuerySyntaxError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import Node, parse_query

IMPLICIT = ("established", "loopback", "icmpv6_neighbour_discovery", "management_ssh", "node_to_pods", "dns")
"""Implicit allowances in the order their rules open every chain."""


@dataclasses.dataclass(frozen=True)
class Options:
    """What the compiler adds beside the policy, and where it enforces."""

    implicit: Mapping[str, bool] = dataclasses.field(default_factory=lambda: dict.fromkeys(IMPLICIT, True))
    management_addresses: tuple[str, ...] = ()
    dns_service: str = "kube-system/kube-dns"
    scope: Optional[Node] = None
    scope_text: Optional[str] = None

    def enabled(self, name: str) -> bool:
        """Is the implicit allowance ``name`` on?"""
        return bool(self.implicit.get(name, True))


def parse_options(raw: Optional[Mapping[str, Any]]) -> Options:  # noqa: PLR0912 - one check per option, all reported
    """Validate compiler options; PolicyError lists every problem (``options.<field>``)."""
    if raw is None:
        return Options()
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        raise PolicyError([Problem("options", f"must be a mapping, got {type(raw).__name__}")])
    known = {"implicit", "management_addresses", "dns_service", "scope"}
    for key in sorted(set(raw) - known, key=str):
        problems.append(Problem("options", f"unknown option {key!r}; expected {', '.join(sorted(known))}", str(key)))
    implicit = dict.fromkeys(IMPLICIT, True)
    given = raw.get("implicit") or {}
    if not isinstance(given, Mapping):
        problems.append(Problem("options.implicit", f"must be a mapping of {', '.join(IMPLICIT)} to true/false"))
        given = {}
    for key, value in given.items():
        if key not in IMPLICIT:
            problems.append(
                Problem("options.implicit", f"unknown implicit allowance {key!r}; expected one of {', '.join(IMPLICIT)}", str(key))
            )
        elif not isinstance(value, bool):
            problems.append(Problem(f"options.implicit.{key}", "must be true or false", str(value)))
        else:
            implicit[key] = value
    addresses: list[str] = []
    raw_addresses = raw.get("management_addresses") or []
    if isinstance(raw_addresses, str):
        raw_addresses = [raw_addresses]
    for index, value in enumerate(raw_addresses):
        try:
            network = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            problems.append(Problem(f"options.management_addresses[{index}]", "is not an IP address or CIDR", str(value)))
            continue
        addresses.append(str(network.network_address) if network.num_addresses == 1 else str(network))
    dns_service = raw.get("dns_service", "kube-system/kube-dns")
    if not isinstance(dns_service, str) or dns_service.count("/") != 1:
        problems.append(Problem("options.dns_service", "must be NAMESPACE/NAME such as kube-system/kube-dns", str(dns_service)))
    scope = None
    scope_text = raw.get("scope")
    if scope_text is not None:
        try:
            scope = parse_query(scope_text)
        except QuerySyntaxError as error:
            problems.append(Problem("options.scope", error.message, error.text, error.position))
    if problems:
        raise PolicyError(problems)
    return Options(
        implicit=implicit,
        management_addresses=tuple(sorted(set(addresses))),
        dns_service=str(dns_service),
        scope=scope,
        scope_text=None if scope_text is None else str(scope_text),
    )
