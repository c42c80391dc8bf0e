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
  absolute deny, absolute allow, default deny, default allow; in a pod's ingress the
  absolute denies come before ``node_to_pods``), else the catch-all; a
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

from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.cluster import ClusterFlow
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.index import WorkloadIndex, peer_addresses
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import Options, parse_options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import (
    Policy,
    PolicyRule,
    PortSpec,
    merge_options,
    parse_policy,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.services import (
    Endpoint,
    ServicePort,
    container_port,
    match_service_ports,
    resolve_target_port,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import Workload, workloads_from_hostvars

VIAS = ("direct", "cluster_ip", "node_port")


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
    partial: bool = False
    """Some paths through the service connect and others fail (``allowed`` is then False)."""
    paths: tuple[ServicePath, ...] = ()
    """For a service: one entry per way kube-proxy can send the connection (entry node x endpoint)."""


KUBE_PROXY_LOCAL = "kube-proxy: Local NodePort from a pod, reply bypasses the entry node"
"""The origin named when kube-proxy itself breaks a path (pod -> another node's Local NodePort, no SNAT)."""


@dataclasses.dataclass(frozen=True)
class ServicePath:
    """One way a connection to a service can go: the node entered (NodePorts) and the endpoint chosen.

    ``endpoint`` is the endpoint's pod key (``namespace/name``) or its address; ``decided_by``
    names what refuses the path (empty when it connects).
    """

    endpoint: str
    address: str
    node: Optional[str]
    allowed: bool
    decided_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return dataclasses.asdict(self)


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
        self,
        policy: Policy,
        workloads: Sequence[Workload],
        options: Optional[Options] = None,
        warnings: Optional[list[str]] = None,
        index: Optional[WorkloadIndex] = None,
    ) -> None:
        # Who is who (matches, nodes, endpoint pods, scope) comes from the index the compiler also
        # uses; a compile run passes its own (``index``) so the lookups are not built twice.
        self.warnings: list[str] = list(warnings or ())
        self.findings: list[dict[str, Any]] = [{"code": "host_left_out", "text": text} for text in self.warnings]
        self.index = index if index is not None else WorkloadIndex(policy, workloads, options or Options(), warn=self.warn)
        self.policy = policy
        self.options = self.index.options
        self.rules = policy.ordered_rules()
        self._consumer_sets: dict[tuple[str, str], _Addresses] = {}
        # Answers repeat across the many flows of a truth table or an audit: cache the lookups.
        self._network_cache: dict[str, _Addresses] = {}
        self._cluster_sets: dict[tuple[int, str], _Addresses] = {}
        self._targets_cache: dict[str, set[str]] = {}
        self._masquerade_cache: dict[str, _Addresses] = {}

    @classmethod
    def from_hostvars(
        cls, policy: Union[Policy, Mapping[str, Any]], hostvars: Mapping[str, Mapping[str, Any]], options: Any = None
    ) -> Reachability:
        """Build from a policy dict (or Policy), hostvars and options, as ``compile`` takes them."""
        parsed = policy if isinstance(policy, Policy) else parse_policy(policy)
        parsed_options = options if isinstance(options, Options) else parse_options(merge_options(parsed.options, options))
        workloads, warnings = workloads_from_hostvars(hostvars)
        return cls(parsed, workloads, parsed_options, warnings)

    def warn(self, text: str, code: str = "compiler", **data: Any) -> None:
        """Record a warning of the indexing once (as :meth:`Compiler.warn`: a text, and a coded finding)."""
        if text not in self.warnings:
            self.warnings.append(text)
            self.findings.append({"code": code, "text": text, **data})

    # -- who is who ---------------------------------------------------------------

    def matched(self, filter_name: str) -> list[Workload]:
        """The workloads a filter selects."""
        return self.index.matched[filter_name]

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
                    members.extend(peer_addresses(consumer))
            if side in ("all", "out"):
                members.extend(self.networks(rule.consumer))
            self._consumer_sets[key] = _Addresses(members)
        return self._consumer_sets[key]

    def has_outside_consumers(self, rule: PolicyRule) -> bool:
        """Does a rule have out-of-cluster consumers (VMs or networks)?"""
        return any(consumer.kind == "vm" for consumer in self.matched(rule.consumer)) or bool(self.networks(rule.consumer))

    def _endpoint_pods(self, service: Workload) -> list[Workload]:
        return self.index.endpoint_pods(service)

    def _is_endpoint(self, pod: Workload, service: Workload) -> bool:
        """By identity, not dataclass equality: comparing every field of every endpoint was most of a NodePort cell's cost."""
        return any(item is pod for item in self._endpoint_pods(service))

    def _network_set(self, filter_name: str) -> _Addresses:
        found = self._network_cache.get(filter_name)
        if found is None:
            found = self._network_cache[filter_name] = _Addresses(self.networks(filter_name))
        return found

    def _endpoint_nodes(self, service: Workload, port: ServicePort) -> list[tuple[Workload, Optional[int]]]:
        """Nodes that receive a service's endpoints themselves (node-address endpoints), with the target port."""
        receivers = self.index.receivers(service)
        return [(item.node, resolve_target_port(port, item.endpoint, item.pod)) for item in receivers if item.node is not None]

    def _target(self, service: Workload, port: ServicePort, pod: Workload) -> Optional[int]:
        for item in self.index.receivers(service):
            if item.pod is pod:
                return resolve_target_port(port, item.endpoint, pod)
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
                if destination in peer_addresses(provider) and self._direct_port(spec, provider, protocol, port):
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
        for item in self.index.receivers(service):
            if destination in item.endpoint.addresses and port == resolve_target_port(service_port, item.endpoint, item.pod):
                return True
        return False

    def _reaches_outside(self, service: Workload, service_port: ServicePort, destination: str, port: Optional[int]) -> bool:
        # With Local only the nodes holding a ready endpoint serve outside consumers, and only they are allowed.
        nodes = self.index.local_endpoint_nodes(service) if service.local_traffic else self.index.cluster_nodes(service.cluster)
        if (
            service.has_node_ports
            and service_port.node_port is not None
            and port == service_port.node_port
            and any(destination in node.addresses for node in nodes)
        ):
            return True
        if port is not None and port == service.health_check_port() and any(
            destination in node.addresses for node in self.index.cluster_nodes(service.cluster)
        ):
            return True
        return port == service_port.port and destination in (*service.load_balancer_ingress, *service.external_ips)

    def ingress_end(self, destination: Workload, source: str, protocol: str, port: Optional[int]) -> _End:
        """The provider's ingress chain for a connection arriving from ``source`` (address)."""

        def matches(rule: PolicyRule) -> Optional[str]:
            if destination.host not in self._ingress_targets(rule):
                return None  # the rule places nothing in this destination's ingress
            for spec in rule.ports:
                origin = self._ingress_spec(rule, spec, destination, source=source, protocol=protocol, port=port)
                if origin is None:
                    origin = self._node_endpoint_spec(rule, spec, destination, source=source, protocol=protocol, port=port)
                if origin is not None:
                    return origin
            return None

        if destination.kind == "pod":
            # As the compiler orders a pod's ingress: its other implicit allowances, its absolute
            # denies, then the node-to-pod allowance (a quarantine also refuses the node's gateway,
            # where kubelet probes and NodePort connections entering on the pod's own node come from).
            denies = [rule for rule in self.rules if rule.rank == "absolute" and rule.action == "deny"]
            denies = [rule for rule in denies if destination.host in self._ingress_targets(rule)]
            if denies:
                implicit = self._implicit_ingress(destination, source, protocol, port, node_to_pods=False)
                if implicit is not None:
                    return _End("provider", True, implicit)
                for rule in denies:
                    origin = matches(rule)
                    if origin is not None:
                        return _End("provider", False, origin)
        implicit = self._implicit_ingress(destination, source, protocol, port)
        if implicit is not None:
            return _End("provider", True, implicit)
        return self._first("provider", matches)

    def _ingress_targets(self, rule: PolicyRule) -> set[str]:
        """The hosts whose ingress a rule can decide: its non-service providers, its services' endpoint pods and
        endpoint nodes, and, for a load balancer's health check, its cluster's nodes (an index: a truth table asks often)."""
        found = self._targets_cache.get(rule.label)
        if found is None:
            found = set()
            for provider in self.matched(rule.provider):
                if provider.kind != "service":
                    found.add(provider.host)
                    continue
                found.update(pod.host for pod in self._endpoint_pods(provider))
                found.update(item.node.host for item in self.index.receivers(provider) if item.node is not None)
                if provider.health_check_port() is not None:
                    found.update(node.host for node in self.index.cluster_nodes(provider.cluster))
            self._targets_cache[rule.label] = found
        return found

    def _ingress_spec(
        self, rule: PolicyRule, spec: PortSpec, destination: Workload, *, source: str, protocol: str, port: Optional[int]
    ) -> Optional[str]:
        for provider in self.matched(rule.provider):
            if (
                destination.kind == "node"
                and provider.kind == "service"
                and rule.action == "allow"
                and protocol == "tcp"
                and port is not None
                and port == provider.health_check_port()
                and provider.cluster == destination.cluster
                and self._service_ports(spec, provider, "tcp")
                and source in self.consumer_addresses(rule, "out")
            ):
                return f"{rule.origin()} health check {provider.key}"
            if provider is destination and provider.kind != "service":
                if self._direct_port(spec, provider, protocol, port) and source in self.consumer_addresses(rule, "all"):
                    return rule.origin(spec)
                continue
            if provider.kind != "service" or destination.kind != "pod" or not self._is_endpoint(destination, provider):
                continue
            for service_port in self._service_ports(spec, provider, protocol):
                if self._target(provider, service_port, destination) != port:
                    continue
                if source in self.consumer_addresses(rule, "in"):
                    return rule.origin(spec)
                if not self.has_outside_consumers(rule):
                    continue
                if provider.local_traffic:
                    if source in self.consumer_addresses(rule, "out"):
                        return rule.origin(spec)
                elif rule.action == "allow" and source in self._masquerade(destination):
                    return rule.origin(spec) + " via nodeport"
        return None

    def _node_endpoint_spec(
        self, rule: PolicyRule, spec: PortSpec, node: Workload, *, source: str, protocol: str, port: Optional[int]
    ) -> Optional[str]:
        """A node that is itself a service endpoint (the API server's) admits the in-cluster consumers, unmasqueraded."""
        if node.kind != "node" or source not in self.consumer_addresses(rule, "in"):
            return None
        for service in self.matched(rule.provider):
            if service.kind != "service":
                continue
            for service_port in self._service_ports(spec, service, protocol):
                if port in [target for found, target in self._endpoint_nodes(service, service_port) if found is node]:
                    return rule.origin(spec)
        return None

    def _masquerade(self, pod: Workload) -> _Addresses:
        node = self.index.node_of(pod)
        key = "" if node is None else node.host
        found = self._masquerade_cache.get(key)
        if found is None:
            found = self._masquerade_cache[key] = _Addresses(() if node is None else self.index.masquerade_sources(node))
        return found

    def guard_end(self, node: Workload, source: str, protocol: str, node_port: int) -> _End:
        """A node's NodePort guard for a NEW connection from ``source`` to ``node_port``."""

        def matches(rule: PolicyRule) -> Optional[str]:
            if not self.has_outside_consumers(rule) or source not in self.consumer_addresses(rule, "out"):
                return None
            for spec in rule.ports:
                for service in self.matched(rule.provider):
                    if service.kind != "service" or service.cluster != node.cluster or not service.has_node_ports:
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
            for service in self.index.services_by_cluster.get(node.cluster, ())
            if service.has_node_ports
            for port in service.service_ports
        ):
            return _End("nodeport guard", False, "catch_all nodeport")
        return _End("nodeport guard", True, "nodeport_guard")

    # -- implicit allowances -------------------------------------------------------

    def _cluster_addresses(self, flow: ClusterFlow, side: str) -> _Addresses:
        key = (id(flow), side)
        found = self._cluster_sets.get(key)
        if found is None:
            members = flow.destination_addresses if side == "to" else flow.source_addresses
            found = self._cluster_sets[key] = _Addresses(members or ())
        return found

    def _cluster_egress(self, source: Workload, destination: str, protocol: str, port: Optional[int]) -> Optional[str]:
        """The ``cluster`` allowance at a source's egress (the compiler's own flows)."""
        for flow in self.index.cluster_egress.get(source.host, ()):
            if _flow_port(flow, flow.egress_ports, protocol, port) and destination in self._cluster_addresses(flow, "to"):
                return flow.origin
        return None

    def _cluster_ingress(self, destination: Workload, source: str, protocol: str, port: Optional[int]) -> Optional[str]:
        """The ``cluster`` allowance at a destination's ingress."""
        for flow in self.index.cluster_ingress.get(destination.host, ()):
            if not _flow_port(flow, flow.ingress_ports, protocol, port):
                continue
            if flow.source_addresses is None or source in self._cluster_addresses(flow, "from"):
                return flow.origin
        return None

    def _implicit_egress(self, source: Workload, destination: str, protocol: str, port: Optional[int]) -> Optional[str]:
        options = self.options
        if options.enabled("node_to_pods") and source.kind == "node" and destination in _Addresses(source.pod_cidrs):
            return "implicit:node_to_pods"
        if options.enabled("dns") and source.kind == "pod" and protocol in ("udp", "tcp"):
            dns = self.index.dns_service(source.cluster)
            if dns is not None and destination in (*dns.addresses, *peer_addresses(dns)):
                ports: set[Optional[int]] = set()
                for service_port in dns.service_ports:
                    if service_port.protocol == protocol:
                        ports.add(service_port.port)
                        for item in self.index.receivers(dns):
                            ports.add(resolve_target_port(service_port, item.endpoint, item.pod))
                if port in ports:
                    return "implicit:dns"
        # The cluster allowance's rules come after the other implicit ones in every chain.
        return self._cluster_egress(source, destination, protocol, port)

    def _implicit_ingress(
        self, destination: Workload, source: str, protocol: str, port: Optional[int], *, node_to_pods: bool = True
    ) -> Optional[str]:
        options = self.options
        ssh = options.enabled("management_ssh") and destination.kind in ("vm", "node") and protocol == "tcp" and port == 22
        if ssh and (not options.management_addresses or source in _Addresses(options.management_addresses)):
            return "implicit:management_ssh"
        if node_to_pods and options.enabled("node_to_pods") and destination.kind == "pod":
            node = self.index.node_of(destination)
            if node is not None and source in (*node.gateways(), *node.tunnel_addresses):
                return "implicit:node_to_pods"
        if options.enabled("dns") and destination.kind == "pod" and protocol in ("udp", "tcp"):
            dns = self.index.dns_service(destination.cluster)
            if dns is not None and destination in self._endpoint_pods(dns):
                cidrs = _Addresses(cidr for node in self.index.cluster_nodes(destination.cluster) for cidr in node.pod_cidrs)
                targets = {self._target(dns, item, destination) for item in dns.service_ports if item.protocol == protocol}
                if port in targets and source in cidrs:
                    return "implicit:dns"
        return self._cluster_ingress(destination, source, protocol, port)

    # -- the question --------------------------------------------------------------

    def check(self, flow: Flow) -> Verdict:
        """Decide one flow; raises ZeroTrustPolicyError for unknown hosts or a bad ``via``."""
        if flow.via not in VIAS:
            raise ZeroTrustPolicyError(f"via {flow.via!r} is not one of {', '.join(VIAS)}")
        protocol = flow.protocol.lower()
        source = self.index.by_host.get(flow.source)
        if source is None:
            try:
                source_address = str(ipaddress.ip_address(flow.source))
            except ValueError:
                raise ZeroTrustPolicyError(f"source {flow.source!r} is neither an inventory workload nor an IP address") from None
        elif not source.addresses:
            raise ZeroTrustPolicyError(f"source {flow.source!r} has no address")
        else:
            source_address = source.addresses[0]
        destination = self.index.by_host.get(flow.destination)
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
        if source is not None and source.kind == "node" and destination.kind == "pod" and self.index.node_of(destination) is source:
            gateways = source.gateways()
            if gateways:
                return gateways[0]
        return source_address

    def _egress(self, source: Optional[Workload], destination: str, protocol: str, port: Optional[int]) -> Optional[_End]:
        if source is None or source.host not in self.index.enforced:
            return None
        return self.egress_end(source, destination, protocol, port)

    def _ingress(self, destination: Workload, source: str, protocol: str, port: Optional[int]) -> Optional[_End]:
        if destination.host not in self.index.enforced:
            return None
        return self.ingress_end(destination, source, protocol, port)

    def _service_flow(  # noqa: PLR0911, PLR0912 - each way a service flow can fail is named
        self, source: Optional[Workload], source_address: str, service: Workload, protocol: str, flow: Flow
    ) -> Verdict:
        ports = [port for port in service.service_ports if port.protocol == protocol and port.port == flow.port]
        if not ports:
            return Verdict(False, (), f"service {service.key} has no port {protocol}/{flow.port}")
        port = ports[0]
        outside = source is None or source.kind == "vm"
        if flow.via == "direct":
            raise ZeroTrustPolicyError("a service is reached via cluster_ip or node_port, not directly")
        if not service.endpoints:
            return Verdict(False, (), f"service {service.key} has no endpoints")
        # One path per way kube-proxy can send the connection; endpoints whose pods are not in the
        # inventory are not enforced, so only the consumer side decides for them.
        paths: list[tuple[str, str, Optional[str], list[Optional[_End]], bool]] = []  # endpoint, address, node, ends, kube-proxy ok
        if flow.via == "cluster_ip":
            if outside or not service.addresses:
                return Verdict(False, (), "the ClusterIP is not reachable from outside the cluster")
            egress = self._egress(source, service.addresses[0], protocol, port.port)
            for endpoint, pod, node, target in self._endpoint_receivers(service, port):
                ends: list[Optional[_End]] = [egress]
                if pod is not None:
                    ends.append(self._ingress(pod, self._seen_from(source, source_address, pod), protocol, target))
                if node is not None:
                    ends.append(self._ingress(node, source_address, protocol, target))
                paths.append((_endpoint_name(endpoint, pod), endpoint.addresses[0] if endpoint.addresses else "", None, ends, True))
            return self._paths_verdict(service, paths)
        if port.node_port is None or not service.has_node_ports:
            return Verdict(False, (), f"service {service.key} port {port.port} has no NodePort")
        nodes = [node for node in self.index.cluster_nodes(service.cluster) if node.addresses]
        if not nodes:
            return Verdict(False, (), f"no node of service {service.key}'s cluster is in the inventory")
        local = service.local_traffic
        # kube-proxy treats pod traffic as subject to neither traffic policy: cluster-wide endpoints, no SNAT.
        from_pod = source is not None and source.kind == "pod"
        receivers = self._endpoint_receivers(service, port)
        for node in nodes:
            common = [self._egress(source, node.addresses[0], protocol, port.node_port)]
            if node.host in self.index.enforced:
                common.append(self.guard_end(node, source_address, protocol, port.node_port))
            for endpoint, pod, _unused_node, target in receivers:
                endpoint_node = endpoint.node or (pod.node if pod is not None else None)
                if local and not from_pod and endpoint_node != node.name:
                    continue  # outside traffic to a Local NodePort goes to the entry node's own endpoints only
                # Unmasqueraded, the reply leaves the endpoint straight for the pod: it passes the entry
                # node's conntrack only when the endpoint or the source pod lives there. A pod sent back
                # to itself is masqueraded (kube-proxy's hairpin rule), so that path works anywhere.
                kube_ok = (
                    not (local and from_pod)
                    or node.name in (endpoint_node, source.node if source is not None else None)
                    or (pod is not None and pod is source)
                )
                ends = list(common)
                if pod is not None:
                    if local:
                        seen = source_address
                    elif self.index.node_of(pod) is node:
                        seen = node.gateways()[0] if node.gateways() else node.addresses[0]
                    else:
                        seen = node.addresses[0]
                    ends.append(self._ingress(pod, seen, protocol, target))
                paths.append((_endpoint_name(endpoint, pod), endpoint.addresses[0] if endpoint.addresses else "", node.name, ends, kube_ok))
        if not paths:
            return Verdict(False, (), f"service {service.key} has no ready local endpoint on any node (externalTrafficPolicy: Local)")
        return self._paths_verdict(service, paths)

    def _endpoint_receivers(
        self, service: Workload, port: ServicePort
    ) -> list[tuple[Endpoint, Optional[Workload], Optional[Workload], Optional[int]]]:
        """Each endpoint with its pod, the node that enforces it when no pod namespace does, and its target port."""
        receivers = self.index.receivers(service)
        return [(item.endpoint, item.pod, item.node, resolve_target_port(port, item.endpoint, item.pod)) for item in receivers]

    def _paths_verdict(self, service: Workload, paths: Sequence[tuple[str, str, Optional[str], list[Optional[_End]], bool]]) -> Verdict:
        """All paths connect: allowed; none: denied (by the first refusing end); some: partial."""
        answers: list[ServicePath] = []
        every_end: list[Optional[_End]] = []
        for endpoint, address, node, ends, kube_ok in paths:
            every_end.extend(ends)
            verdict = self._combine(ends)
            if not kube_ok:
                answers.append(ServicePath(endpoint, address, node, False, KUBE_PROXY_LOCAL))
            elif not verdict.allowed:
                answers.append(ServicePath(endpoint, address, node, False, verdict.decided_by[0] if verdict.decided_by else ""))
            else:
                answers.append(ServicePath(endpoint, address, node, True))
        combined = self._combine(every_end)
        failing = [answer for answer in answers if not answer.allowed]
        if not failing:
            return dataclasses.replace(combined, paths=tuple(answers))
        if len(failing) == len(answers):
            if combined.allowed:  # kube-proxy alone breaks every path
                return Verdict(False, (KUBE_PROXY_LOCAL,), f"denied by {KUBE_PROXY_LOCAL}", paths=tuple(answers))
            return dataclasses.replace(combined, paths=tuple(answers))
        refusing = sorted({answer.endpoint for answer in failing})
        decided = tuple(dict.fromkeys(answer.decided_by for answer in failing))
        reason = (
            f"partly connected: {len(failing)} of {len(answers)} paths to service {service.key} fail "
            f"(refused at {', '.join(refusing)} by {', '.join(decided)})"
        )
        return Verdict(False, decided, reason, partial=True, paths=tuple(answers))

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


def _endpoint_name(endpoint: Endpoint, pod: Optional[Workload]) -> str:
    """How a path names its endpoint: the pod's key, else the endpoint's pod reference or address."""
    if pod is not None:
        return pod.key
    return endpoint.pod or (endpoint.addresses[0] if endpoint.addresses else "?")


def _flow_port(flow: ClusterFlow, ports: Sequence[Any], protocol: str, port: Optional[int]) -> bool:
    """Does a cluster flow's protocol and port list cover ``protocol``/``port``? (no ports: every port)"""
    if flow.protocol != protocol:
        return False
    return not ports or (port is not None and any(item.first <= port <= item.last for item in ports))


def check_flow(
    policy: Union[Policy, Mapping[str, Any]], hostvars: Mapping[str, Mapping[str, Any]], flow: Flow, options: Any = None
) -> Verdict:
    """Convenience: decide one flow from a policy dict and hostvars."""
    return Reachability.from_hostvars(policy, hostvars, options).check(flow)
