# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Reachability: is a flow allowed by the policy, and which policies decided it?

This evaluates the policy *semantics* directly from the policy and the workloads (it
never reads compiled rules), so it is an independent oracle for the lab's expected
truth table and for the audit. It follows the packet as the firewalls see it:

- the consumer's egress sees the destination address the consumer dials (a pod IP, a
  ClusterIP, a node address on a NodePort), the provider's ingress sees the source
  address that arrives (the consumer, or with ``externalTrafficPolicy: Cluster`` the
  masquerading node), and a node's NodePort guard sees the consumer before DNAT;
- at each end the first matching policy in chain order decides (implicit allowances,
  absolute deny, absolute allow, default deny, default allow), else the catch-all; a
  policy matches when the peer address belongs to one of its filter's workloads or
  networks, exactly as the address sets the compiler builds;
- a flow is allowed when every enforced end on its path allows it (an end outside the
  ``scope`` or not in the inventory does not restrict it). Through a NodePort every node
  is tried as the entry point, with every endpoint pod.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
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
NODEPORT_TYPES = ("NodePort", "LoadBalancer")


@dataclasses.dataclass(frozen=True)
class Flow:
    """A connection attempt.

    ``source`` is an inventory hostname or an IP address; ``destination`` an inventory
    hostname (a pod, node, VM or service). For a service, ``port`` is the service port
    and ``via`` says whether the ClusterIP (``cluster_ip``) or the NodePort
    (``node_port``) is dialled.
    """

    source: str
    destination: str
    protocol: str
    port: Optional[int] = None
    via: str = "direct"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``allowed``; ``decided_by``: the origins that decided (``default[0] ...``,
    ``catch_all``, ``implicit:dns``...): only the denying one when denied; when allowed,
    the policies (and catch-all), or the implicit allowances when nothing else decided."""

    allowed: bool
    decided_by: tuple[str, ...]
    reason: str


@dataclasses.dataclass(frozen=True)
class _End:
    name: str
    allowed: bool
    origin: str


class _Addresses:
    """Addresses and networks, with containment."""

    def __init__(self, members: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.networks: list[Any] = []
        for member in members:
            network = ipaddress.ip_network(member, strict=False)
            if network.num_addresses == 1:
                self.exact.add(str(network.network_address))
            else:
                self.networks.append(network)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        if address in self.exact:
            return True
        parsed = ipaddress.ip_address(address)
        return any(parsed in network for network in self.networks)


class Reachability:
    """Answers flows for one policy over one inventory."""

    def __init__(
        self, policy: Policy, workloads: Sequence[Workload], options: Optional[Options] = None, warnings: Optional[list[str]] = None
    ) -> None:
        # The compiler is used for its lookups only (matches, nodes, endpoint pods, scope), never its rules.
        self.compiler = Compiler(policy, workloads, options or Options(), warnings)
        self.policy = policy
        self.options = self.compiler.options
        self.rules = policy.ordered_rules()
        self._consumer_sets: dict[tuple[str, str], _Addresses] = {}
        # Answers repeat across the many flows of a truth table or an audit: cache the lookups.
        self._endpoint_cache: dict[str, list[Workload]] = {}
        self._network_cache: dict[str, _Addresses] = {}

    @classmethod
    def from_hostvars(
        cls, policy: Union[Policy, Mapping[str, Any]], hostvars: Mapping[str, Mapping[str, Any]], options: Any = None
    ) -> Reachability:
        """Build from a policy dict (or Policy), hostvars and options, as ``compile`` takes them."""
        parsed = policy if isinstance(policy, Policy) else parse_policy(policy)
        parsed_options = options if isinstance(options, Options) else parse_options(options)
        workloads, warnings = workloads_from_hostvars(hostvars)
        return cls(parsed, workloads, parsed_options, warnings)

    # -- who is who ---------------------------------------------------------------

    def matched(self, filter_name: str) -> list[Workload]:
        """The workloads a filter selects."""
        return self.compiler.matched[filter_name]

    def networks(self, filter_name: str) -> tuple[str, ...]:
        """The networks an address-only filter stands for."""
        return self.policy.filters[filter_name].networks or ()

    def enforces_egress_for(self, rule: PolicyRule, source: Workload) -> bool:
        """Does ``rule`` put egress rules at ``source`` (a consumer, or an endpoint pod of a consumer service)?"""
        for consumer in self.matched(rule.consumer):
            if consumer is source:
                return True
            if consumer.kind == "service" and source.kind == "pod" and source in self._endpoint_pods(consumer):
                return True
        return False

    def consumer_addresses(self, rule: PolicyRule, side: str) -> _Addresses:
        """Consumer addresses of a rule: ``in`` (in-cluster), ``out`` (VMs, networks) or ``all``."""
        key = (rule.label, side)
        if key not in self._consumer_sets:
            members: list[str] = []
            for consumer in self.matched(rule.consumer):
                inside = consumer.kind != "vm"
                if side == "all" or (side == "in") == inside:
                    members.extend(self.compiler.peer_addresses(consumer))
            if side in ("all", "out"):
                members.extend(self.networks(rule.consumer))
            self._consumer_sets[key] = _Addresses(members)
        return self._consumer_sets[key]

    def has_outside_consumers(self, rule: PolicyRule) -> bool:
        """Does a rule have out-of-cluster consumers (VMs or networks)?"""
        return any(consumer.kind == "vm" for consumer in self.matched(rule.consumer)) or bool(self.networks(rule.consumer))

    def _endpoint_pods(self, service: Workload) -> list[Workload]:
        found = self._endpoint_cache.get(service.host)
        if found is None:
            pods = [self.compiler.endpoint_pod(service, endpoint.pod, endpoint.addresses) for endpoint in service_endpoints(service.record)]
            found = [pod for pod in pods if pod is not None]
            self._endpoint_cache[service.host] = found
        return found

    def _network_set(self, filter_name: str) -> _Addresses:
        found = self._network_cache.get(filter_name)
        if found is None:
            found = self._network_cache[filter_name] = _Addresses(self.networks(filter_name))
        return found

    def _target(self, service: Workload, port: ServicePort, pod: Workload) -> Optional[int]:
        for endpoint in service_endpoints(service.record):
            if self.compiler.endpoint_pod(service, endpoint.pod, endpoint.addresses) is pod:
                return resolve_target_port(port, endpoint, pod)
        return None

    @staticmethod
    def _direct_port(spec: PortSpec, provider: Workload, protocol: str, port: Optional[int]) -> bool:
        if spec.protocol == "any":
            return True
        if spec.protocol == "icmp":
            return protocol == "icmp"
        if port is None or spec.protocol != protocol:
            return False
        if spec.name is not None:
            return provider.kind == "pod" and container_port(provider, spec.name, protocol) == port
        return spec.covers(protocol, port)

    def _service_ports(self, spec: PortSpec, service: Workload, protocol: str) -> list[ServicePort]:
        if spec.protocol == "icmp":
            return []
        return [port for port in match_service_ports(service, spec) if port.protocol == protocol]

    # -- the three kinds of end ------------------------------------------------------

    def _first(self, name: str, matches: Callable[[PolicyRule], Optional[str]]) -> _End:
        for rule in self.rules:
            origin = matches(rule)
            if origin is not None:
                return _End(name, rule.action == "allow", origin)
        return _End(name, self.policy.catch_all == "allow", "catch_all")

    def egress_end(self, source: Workload, destination: str, protocol: str, port: Optional[int]) -> _End:
        """The consumer's egress chain for a connection to ``destination`` (address) ``protocol``/``port``."""
        implicit = self._implicit_egress(source, destination, protocol, port)
        if implicit is not None:
            return _End("consumer", True, implicit)
        inside = source.kind != "vm"

        def matches(rule: PolicyRule) -> Optional[str]:
            if not self.enforces_egress_for(rule, source):
                return None
            for spec in rule.ports:
                if self._egress_spec(rule, spec, inside=inside, destination=destination, protocol=protocol, port=port):
                    return rule.origin(spec)
            return None

        return self._first("consumer", matches)

    def _egress_spec(self, rule: PolicyRule, spec: PortSpec, *, inside: bool, destination: str, protocol: str, port: Optional[int]) -> bool:
        if spec.name is None and self._direct_port(spec, _NOBODY, protocol, port) and destination in self._network_set(rule.provider):
            return True
        for provider in self.matched(rule.provider):
            if provider.kind != "service":
                if destination in self.compiler.peer_addresses(provider) and self._direct_port(spec, provider, protocol, port):
                    return True
                continue
            for service_port in self._service_ports(spec, provider, protocol):
                if inside and self._reaches_inside(provider, service_port, destination, port):
                    return True
                if not inside and self._reaches_outside(provider, service_port, destination, port):
                    return True
        return False

    def _reaches_inside(self, service: Workload, service_port: ServicePort, destination: str, port: Optional[int]) -> bool:
        if destination in service.addresses and port == service_port.port:
            return True
        for endpoint in service_endpoints(service.record):
            pod = self.compiler.endpoint_pod(service, endpoint.pod, endpoint.addresses)
            if destination in endpoint.addresses and port == resolve_target_port(service_port, endpoint, pod):
                return True
        return False

    def _reaches_outside(self, service: Workload, service_port: ServicePort, destination: str, port: Optional[int]) -> bool:
        record = service.record
        if (
            str(record.get("type")) in NODEPORT_TYPES
            and service_port.node_port is not None
            and port == service_port.node_port
            and any(destination in node.addresses for node in self.compiler.cluster_nodes(service.cluster))
        ):
            return True
        outside_ips = [*(record.get("load_balancer_ingress") or ()), *(record.get("external_ips") or ())]
        return port == service_port.port and destination in outside_ips

    def ingress_end(self, destination: Workload, source: str, protocol: str, port: Optional[int]) -> _End:
        """The provider's ingress chain for a connection arriving from ``source`` (address)."""
        implicit = self._implicit_ingress(destination, source, protocol, port)
        if implicit is not None:
            return _End("provider", True, implicit)

        def matches(rule: PolicyRule) -> Optional[str]:
            for spec in rule.ports:
                origin = self._ingress_spec(rule, spec, destination, source=source, protocol=protocol, port=port)
                if origin is not None:
                    return origin
            return None

        return self._first("provider", matches)

    def _ingress_spec(
        self, rule: PolicyRule, spec: PortSpec, destination: Workload, *, source: str, protocol: str, port: Optional[int]
    ) -> Optional[str]:
        for provider in self.matched(rule.provider):
            if provider is destination and provider.kind != "service":
                if self._direct_port(spec, provider, protocol, port) and source in self.consumer_addresses(rule, "all"):
                    return rule.origin(spec)
                continue
            if provider.kind != "service" or destination.kind != "pod" or destination not in self._endpoint_pods(provider):
                continue
            for service_port in self._service_ports(spec, provider, protocol):
                if self._target(provider, service_port, destination) != port:
                    continue
                if source in self.consumer_addresses(rule, "in"):
                    return rule.origin(spec)
                if not self.has_outside_consumers(rule):
                    continue
                if str(provider.record.get("external_traffic_policy") or "Cluster") == "Local":
                    if source in self.consumer_addresses(rule, "out"):
                        return rule.origin(spec)
                elif rule.action == "allow" and source in self._masquerade(destination):
                    return rule.origin(spec) + " via nodeport"
        return None

    def _masquerade(self, pod: Workload) -> _Addresses:
        node = self.compiler.node_of(pod)
        if node is None:
            return _Addresses(())
        members = [*node.gateways(), *node.tunnel_addresses]
        for other in self.compiler.cluster_nodes(node.cluster):
            members.extend(other.tunnel_addresses)
            if other is not node:
                members.extend(other.addresses)
        return _Addresses(members)

    def guard_end(self, node: Workload, source: str, protocol: str, node_port: int) -> _End:
        """A node's NodePort guard for a NEW connection from ``source`` to ``node_port``."""

        def matches(rule: PolicyRule) -> Optional[str]:
            if not self.has_outside_consumers(rule) or source not in self.consumer_addresses(rule, "out"):
                return None
            for spec in rule.ports:
                for service in self.matched(rule.provider):
                    if (
                        service.kind != "service"
                        or service.cluster != node.cluster
                        or str(service.record.get("type")) not in NODEPORT_TYPES
                    ):
                        continue
                    if any(item.node_port == node_port for item in self._service_ports(spec, service, protocol)):
                        return rule.origin(spec)
            return None

        for rule in self.rules:
            origin = matches(rule)
            if origin is not None:
                return _End("nodeport guard", rule.action == "allow", origin)
        if self.policy.catch_all == "deny" and any(
            port.node_port == node_port and port.protocol == protocol
            for service in self.compiler.workloads
            if service.kind == "service" and service.cluster == node.cluster and str(service.record.get("type")) in NODEPORT_TYPES
            for port in service_ports(service.record)
        ):
            return _End("nodeport guard", False, "catch_all nodeport")
        return _End("nodeport guard", True, "nodeport_guard")

    # -- implicit allowances -------------------------------------------------------

    def _implicit_egress(self, source: Workload, destination: str, protocol: str, port: Optional[int]) -> Optional[str]:
        options = self.options
        if options.enabled("node_to_pods") and source.kind == "node" and destination in _Addresses(source.pod_cidrs):
            return "implicit:node_to_pods"
        if options.enabled("dns") and source.kind == "pod" and protocol in ("udp", "tcp"):
            dns = self.compiler.dns_service(source.cluster)
            if dns is not None and destination in (*dns.addresses, *self.compiler.peer_addresses(dns)):
                ports: set[Optional[int]] = set()
                for service_port in service_ports(dns.record):
                    if service_port.protocol == protocol:
                        ports.add(service_port.port)
                        for endpoint in service_endpoints(dns.record):
                            pod = self.compiler.endpoint_pod(dns, endpoint.pod, endpoint.addresses)
                            ports.add(resolve_target_port(service_port, endpoint, pod))
                if port in ports:
                    return "implicit:dns"
        return None

    def _implicit_ingress(self, destination: Workload, source: str, protocol: str, port: Optional[int]) -> Optional[str]:
        options = self.options
        ssh = options.enabled("management_ssh") and destination.kind in ("vm", "node") and protocol == "tcp" and port == 22
        if ssh and (not options.management_addresses or source in _Addresses(options.management_addresses)):
            return "implicit:management_ssh"
        if options.enabled("node_to_pods") and destination.kind == "pod":
            node = self.compiler.node_of(destination)
            if node is not None and source in (*node.gateways(), *node.tunnel_addresses):
                return "implicit:node_to_pods"
        if options.enabled("dns") and destination.kind == "pod" and protocol in ("udp", "tcp"):
            dns = self.compiler.dns_service(destination.cluster)
            if dns is not None and destination in self._endpoint_pods(dns):
                cidrs = _Addresses(cidr for node in self.compiler.cluster_nodes(destination.cluster) for cidr in node.pod_cidrs)
                targets = {self._target(dns, item, destination) for item in service_ports(dns.record) if item.protocol == protocol}
                if port in targets and source in cidrs:
                    return "implicit:dns"
        return None

    # -- the question --------------------------------------------------------------

    def check(self, flow: Flow) -> Verdict:
        """Decide one flow; raises ZeroTrustPolicyError for unknown hosts or a bad ``via``."""
        if flow.via not in VIAS:
            raise ZeroTrustPolicyError(f"via {flow.via!r} is not one of {', '.join(VIAS)}")
        protocol = flow.protocol.lower()
        source = self.compiler.by_host.get(flow.source)
        if source is None:
            try:
                source_address = str(ipaddress.ip_address(flow.source))
            except ValueError:
                raise ZeroTrustPolicyError(f"source {flow.source!r} is neither an inventory workload nor an IP address") from None
        elif not source.addresses:
            raise ZeroTrustPolicyError(f"source {flow.source!r} has no address")
        else:
            source_address = source.addresses[0]
        destination = self.compiler.by_host.get(flow.destination)
        if destination is None:
            raise ZeroTrustPolicyError(f"destination {flow.destination!r} is not an inventory workload")
        if source is destination and self.options.enabled("loopback"):
            return Verdict(True, ("implicit:loopback",), "allowed by implicit:loopback")
        if destination.kind != "service":
            if flow.via != "direct":
                raise ZeroTrustPolicyError(f"via {flow.via!r} applies to services; {flow.destination} is a {destination.kind}")
            if not destination.addresses:
                return Verdict(False, (), f"{flow.destination} has no address")
            seen = self._seen_from(source, source_address, destination)
            ends = [
                self._egress(source, destination.addresses[0], protocol, flow.port),
                self._ingress(destination, seen, protocol, flow.port),
            ]
            return self._combine(ends)
        return self._service_flow(source, source_address, destination, protocol, flow)

    def _seen_from(self, source: Optional[Workload], source_address: str, destination: Workload) -> str:
        """The source address a destination sees (a node talking to its own pods uses its gateway)."""
        if source is not None and source.kind == "node" and destination.kind == "pod" and self.compiler.node_of(destination) is source:
            gateways = source.gateways()
            if gateways:
                return gateways[0]
        return source_address

    def _egress(self, source: Optional[Workload], destination: str, protocol: str, port: Optional[int]) -> Optional[_End]:
        if source is None or source.host not in self.compiler.points:
            return None
        return self.egress_end(source, destination, protocol, port)

    def _ingress(self, destination: Workload, source: str, protocol: str, port: Optional[int]) -> Optional[_End]:
        if destination.host not in self.compiler.points:
            return None
        return self.ingress_end(destination, source, protocol, port)

    def _service_flow(  # noqa: PLR0911, PLR0912 - each way a service flow can fail is named
        self, source: Optional[Workload], source_address: str, service: Workload, protocol: str, flow: Flow
    ) -> Verdict:
        ports = [port for port in service_ports(service.record) if port.protocol == protocol and port.port == flow.port]
        if not ports:
            return Verdict(False, (), f"service {service.key} has no port {protocol}/{flow.port}")
        port = ports[0]
        outside = source is None or source.kind == "vm"
        if flow.via == "direct":
            raise ZeroTrustPolicyError("a service is reached via cluster_ip or node_port, not directly")
        if not service_endpoints(service.record):
            return Verdict(False, (), f"service {service.key} has no endpoints")
        # Endpoints whose pods are not in the inventory are not enforced: only the consumer side decides for them.
        pods = self._endpoint_pods(service)
        ends: list[Optional[_End]] = []
        if flow.via == "cluster_ip":
            if outside or not service.addresses:
                return Verdict(False, (), "the ClusterIP is not reachable from outside the cluster")
            ends.append(self._egress(source, service.addresses[0], protocol, port.port))
            for pod in pods:
                ends.append(self._ingress(pod, self._seen_from(source, source_address, pod), protocol, self._target(service, port, pod)))
            return self._combine(ends)
        if port.node_port is None or str(service.record.get("type")) not in NODEPORT_TYPES:
            return Verdict(False, (), f"service {service.key} port {port.port} has no NodePort")
        nodes = [node for node in self.compiler.cluster_nodes(service.cluster) if node.addresses]
        if not nodes:
            return Verdict(False, (), f"no node of service {service.key}'s cluster is in the inventory")
        local = str(service.record.get("external_traffic_policy") or "Cluster") == "Local"
        for node in nodes:
            ends.append(self._egress(source, node.addresses[0], protocol, port.node_port))
            if node.host in self.compiler.points:
                ends.append(self.guard_end(node, source_address, protocol, port.node_port))
            for pod in pods:
                if local:
                    seen = source_address
                elif self.compiler.node_of(pod) is node:
                    seen = node.gateways()[0] if node.gateways() else node.addresses[0]
                else:
                    seen = node.addresses[0]
                ends.append(self._ingress(pod, seen, protocol, self._target(service, port, pod)))
        return self._combine(ends)

    @staticmethod
    def _combine(ends: Sequence[Optional[_End]]) -> Verdict:
        enforced = [end for end in ends if end is not None]
        for end in enforced:
            if not end.allowed:
                return Verdict(False, (end.origin,), f"denied at the {end.name} by {end.origin}")
        if not enforced:
            return Verdict(True, (), "no end of the flow is enforced")
        decided = tuple(dict.fromkeys(end.origin for end in enforced if end.origin != "nodeport_guard"))
        # An implicit allowance that merely coincides with a policy (a NodePort entering on the
        # pod's own node arrives from its gateway) does not make the flow "implicit": name the
        # policies when there are any, the implicit allowances only when they alone decided.
        written = tuple(origin for origin in decided if not origin.startswith("implicit:"))
        return Verdict(True, written or decided, "allowed at every enforced end")


_NOBODY = Workload(host="", kind="vm", name="", addresses=())


def check_flow(
    policy: Union[Policy, Mapping[str, Any]], hostvars: Mapping[str, Mapping[str, Any]], flow: Flow, options: Any = None
) -> Verdict:
    """Convenience: decide one flow from a policy dict and hostvars."""
    return Reachability.from_hostvars(policy, hostvars, options).check(flow)
