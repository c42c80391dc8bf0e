# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Reachability: is a flow allowed by the policy, and which policies decided it?

This evaluates the policy *semantics* directly (not the compiled rules), so it is an
independent oracle for the lab's expected truth table and for the audit:

- both ends: the consumer's egress and the provider's ingress must each allow the
  flow, where an end that is not an enforcement point (outside ``scope``, or an
  external address) does not restrict it;
- at each end the first matching policy in chain order decides (absolute deny,
  absolute allow, default deny, default allow), else the catch-all;
- services: ``via`` ``cluster_ip`` (in-cluster consumers) or ``node_port``
  (out-of-cluster consumers, through the nodes' guard and, with
  ``externalTrafficPolicy: Cluster``, masqueraded at the pod); every endpoint pod
  must admit the flow;
- implicit allowances: loopback, node to its own pods, pods to cluster DNS,
  management SSH.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import Compiler
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import Options, parse_options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import Policy, PolicyRule, PortSpec, parse_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.services import (
    ServicePort,
    container_port,
    match_service_ports,
    resolve_target_port,
    service_endpoints,
    service_ports,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import Workload, workloads_from_hostvars

VIAS = ("direct", "cluster_ip", "node_port")


@dataclasses.dataclass(frozen=True)
class Flow:
    """A connection attempt. ``source`` is an inventory hostname or an IP address;
    ``destination`` an inventory hostname (a pod, node, VM or service). For a service,
    ``port`` is the service port and ``via`` says whether the ClusterIP or a NodePort is used.
    """

    source: str
    destination: str
    protocol: str
    port: Optional[int] = None
    via: str = "direct"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The answer: ``allowed``, the origins that decided (``default[0] ...``, ``catch_all``,
    ``implicit:dns``...), and a readable reason."""

    allowed: bool
    decided_by: tuple[str, ...]
    reason: str


@dataclasses.dataclass(frozen=True)
class _End:
    allowed: bool
    origin: str
    enforced: bool = True


class Reachability:
    """Answers flows for one policy over one inventory."""

    def __init__(self, policy: Policy, workloads: Sequence[Workload], options: Optional[Options] = None) -> None:
        self.compiler = Compiler(policy, workloads, options or Options())
        self.policy = policy
        self.options = self.compiler.options
        self.matched = {name: frozenset(workload.host for workload in found) for name, found in self.compiler.matched.items()}
        self.rules = policy.ordered_rules()

    @classmethod
    def from_hostvars(
        cls, policy: Union[Policy, Mapping[str, Any]], hostvars: Mapping[str, Mapping[str, Any]], options: Any = None
    ) -> Reachability:
        """Build from a policy dict (or Policy), hostvars and options, as ``compile`` takes them."""
        parsed = policy if isinstance(policy, Policy) else parse_policy(policy)
        parsed_options = options if isinstance(options, Options) else parse_options(options)
        workloads, _ = workloads_from_hostvars(hostvars)
        return cls(parsed, workloads, parsed_options)

    # -- membership --------------------------------------------------------------

    def _in_networks(self, addresses: Sequence[str], filter_name: str) -> bool:
        networks = self.policy.filters[filter_name].networks or ()
        return any(ipaddress.ip_address(address) in ipaddress.ip_network(network) for address in addresses for network in networks)

    def is_consumer(self, rule: PolicyRule, source: Optional[Workload], addresses: Sequence[str]) -> bool:
        """Is the source among the rule's consumers (directly, as an endpoint of a consumer service, or by network)?"""
        if source is not None:
            if source.host in self.matched[rule.consumer]:
                return True
            for host in self.matched[rule.consumer]:
                service = self.compiler.by_host[host]
                if service.kind == "service" and any(
                    self.compiler.endpoint_pod(service, endpoint.pod, endpoint.addresses) is source
                    for endpoint in service_endpoints(service.record)
                ):
                    return True
        return self._in_networks(addresses, rule.consumer)

    def _direct_port(self, spec: PortSpec, destination: Workload, protocol: str, port: Optional[int]) -> bool:
        if spec.protocol == "any":
            return True
        if spec.protocol == "icmp":
            return protocol == "icmp"
        if port is None or spec.protocol != protocol:
            return False
        if spec.name is not None:
            return destination.kind == "pod" and container_port(destination, spec.name, protocol) == port
        return spec.covers(protocol, port)

    def _service_port(self, spec: PortSpec, service: Workload, port: ServicePort) -> bool:
        return spec.protocol != "icmp" and port in match_service_ports(service, spec)

    # -- ends -------------------------------------------------------------------

    def _first(self, matches: Any) -> _End:
        for rule in self.rules:
            spec = matches(rule)
            if spec is not None:
                return _End(rule.action == "allow", rule.origin(spec))
        return _End(self.policy.catch_all == "allow", "catch_all")

    def _direct_end(
        self, source: Optional[Workload], addresses: Sequence[str], destination: Workload, protocol: str, port: Optional[int]
    ) -> _End:
        def matches(rule: PolicyRule) -> Optional[PortSpec]:
            if not self.is_consumer(rule, source, addresses):
                return None
            if destination.host not in self.matched[rule.provider] and not self._in_networks(destination.addresses, rule.provider):
                return None
            return next((spec for spec in rule.ports if self._direct_port(spec, destination, protocol, port)), None)

        return self._first(matches)

    def _service_end(
        self, source: Optional[Workload], addresses: Sequence[str], service: Workload, port: ServicePort, pod: Optional[Workload]
    ) -> _End:
        """First policy admitting source -> service port (or, with ``pod``, -> that endpoint pod directly)."""

        def matches(rule: PolicyRule) -> Optional[PortSpec]:
            if not self.is_consumer(rule, source, addresses):
                return None
            if service.host in self.matched[rule.provider]:
                found = next((spec for spec in rule.ports if self._service_port(spec, service, port)), None)
                if found is not None:
                    return found
            if pod is not None and pod.host in self.matched[rule.provider]:
                target = self._target(service, port, pod)
                return next((spec for spec in rule.ports if self._direct_port(spec, pod, port.protocol, target)), None)
            return None

        return self._first(matches)

    def _target(self, service: Workload, port: ServicePort, pod: Workload) -> Optional[int]:
        for endpoint in service_endpoints(service.record):
            if self.compiler.endpoint_pod(service, endpoint.pod, endpoint.addresses) is pod:
                return resolve_target_port(port, endpoint, pod)
        return None

    def _masquerade_end(self, service: Workload, port: ServicePort) -> _End:
        # With externalTrafficPolicy Cluster the pod sees node addresses; it admits them when
        # some allow policy opens this service port to out-of-cluster consumers.
        for rule in self.rules:
            if rule.action != "allow" or service.host not in self.matched[rule.provider]:
                continue
            has_outside = any(self.compiler.by_host[host].kind == "vm" for host in self.matched[rule.consumer]) or bool(
                self.policy.filters[rule.consumer].networks
            )
            spec = next((spec for spec in rule.ports if self._service_port(spec, service, port)), None)
            if has_outside and spec is not None:
                return _End(True, rule.origin(spec) + " via nodeport")
        return _End(self.policy.catch_all == "allow", "catch_all")

    def _guard_end(self, source: Optional[Workload], addresses: Sequence[str], service: Workload, port: ServicePort) -> _End:
        def matches(rule: PolicyRule) -> Optional[PortSpec]:
            if service.host not in self.matched[rule.provider]:
                return None
            outside = source is None or source.kind == "vm"
            if not outside or not self.is_consumer(rule, source, addresses):
                return None
            return next((spec for spec in rule.ports if self._service_port(spec, service, port)), None)

        end = self._first(matches)
        return end if end.origin != "catch_all" else _End(self.policy.catch_all == "allow", "catch_all nodeport")

    # -- the question ------------------------------------------------------------

    def check(self, flow: Flow) -> Verdict:
        """Decide one flow; raises ZeroTrustPolicyError for unknown hosts or a bad ``via``."""
        if flow.via not in VIAS:
            raise ZeroTrustPolicyError(f"via {flow.via!r} is not one of {', '.join(VIAS)}")
        protocol = flow.protocol.lower()
        source = self.compiler.by_host.get(flow.source)
        if source is None:
            try:
                addresses: tuple[str, ...] = (str(ipaddress.ip_address(flow.source)),)
            except ValueError:
                raise ZeroTrustPolicyError(f"source {flow.source!r} is neither an inventory workload nor an IP address") from None
        else:
            addresses = self.compiler.peer_addresses(source)
        destination = self.compiler.by_host.get(flow.destination)
        if destination is None:
            raise ZeroTrustPolicyError(f"destination {flow.destination!r} is not an inventory workload")
        implicit = self._implicit(source, addresses, destination, protocol, flow.port)
        if implicit is not None:
            return Verdict(True, (implicit,), f"allowed by {implicit}")
        source_enforced = source is not None and source.host in self.compiler.points
        if destination.kind != "service":
            ends = [self._direct_end(source, addresses, destination, protocol, flow.port) if source_enforced else _End(True, "", False)]
            ends.append(
                self._direct_end(source, addresses, destination, protocol, flow.port)
                if destination.host in self.compiler.points
                else _End(True, "", False)
            )
            return self._combine(ends, ("consumer", "provider"))
        return self._service_flow(source, addresses, destination, protocol=protocol, flow=flow, source_enforced=source_enforced)

    def _service_flow(  # noqa: PLR0912 - the paths of a service flow, each explained inline
        self, source: Optional[Workload], addresses: Sequence[str], service: Workload, *, protocol: str, flow: Flow, source_enforced: bool
    ) -> Verdict:
        ports = [port for port in service_ports(service.record) if port.protocol == protocol and port.port == flow.port]
        if not ports:
            return Verdict(False, (), f"service {service.key} has no port {protocol}/{flow.port}")
        port = ports[0]
        outside = source is None or source.kind == "vm"
        if flow.via == "direct":
            return Verdict(False, (), "a service is reached via cluster_ip or node_port, not directly")
        if flow.via == "node_port":
            if port.node_port is None or str(service.record.get("type")) not in ("NodePort", "LoadBalancer"):
                return Verdict(False, (), f"service {service.key} port {port.port} has no NodePort")
        elif outside:
            return Verdict(False, (), "the ClusterIP is not reachable from outside the cluster")
        ends: list[_End] = []
        names: list[str] = []
        if source_enforced:
            names.append("consumer")
            if flow.via == "node_port" and not outside:
                ends.append(_End(self.policy.catch_all == "allow", "catch_all"))
            else:
                ends.append(self._service_end(source, addresses, service, port, None))
        if flow.via == "node_port" and any(node.host in self.compiler.points for node in self.compiler.cluster_nodes(service.cluster)):
            names.append("nodeport guard")
            ends.append(self._guard_end(source, addresses, service, port))
        pods = [self.compiler.endpoint_pod(service, endpoint.pod, endpoint.addresses) for endpoint in service_endpoints(service.record)]
        if not pods:
            return Verdict(False, (), f"service {service.key} has no endpoints")
        local = str(service.record.get("external_traffic_policy") or "Cluster") == "Local"
        for pod in pods:
            if pod is None or pod.host not in self.compiler.points:
                continue
            names.append(f"endpoint {pod.key}")
            if flow.via == "node_port" and not local:
                ends.append(self._masquerade_end(service, port))
            else:
                ends.append(self._service_end(source, addresses, service, port, pod))
        return self._combine(ends, tuple(names))

    def _combine(self, ends: Sequence[_End], names: Sequence[str]) -> Verdict:
        for end, name in zip(ends, names):  # noqa: B905 - zip(strict=) needs Python 3.10; module_utils stay 3.9-safe
            if end.enforced and not end.allowed:
                return Verdict(False, (end.origin,), f"denied at the {name} by {end.origin}")
        decided = tuple(dict.fromkeys(end.origin for end in ends if end.enforced))
        if not decided:
            return Verdict(True, (), "neither end is enforced")
        return Verdict(True, decided, "allowed at every enforced end")

    def _implicit(
        self, source: Optional[Workload], addresses: Sequence[str], destination: Workload, protocol: str, port: Optional[int]
    ) -> Optional[str]:
        options = self.options
        if source is destination and options.enabled("loopback"):
            return "implicit:loopback"
        if (
            source is not None
            and source.kind == "node"
            and destination.kind == "pod"
            and options.enabled("node_to_pods")
            and self.compiler.node_of(destination) is source
        ):
            return "implicit:node_to_pods"
        if (
            options.enabled("management_ssh")
            and destination.kind in ("vm", "node")
            and protocol == "tcp"
            and port == 22
            and (not options.management_addresses or self._inside(addresses, options.management_addresses))
            and (source is None or source.host not in self.compiler.points)
        ):
            return "implicit:management_ssh"
        if options.enabled("dns") and source is not None and source.kind == "pod" and protocol in ("udp", "tcp"):
            dns = self.compiler.dns_service(source.cluster)
            if (
                dns is not None
                and destination is dns
                and any(item.port == port and item.protocol == protocol for item in service_ports(dns.record))
            ):
                return "implicit:dns"
        return None

    @staticmethod
    def _inside(addresses: Sequence[str], networks: Sequence[str]) -> bool:
        return any(ipaddress.ip_address(address) in ipaddress.ip_network(network) for address in addresses for network in networks)


def check_flow(
    policy: Union[Policy, Mapping[str, Any]], hostvars: Mapping[str, Mapping[str, Any]], flow: Flow, options: Any = None
) -> Verdict:
    """Convenience: decide one flow from a policy dict and hostvars."""
    return Reachability.from_hostvars(policy, hostvars, options).check(flow)
