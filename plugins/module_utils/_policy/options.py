# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Compiler options: implicit allowances (each switchable), management addresses, scope,
and what the ``cluster`` allowance needs beyond the inventory (upstream DNS, API access, overlay)."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._describe import brief, type_phrase
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import PolicyError, Problem, QuerySyntaxError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import Node, parse_query

IMPLICIT = ("established", "loopback", "icmpv6_neighbour_discovery", "management_ssh", "node_to_pods", "dns", "cluster")
"""Implicit allowances in the order their rules open every chain."""

OVERLAYS: dict[str, tuple[tuple[str, Optional[int], Optional[int]], ...]] = {
    "flannel-vxlan": (("udp", 8472, None),),
    "flannel-udp": (("udp", 8285, None),),
    "flannel-wireguard": (("udp", 51820, None), ("udp", 51821, 6)),
    "flannel-host-gw": (),
    "calico-bgp": (("tcp", 179, None),),
    "calico-ipip": (("ipip", None, 4),),
    "calico-vxlan": (("udp", 4789, None),),
    "calico-wireguard": (("udp", 51820, None), ("udp", 51821, 6)),
    "cilium-vxlan": (("udp", 8472, None), ("tcp", 4240, None)),
    "cilium-geneve": (("udp", 6081, None), ("tcp", 4240, None)),
}
"""Overlay name -> (protocol, port or None, IP family it needs or None): what nodes exchange.

A port marked 6 is opened only when a participating node has an IPv6 address (WireGuard
uses a second port for IPv6); ``ipip`` is IPv4 in IPv4 (IP protocol 4) and has no port."""
OVERLAY_MODES = ("auto", "none")
DEFAULT_API_ACCESS = "namespace = kube-system"


@dataclasses.dataclass(frozen=True)
class Options:
    """What the compiler adds beside the policy, and where it enforces."""

    implicit: Mapping[str, bool] = dataclasses.field(default_factory=lambda: dict.fromkeys(IMPLICIT, True))
    management_addresses: tuple[str, ...] = ()
    dns_service: str = "kube-system/kube-dns"
    scope: Optional[Node] = None
    scope_text: Optional[str] = None
    upstream_dns: tuple[str, ...] = ()
    api_access: Optional[Node] = dataclasses.field(default_factory=lambda: parse_query(DEFAULT_API_ACCESS))
    api_access_text: Optional[str] = DEFAULT_API_ACCESS
    overlay: tuple[str, ...] = ("auto",)

    def enabled(self, name: str) -> bool:
        """Is the implicit allowance ``name`` on?"""
        return bool(self.implicit.get(name, True))


def parse_options(raw: Optional[Mapping[str, Any]]) -> Options:  # noqa: PLR0912 - one check per option, all reported
    """Validate compiler options; PolicyError lists every problem (``options.<field>``)."""
    if raw is None:
        return Options()
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        raise PolicyError([Problem("options", f"must be a mapping, got {type_phrase(raw)}")])
    known = {"implicit", "management_addresses", "dns_service", "scope", "upstream_dns", "api_access", "overlay"}
    for key in sorted(set(raw) - known, key=brief):
        problems.append(Problem("options", f"unknown option {brief(key)!r}; expected {', '.join(sorted(known))}", brief(key)))
    implicit = dict.fromkeys(IMPLICIT, True)
    given = raw.get("implicit") or {}
    if not isinstance(given, Mapping):
        problems.append(Problem("options.implicit", f"must be a mapping of {', '.join(IMPLICIT)} to true/false"))
        given = {}
    for key, value in given.items():
        if key not in IMPLICIT:
            problems.append(
                Problem("options.implicit", f"unknown implicit allowance {brief(key)!r}; expected one of {', '.join(IMPLICIT)}", brief(key))
            )
        elif not isinstance(value, bool):
            problems.append(Problem(f"options.implicit.{key}", "must be true or false", brief(value)))
        else:
            implicit[key] = value
    addresses = _addresses(raw, "management_addresses", problems)
    upstream_dns = _addresses(raw, "upstream_dns", problems)
    dns_service = raw.get("dns_service", "kube-system/kube-dns")
    if not isinstance(dns_service, str) or dns_service.count("/") != 1:
        problems.append(Problem("options.dns_service", "must be NAMESPACE/NAME such as kube-system/kube-dns", brief(dns_service)))
    scope = None
    scope_text = raw.get("scope")
    if scope_text is not None:
        try:
            scope = parse_query(scope_text)
        except QuerySyntaxError as error:
            problems.append(Problem("options.scope", error.message, error.text, error.position))
    api_access_text = raw.get("api_access", DEFAULT_API_ACCESS)
    api_access = None
    if api_access_text is not None and not isinstance(api_access_text, str):
        problems.append(Problem("options.api_access", "must be a query string (empty for no pods)", brief(api_access_text)))
    elif api_access_text is not None and api_access_text.strip():
        try:
            api_access = parse_query(api_access_text)
        except QuerySyntaxError as error:
            problems.append(Problem("options.api_access", error.message, error.text, error.position))
    overlay = _overlay(raw.get("overlay", "auto"), problems)
    if problems:
        raise PolicyError(problems)
    return Options(
        implicit=implicit,
        management_addresses=tuple(sorted(set(addresses))),
        dns_service=str(dns_service),
        scope=scope,
        scope_text=None if scope_text is None else str(scope_text),
        upstream_dns=tuple(sorted(set(upstream_dns))),
        api_access=api_access,
        api_access_text=None if api_access is None else str(api_access_text),
        overlay=overlay,
    )


def _addresses(raw: Mapping[str, Any], field: str, problems: list[Problem]) -> list[str]:
    """An option holding IP addresses or CIDRs (one string or a list), canonical."""
    addresses: list[str] = []
    values = raw.get(field) or []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        problems.append(Problem(f"options.{field}", "must be a list of IP addresses or CIDRs", brief(values)))
        return addresses
    for index, value in enumerate(values):
        try:
            if not isinstance(value, str):
                raise ValueError(value)  # a number or a structure is no address (and str() of a huge one fails)
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            problems.append(Problem(f"options.{field}[{index}]", "is not an IP address or CIDR", brief(value)))
            continue
        addresses.append(str(network.network_address) if network.num_addresses == 1 else str(network))
    return addresses


def _overlay(value: Any, problems: list[Problem]) -> tuple[str, ...]:
    """``auto`` (detect from the cluster), ``none``, or overlay names that replace detection."""
    expected = f"auto, none or a list of {', '.join(OVERLAYS)}"
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)):
        problems.append(Problem("options.overlay", f"must be {expected}", brief(value)))
        return ("auto",)
    result: list[str] = []
    for index, name in enumerate(names):
        where = "options.overlay" if isinstance(value, str) else f"options.overlay[{index}]"
        text = str(name).strip().lower() if isinstance(name, str) else name
        if text in OVERLAY_MODES and isinstance(value, str):
            return (str(text),)
        if not isinstance(text, str) or text not in OVERLAYS:
            problems.append(Problem(where, f"unknown overlay; expected {expected}", brief(name)))
            continue
        result.append(str(text))
    return tuple(sorted(set(result))) if result else ("none",)
