# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The compiler: policy + workloads -> one ruleset per enforcement point.

Enforcement points are VMs, nodes (their own rules plus the NodePort guard) and pods
(their network namespace, applied from their node). Semantics follow design.md:
both ends (consumer egress, provider ingress), stateful, services resolved for
in-cluster and out-of-cluster consumers, absolute before default before catch-all,
deny before allow at the same rank, implicit allowances first (except in a pod's
ingress, where the absolute denies precede ``node_to_pods``: see
:meth:`Compiler.ingress_specs`).

Peers are address sets named after their logical key (``model.stable_name``), never
after their members, so a pod IP change rewrites a set and never a chain. Sets,
rules and their dictionary forms are built once and shared between the rulesets
that use them, which keeps compiling linear in the number of workloads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Union

from ansible_collections.zerotrust.workloads.plugins.module_utils._memory import collector_paused
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import model
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.cluster import ClusterFlow, ClusterFlows
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import Options, parse_options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import (
    RANKS,
    Policy,
    PolicyRule,
    PortSpec,
    merge_options,
    parse_policy,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import Selector
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.services import (
    ServicePort,
    container_port,
    match_service_ports,
    resolve_target_port,
    service_endpoints,
    service_ports,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import Workload, workloads_from_hostvars

ENFORCED_KINDS = ("vm", "node", "pod")
HOST_NETWORK_NAMED = 5
"""How many host-network pods the one warning about them names."""
ND_TYPES = (133, 134, 135, 136)
SetKey = tuple[str, ...]
RuleSpec = tuple[Any, ...]
"""(verdict, origin, protocol, ports, set key, interface, conntrack, icmp types): a rule before rendering."""


@dataclasses.dataclass(frozen=True, order=True)
class _Entry:
    """A policy rule placed in one chain of one enforcement point, before rendering."""

    order: tuple[int, int, int]
    protocol: str
    ports: tuple[model.PortRange, ...]
    set_key: SetKey
    verdict: str
    origin: str
    conntrack: tuple[str, ...] = ()
    local_destination: bool = False


def _protocol_and_ports(protocol: Optional[str], first: Optional[int], last: Optional[int]) -> tuple[str, tuple[model.PortRange, ...]]:
    ports = (model.PortRange(first, last),) if first is not None and last is not None else ()
    return (protocol or "", ports)


@dataclasses.dataclass
class _Point:
    """Rules gathered for one enforcement point."""

    workload: Workload
    ingress: set[_Entry] = dataclasses.field(default_factory=set)
    egress: set[_Entry] = dataclasses.field(default_factory=set)
    guard: set[_Entry] = dataclasses.field(default_factory=set)


class Compiler:
    """One compile run: build with workloads, call :meth:`plan`."""

    def __init__(self, policy: Policy, workloads: Sequence[Workload], options: Options, warnings: Optional[list[str]] = None) -> None:
        self.policy = policy
        self.options = options
        self.workloads = list(workloads)
        self.warnings: list[str] = list(warnings or ())
        self._warned = set(self.warnings)
        self.selector = Selector(self.workloads)
        self.by_host = {workload.host: workload for workload in self.workloads}
        self.nodes: dict[tuple[Optional[str], str], Workload] = {}
        self.pods: dict[tuple[Optional[str], str], Workload] = {}
        self.pods_by_address: dict[str, Workload] = {}
        for workload in self.workloads:
            if workload.kind == "node":
                self.nodes[(workload.cluster, workload.name)] = workload
            elif workload.kind == "pod":
                self.pods[(workload.cluster, workload.key)] = workload
                for address in workload.addresses:
                    self.pods_by_address.setdefault(address, workload)
        dns_namespace, _unused_separator, dns_name = options.dns_service.partition("/")
        self._dns_services: dict[Optional[str], Workload] = {}
        self._services_by_cluster: dict[Optional[str], list[Workload]] = {}
        for workload in self.workloads:
            if workload.kind == "service":
                self._services_by_cluster.setdefault(workload.cluster, []).append(workload)
                if workload.namespace == dns_namespace and workload.name == dns_name:
                    self._dns_services.setdefault(workload.cluster, workload)
        self._cluster_nodes: dict[Optional[str], list[Workload]] = {}
        for (cluster, _unused_name), node in sorted(self.nodes.items(), key=lambda item: (str(item[0][0]), item[0][1])):
            self._cluster_nodes.setdefault(cluster, []).append(node)
        self.cluster_flows: list[ClusterFlow] = []
        self.cluster_egress: dict[str, list[ClusterFlow]] = {}
        self.cluster_ingress: dict[str, list[ClusterFlow]] = {}
        self._derive_cluster_flows()
        in_scope = self.workloads if options.scope is None else self.selector.select(options.scope)
        self.points: dict[str, _Point] = {}
        host_network: list[str] = []
        for workload in in_scope:
            if workload.kind not in ENFORCED_KINDS:
                continue
            if workload.kind == "pod" and workload.record.get("host_network"):
                # A hostNetwork pod shares its node's namespace: rules "in the pod" would be
                # the node's. It stays a peer; the node's own ruleset is where it is enforced.
                host_network.append(workload.key)
                continue
            if workload.kind == "pod" and workload.record.get("phase") in ("Succeeded", "Failed"):
                continue  # finished pods have no network namespace left to apply rules in
            self.points[workload.host] = _Point(workload)
        self._warn_host_network(host_network)
        self.matched = {name: self.selector.select(flt.query) for name, flt in sorted(policy.filters.items())}
        self.sets: dict[SetKey, model.AddressSet] = {}
        self._set_members: dict[SetKey, set[str]] = {}
        self._set_comments: dict[SetKey, str] = {}
        self._rule_cache: dict[tuple[Any, ...], tuple[model.Rule, dict[str, Any]]] = {}
        self._set_dicts: dict[str, dict[str, Any]] = {}
        self._guard_drops: dict[Optional[str], list[_Entry]] = {}

    def _derive_cluster_flows(self) -> None:
        """The ``cluster`` allowance's flows, indexed by the hosts whose egress or ingress they open."""
        self.nodes_by_address: dict[tuple[Optional[str], str], Workload] = {}
        for node in self.nodes.values():
            for address in node.addresses:
                self.nodes_by_address.setdefault((node.cluster, address), node)
        if not (self.options.enabled("cluster") or self.options.enabled("management_ssh")):
            return  # management_ssh alone still derives the controller's flow to the API server
        self.cluster_flows = ClusterFlows(
            self._cluster_nodes,
            self.workloads,
            self.options,
            select=self.selector.select,
            dns_service=self.dns_service,
            endpoint_pod=self.endpoint_pod,
            warn=self.warn,
        ).flows
        for flow in self.cluster_flows:
            for source in flow.sources:
                self.cluster_egress.setdefault(source.host, []).append(flow)
            for target in flow.destinations:
                self.cluster_ingress.setdefault(target.host, []).append(flow)

    # -- helpers ---------------------------------------------------------------------

    def _warn_host_network(self, pods: Sequence[str]) -> None:
        # One line for all of them: a real cluster runs a CNI agent and kube-proxy with the host
        # network on every node, and a warning per pod would bury the ones that matter.
        if len(pods) == 1:
            self.warn(f"pod {pods[0]} uses the host network; it is a peer but not an enforcement point (its node is)")
        elif pods:
            more = len(pods) - HOST_NETWORK_NAMED
            shown = ", ".join(pods[:HOST_NETWORK_NAMED]) + (f" and {more} more" if more > 0 else "")
            self.warn(f"{len(pods)} pods use the host network ({shown}); they are peers but not enforcement points (their nodes are)")

    def warn(self, text: str) -> None:
        """Record a warning once."""
        if text not in self._warned:
            self._warned.add(text)
            self.warnings.append(text)

    def add_members(self, key: SetKey, comment: str, members: Iterable[str]) -> SetKey:
        """Add addresses to the logical set ``key`` (created on first use)."""
        self._set_members.setdefault(key, set()).update(members)
        self._set_comments.setdefault(key, comment)
        return key

    def cluster_nodes(self, cluster: Optional[str]) -> list[Workload]:
        """Nodes of one cluster, sorted by name."""
        return self._cluster_nodes.get(cluster, [])

    def node_of(self, pod: Workload) -> Optional[Workload]:
        """The node workload a pod runs on, if the inventory has it."""
        return None if pod.node is None else self.nodes.get((pod.cluster, pod.node))

    def endpoint_pod(self, service: Workload, pod_ref: Optional[str], addresses: Sequence[str]) -> Optional[Workload]:
        """The pod behind an endpoint: by its targetRef, else by address."""
        if pod_ref:
            found = self.pods.get((service.cluster, pod_ref))
            if found is not None:
                return found
        for address in addresses:
            if address in self.pods_by_address:
                return self.pods_by_address[address]
        return None

    def endpoint_node(self, service: Workload, pod: Optional[Workload], addresses: Sequence[str]) -> Optional[Workload]:
        """The node that receives an endpoint's traffic when no pod namespace does.

        An endpoint on a node address (the API server's, a host-network pod's) is enforced
        by that node's own rules.
        """
        if pod is not None and not pod.record.get("host_network"):
            return None
        for address in addresses:
            node = self.nodes_by_address.get((service.cluster, address))
            if node is not None:
                return node
        return None

    @staticmethod
    def peer_addresses(workload: Workload) -> tuple[str, ...]:
        """The addresses a workload shows as a peer (nodes: also pod-CIDR gateways and tunnels)."""
        if workload.kind == "node":
            return workload.addresses + workload.gateways() + workload.tunnel_addresses
        if workload.kind == "service":
            return tuple(address for endpoint in service_endpoints(workload.record) for address in endpoint.addresses)
        return workload.addresses

    def masquerade_set(self, node: Workload) -> SetKey:
        """Sources a pod on ``node`` sees for masqueraded NodePort traffic."""
        key = ("masquerade", str(node.cluster), node.name)
        if key not in self._set_members:
            members: list[str] = list(node.gateways()) + list(node.tunnel_addresses)
            for other in self.cluster_nodes(node.cluster):
                members.extend(other.tunnel_addresses)
                if other.name != node.name:
                    members.extend(other.addresses)
            self.add_members(key, f"nodeport masquerade sources on {node.name}", members)
        return key

    # -- policy rules ----------------------------------------------------------------

    def compile_rule(self, rule: PolicyRule) -> None:
        """Place one policy's rules at every consumer and provider it concerns."""
        consumers = self.matched[rule.consumer]
        providers = self.matched[rule.provider]
        consumer_networks = self.policy.filters[rule.consumer].networks or ()
        provider_networks = self.policy.filters[rule.provider].networks or ()
        if not consumers and not consumer_networks:
            self.warn(f"policy {rule.label}: consumer filter {rule.consumer!r} matches no workload; the policy has no effect")
            return
        if not providers and not provider_networks:
            self.warn(f"policy {rule.label}: provider filter {rule.provider!r} matches no workload; the policy has no effect")
            return
        verdict = "deny" if rule.action == "deny" else "accept"
        inside = [workload for workload in consumers if workload.kind != "vm"]
        outside = [workload for workload in consumers if workload.kind == "vm"]
        from_in = self.add_members(
            (rule.label, "from", "in"), f"in-cluster consumers of {rule.label}", (a for w in inside for a in self.peer_addresses(w))
        )
        from_out = self.add_members(
            (rule.label, "from", "out"),
            f"out-of-cluster consumers of {rule.label}",
            [*(a for w in outside for a in w.addresses), *consumer_networks],
        )
        from_all = self.add_members(
            (rule.label, "from", "all"), f"consumers of {rule.label}", [*self._set_members[from_in], *self._set_members[from_out]]
        )
        has_outside = bool(outside or consumer_networks)
        # destinations[(side, protocol)][ports] = addresses; side: all / in / out
        destinations: dict[tuple[str, str], dict[tuple[model.PortRange, ...], set[str]]] = {}

        def destination(side: str, protocol: str, ports: tuple[model.PortRange, ...], addresses: Iterable[str]) -> None:
            destinations.setdefault((side, protocol), {}).setdefault(ports, set()).update(addresses)

        for spec in rule.ports:
            for network in provider_networks:
                if spec.name is None:
                    for protocol, ports in self._services(spec):
                        destination("all", protocol, ports, [network])
            for provider in providers:
                if provider.kind == "service":
                    self._service_provider(
                        rule,
                        spec,
                        provider,
                        verdict=verdict,
                        from_in=from_in,
                        from_out=from_out,
                        has_outside=has_outside,
                        destination=destination,
                    )
                    continue
                resolved = self._resolve_direct(rule, spec, provider)
                for protocol, ports in resolved:
                    destination("all", protocol, ports, self.peer_addresses(provider))
                    point = self.points.get(provider.host)
                    if point is not None:
                        point.ingress.add(_Entry(rule.order, protocol, ports, from_all, verdict, rule.origin(spec)))
        self._consumer_egress(rule, consumers, destinations, verdict)

    def _services(self, spec: PortSpec) -> list[tuple[str, tuple[model.PortRange, ...]]]:
        if spec.protocol == "any":
            return [("", ())]
        if spec.protocol == "icmp":
            return [("icmp", ())]
        return [_protocol_and_ports(spec.protocol, spec.first, spec.last)]

    def _resolve_direct(self, rule: PolicyRule, spec: PortSpec, provider: Workload) -> list[tuple[str, tuple[model.PortRange, ...]]]:
        if spec.name is None:
            return self._services(spec)
        if provider.kind == "pod":
            number = container_port(provider, spec.name, spec.protocol)
            if number is not None:
                return [(spec.protocol, (model.PortRange(number, number),))]
        self.warn(f"policy {rule.label}: {provider.kind} {provider.key} has no {spec.protocol} port named {spec.name!r}; no rule for it")
        return []

    def _service_provider(  # noqa: PLR0912 - the service semantics of design.md, step by step
        self,
        rule: PolicyRule,
        spec: PortSpec,
        service: Workload,
        *,
        verdict: str,
        from_in: SetKey,
        from_out: SetKey,
        has_outside: bool,
        destination: Any,
    ) -> None:
        if spec.protocol == "icmp":
            self.warn(f"policy {rule.label}: service {service.key} does not carry ICMP; address its pods instead")
            return
        ports = match_service_ports(service, spec)
        if not ports:
            self.warn(f"policy {rule.label}: service {service.key} has no port {spec}; no rule for it")
            return
        record = service.record
        local = str(record.get("external_traffic_policy") or "Cluster") == "Local"
        service_type = str(record.get("type") or "ClusterIP")
        outside_ips = [*(record.get("load_balancer_ingress") or ()), *(record.get("external_ips") or ())]
        outside_ips = [address for address in outside_ips if _is_address(address)]
        reachable_outside = False
        for port in ports:
            one = (model.PortRange(port.port, port.port),)
            destination("in", port.protocol, one, service.addresses)
            for endpoint in service_endpoints(record):
                pod = self.endpoint_pod(service, endpoint.pod, endpoint.addresses)
                target = resolve_target_port(port, endpoint, pod)
                if target is None:
                    self.warn(
                        f"policy {rule.label}: service {service.key} target port {port.target_port!r} "
                        f"does not resolve for endpoint {endpoint.pod or endpoint.addresses}"
                    )
                    continue
                target_ports = (model.PortRange(target, target),)
                destination("in", port.protocol, target_ports, endpoint.addresses)
                point = None if pod is None else self.points.get(pod.host)
                if pod is None or point is None:
                    node = self.endpoint_node(service, pod, endpoint.addresses)
                    node_point = None if node is None else self.points.get(node.host)
                    if node_point is not None:
                        # Toward a node-address endpoint kube-proxy does not masquerade: the node sees the consumer.
                        node_point.ingress.add(_Entry(rule.order, port.protocol, target_ports, from_in, verdict, rule.origin(spec)))
                    continue
                origin = rule.origin(spec)
                point.ingress.add(_Entry(rule.order, port.protocol, target_ports, from_in, verdict, origin))
                if has_outside:
                    if local:
                        point.ingress.add(_Entry(rule.order, port.protocol, target_ports, from_out, verdict, origin))
                    elif verdict == "accept":
                        # Masqueraded: the pod sees node addresses; the nodes' guard holds the line.
                        node = self.node_of(pod)
                        if node is not None:
                            point.ingress.add(
                                _Entry(
                                    rule.order, port.protocol, target_ports, self.masquerade_set(node), verdict, origin + " via nodeport"
                                )
                            )
            if port.node_port is not None and service_type in ("NodePort", "LoadBalancer"):
                reachable_outside = True
                self._node_port(
                    rule, spec, service, port, verdict=verdict, from_out=from_out, has_outside=has_outside, destination=destination
                )
            if outside_ips:
                reachable_outside = True
                destination("out", port.protocol, one, outside_ips)
        health_check = record.get("health_check_node_port")
        if has_outside and local and service_type == "LoadBalancer" and isinstance(health_check, int) and verdict == "accept":
            self._health_check(rule, service, health_check, from_out, destination)
        if has_outside and not reachable_outside:
            self.warn(
                f"policy {rule.label}: service {service.key} (type {service_type}) has no NodePort, LoadBalancer ingress or external IP; "
                "its out-of-cluster consumers cannot reach it"
            )

    def _node_port(
        self,
        rule: PolicyRule,
        spec: PortSpec,
        service: Workload,
        port: ServicePort,
        *,
        verdict: str,
        from_out: SetKey,
        has_outside: bool,
        destination: Any,
    ) -> None:
        """Out-of-cluster consumers to the nodes on a NodePort: their egress and the nodes' guard."""
        node_ports = (model.PortRange(port.node_port, port.node_port),) if port.node_port is not None else ()
        # With Local, kube-proxy drops outside traffic on nodes without a ready local endpoint:
        # the consumers are allowed only to the nodes that serve it.
        local = str(service.record.get("external_traffic_policy") or "Cluster") == "Local"
        nodes = self.local_endpoint_nodes(service) if local else self.cluster_nodes(service.cluster)
        if local and has_outside and not nodes:
            self.warn(
                f"policy {rule.label}: service {service.key} has externalTrafficPolicy Local and no ready endpoint on a node "
                "of the inventory; its out-of-cluster consumers reach no node"
            )
        destination("out", port.protocol, node_ports, (address for node in nodes for address in node.addresses))
        for node in nodes:
            point = self.points.get(node.host)
            if point is not None and has_outside:
                guard_verdict = "return" if verdict == "accept" else "drop"
                point.guard.add(_Entry(rule.order, port.protocol, node_ports, from_out, guard_verdict, rule.origin(spec), ("new",), True))

    def local_endpoint_nodes(self, service: Workload) -> list[Workload]:
        """The nodes of a service's cluster that hold a ready endpoint of it (``externalTrafficPolicy: Local``)."""
        names = set()
        for endpoint in service_endpoints(service.record):
            if not endpoint.ready:
                continue
            pod = self.endpoint_pod(service, endpoint.pod, endpoint.addresses)
            name = endpoint.node or (pod.node if pod is not None else None)
            if name is not None:
                names.add(name)
        return [node for node in self.cluster_nodes(service.cluster) if node.name in names]

    def _health_check(self, rule: PolicyRule, service: Workload, port: int, from_out: SetKey, destination: Any) -> None:
        """A LoadBalancer with Local: its balancer checks kube-proxy's healthCheckNodePort on every node.

        Every node answers (200 where a local endpoint is ready, 503 elsewhere), which is how the
        balancer learns where to send traffic; blocked, it would mark every node down.
        """
        ports = (model.PortRange(port, port),)
        nodes = self.cluster_nodes(service.cluster)
        destination("out", "tcp", ports, (address for node in nodes for address in node.addresses))
        for node in nodes:
            point = self.points.get(node.host)
            if point is not None:
                point.ingress.add(_Entry(rule.order, "tcp", ports, from_out, "accept", f"{rule.origin()} health check {service.key}"))

    def _consumer_egress(
        self,
        rule: PolicyRule,
        consumers: Sequence[Workload],
        destinations: Mapping[tuple[str, str], Mapping[tuple[model.PortRange, ...], set[str]]],
        verdict: str,
    ) -> None:
        entries: dict[str, list[_Entry]] = {"in": [], "out": []}
        for (side, protocol), by_ports in sorted(destinations.items()):
            # Ports whose destinations are the same addresses share one rule and one set.
            grouped: dict[tuple[str, ...], list[model.PortRange]] = {}
            for ports, members in by_ports.items():
                grouped.setdefault(tuple(sorted(members)), []).extend(ports)
            for addresses, port_list in sorted(grouped.items(), key=lambda item: sorted(item[1])):
                port_tuple = tuple(sorted(set(port_list)))
                label = ",".join(str(port) for port in port_tuple) or "all"
                key = self.add_members(
                    (rule.label, "to", side, protocol, label), f"{rule.label} providers {protocol or 'any'}/{label} ({side})", addresses
                )
                spec_text = f"{protocol}/{label}" if port_tuple else (protocol or "any")
                entry = _Entry(rule.order, protocol, port_tuple, key, verdict, f"{rule.origin()} {spec_text}")
                for target in ("in", "out") if side == "all" else (side,):
                    entries[target].append(entry)
        for consumer in consumers:
            if consumer.kind == "service":
                pods = [self.endpoint_pod(consumer, endpoint.pod, endpoint.addresses) for endpoint in service_endpoints(consumer.record)]
                targets = [pod for pod in pods if pod is not None]
            else:
                targets = [consumer]
            for enforced in targets:
                point = self.points.get(enforced.host)
                if point is not None:
                    point.egress.update(entries["out" if enforced.kind == "vm" else "in"])

    # -- implicit allowances and the guard -----------------------------------------

    def implicit_rules(self, point: _Point) -> tuple[list[RuleSpec], list[RuleSpec]]:
        """Rule specs (verdict, origin, protocol, ports, set key, interface, conntrack, icmp types) opening ingress and egress."""
        workload = point.workload
        ingress: list[RuleSpec] = []
        egress: list[RuleSpec] = []
        if self.options.enabled("established"):
            spec: RuleSpec = ("accept", "implicit:established", None, (), None, None, ("established", "related"), ())
            ingress.append(spec)
            egress.append(spec)
        if self.options.enabled("loopback"):
            spec = ("accept", "implicit:loopback", None, (), None, "lo", (), ())
            ingress.append(spec)
            egress.append(spec)
        if self.options.enabled("icmpv6_neighbour_discovery"):
            spec = ("accept", "implicit:icmpv6_neighbour_discovery", "icmpv6", (), None, None, (), ND_TYPES)
            ingress.append(spec)
            egress.append(spec)
        if self.options.enabled("management_ssh") and workload.kind in ("vm", "node"):
            key = None
            if self.options.management_addresses:
                key = self.add_members(("management",), "management (Ansible controller) addresses", self.options.management_addresses)
            ingress.append(("accept", "implicit:management_ssh", "tcp", (model.PortRange(22, 22),), key, None, (), ()))
        if self.options.enabled("node_to_pods"):
            if workload.kind == "pod":
                node = self.node_of(workload)
                if node is None:
                    self.warn(f"pod {workload.key}: its node {workload.node!r} is not in the inventory; no node-to-pod allowance")
                else:
                    key = self.add_members(
                        ("node", str(node.cluster), node.name),
                        f"node {node.name} as its pods see it",
                        node.gateways() + node.tunnel_addresses,
                    )
                    ingress.append(("accept", "implicit:node_to_pods", None, (), key, None, (), ()))
            elif workload.kind == "node" and workload.pod_cidrs:
                key = self.add_members(
                    ("pod_cidrs", str(workload.cluster), workload.name), f"pod CIDRs of {workload.name}", workload.pod_cidrs
                )
                egress.append(("accept", "implicit:node_to_pods", None, (), key, None, (), ()))
        if self.options.enabled("dns") and workload.kind == "pod":
            egress.extend(self._dns_rules(workload))
            ingress.extend(self._dns_server_rules(workload))
        if self.cluster_flows:
            self._cluster_rules(workload, ingress, egress)
        return ingress, egress

    def _cluster_rules(self, workload: Workload, ingress: list[RuleSpec], egress: list[RuleSpec]) -> None:
        """The ``cluster`` allowance at one enforcement point: its end of every control-plane flow."""
        for flow in self.cluster_egress.get(workload.host, ()):
            to_key = self._cluster_set(flow, "to", flow.destination_addresses)
            egress.append(("accept", flow.origin, flow.protocol, flow.egress_ports, to_key, None, (), ()))
        for flow in self.cluster_ingress.get(workload.host, ()):
            from_key = None if flow.source_addresses is None else self._cluster_set(flow, "from", flow.source_addresses)
            ingress.append(("accept", flow.origin, flow.protocol, flow.ingress_ports, from_key, None, (), ()))

    def _cluster_set(self, flow: ClusterFlow, side: str, addresses: Sequence[str]) -> SetKey:
        # Peer-to-peer flows (overlay, etcd) have the same addresses at both ends: one set.
        if flow.source_addresses == flow.destination_addresses:
            side = "peers"
        return self.add_members(("cluster", str(flow.cluster), flow.what, side), f"{flow.what} ({side}, cluster {flow.cluster})", addresses)

    def dns_service(self, cluster: Optional[str]) -> Optional[Workload]:
        """The cluster DNS service named by the ``dns_service`` option, if in the inventory."""
        return self._dns_services.get(cluster)

    def _dns_server_rules(self, pod: Workload) -> list[RuleSpec]:
        # A DNS pod under a deny catch-all must still answer every pod of its cluster.
        service = self.dns_service(pod.cluster)
        if service is None:
            return []
        rules = []
        for endpoint in service_endpoints(service.record):
            if self.endpoint_pod(service, endpoint.pod, endpoint.addresses) is not pod:
                continue
            nodes = self.cluster_nodes(pod.cluster)
            key = self.add_members(
                ("pod_cidrs", str(pod.cluster)), "pod CIDRs of the cluster", (cidr for node in nodes for cidr in node.pod_cidrs)
            )
            for port in service_ports(service.record):
                target = resolve_target_port(port, endpoint, pod)
                if target is not None and port.protocol in ("udp", "tcp"):
                    rules.append(("accept", "implicit:dns", port.protocol, (model.PortRange(target, target),), key, None, (), ()))
        return sorted(set(rules), key=lambda spec: (spec[2], spec[3]))

    def _dns_rules(self, pod: Workload) -> list[RuleSpec]:
        service = self.dns_service(pod.cluster)
        if service is None:
            return []
        rules = []
        key = self.add_members(
            ("dns", str(service.cluster)), f"cluster DNS {service.key}", [*service.addresses, *self.peer_addresses(service)]
        )
        for protocol in ("udp", "tcp"):
            numbers: set[int] = set()
            for port in service_ports(service.record):
                if port.protocol != protocol:
                    continue
                numbers.add(port.port)
                for endpoint in service_endpoints(service.record):
                    target = resolve_target_port(port, endpoint, self.endpoint_pod(service, endpoint.pod, endpoint.addresses))
                    if target is not None:
                        numbers.add(target)
            if numbers:
                ports = tuple(model.PortRange(number, number) for number in sorted(numbers))
                rules.append(("accept", "implicit:dns", protocol, ports, key, None, (), ()))
        return rules

    def guard_catch_all(self, node: Workload) -> list[_Entry]:
        """With catch_all deny: drop NEW connections to every NodePort not admitted above."""
        if self.policy.catch_all != "deny":
            return []
        if node.cluster in self._guard_drops:
            return self._guard_drops[node.cluster]
        entries: list[_Entry] = []
        self._guard_drops[node.cluster] = entries
        for service in self._services_by_cluster.get(node.cluster, []):
            if str(service.record.get("type")) not in ("NodePort", "LoadBalancer"):
                continue
            for port in service_ports(service.record):
                if port.node_port is not None:
                    ports = (model.PortRange(port.node_port, port.node_port),)
                    entries.append(
                        _Entry(
                            (9, 9, 9),
                            port.protocol,
                            ports,
                            (),
                            "drop",
                            f"catch_all nodeport {service.key} {port.protocol}/{port.port}",
                            ("new",),
                            True,
                        )
                    )
        return entries

    # -- rendering -------------------------------------------------------------------

    def set_name(self, key: SetKey) -> str:
        """The stable set name for a logical key."""
        return model.stable_name("zt-", *key)

    def render_rule(self, spec: tuple[Any, ...], local_destination: bool = False) -> tuple[model.Rule, dict[str, Any]]:
        """A model rule (and its dict form), cached: most rules repeat across rulesets."""
        cache_key = (*spec, local_destination)
        cached = self._rule_cache.get(cache_key)
        if cached is None:
            verdict, origin, protocol, ports, set_key, interface, conntrack, icmp_types = spec
            rule = model.Rule(
                verdict=verdict,
                origin=origin,
                protocol=protocol or None,
                ports=tuple(ports),
                peer_set=None if set_key is None else self.set_name(set_key),
                interface=interface,
                conntrack=tuple(conntrack),
                local_destination=local_destination,
                icmp_types=tuple(icmp_types),
            )
            cached = (rule, model.to_dict(rule))
            self._rule_cache[cache_key] = cached
        return cached

    def entry_specs(self, entries: Iterable[_Entry]) -> list[tuple[tuple[Any, ...], bool]]:
        """Policy entries in chain order, as rule specs (icmp doubled for IPv6)."""
        result: list[tuple[tuple[Any, ...], bool]] = []
        seen: set[tuple[Any, ...]] = set()
        for entry in sorted(entries):
            protocols: Sequence[str] = ("icmp", "icmpv6") if entry.protocol == "icmp" else (entry.protocol,)
            for protocol in protocols:
                spec = (entry.verdict, entry.origin, protocol, entry.ports, entry.set_key or None, None, entry.conntrack, ())
                identity = (spec[0], *spec[2:], entry.local_destination)
                if identity in seen:
                    continue
                seen.add(identity)
                result.append((spec, entry.local_destination))
        return result

    def ingress_specs(self, point: _Point, implicit_in: Sequence[RuleSpec]) -> list[tuple[tuple[Any, ...], bool]]:
        """The ingress chain's specs: implicit allowances, then the policy entries in chain order.

        In a pod's ingress the absolute denies come before ``implicit:node_to_pods``, which is
        last of the pod's implicit allowances: the node reaches its pods from the pod-CIDR
        gateway, and that is also where kube-proxy masquerades a NodePort connection entering on
        the pod's own node, so the allowance first would let that connection past a quarantine
        (``everyone -> quarantined``). A quarantine thus also stops the kubelet's probes. The
        stateful, loopback, neighbour-discovery and DNS-server rules stay ahead; nodes and VMs
        (management SSH, the controller's API flow) keep every implicit allowance first.
        """
        entries = self.entry_specs(point.ingress)
        implicit = [(spec, False) for spec in implicit_in]
        if point.workload.kind != "pod":
            return implicit + entries
        # Sorted entries start with the absolute denies (order (0, 0, index)), so they are a prefix.
        denies = len(self.entry_specs(entry for entry in point.ingress if _absolute_deny(entry)))
        if not denies:
            return implicit + entries  # accepts commute: without a deny to place, the usual order
        node = [item for item in implicit if item[0][1] == "implicit:node_to_pods"]
        others = [item for item in implicit if item[0][1] != "implicit:node_to_pods"]
        return others + entries[:denies] + node + entries[denies:]

    def build_chain(
        self, name: str, hook: str, specs: Sequence[tuple[tuple[Any, ...], bool]], default_verdict: str, used: set[SetKey]
    ) -> tuple[model.Chain, dict[str, Any]]:
        """A chain (and its dict form) from rule specs; skips rules whose peer set is empty."""
        rules = []
        rule_dicts = []
        for spec, local_destination in specs:
            set_key = spec[4]
            if set_key is not None:
                if not self._set_members.get(set_key):
                    continue
                used.add(set_key)
            rule, rule_dict = self.render_rule(spec, local_destination)
            rules.append(rule)
            rule_dicts.append(rule_dict)
        origin = "catch_all" if hook != "prerouting" else "nodeport_guard"
        chain = model.Chain(name=name, hook=hook, rules=tuple(rules), default_verdict=default_verdict, default_origin=origin)
        return chain, {"name": name, "hook": hook, "rules": rule_dicts, "default_verdict": default_verdict, "default_origin": origin}

    def address_set(self, key: SetKey) -> tuple[model.AddressSet, dict[str, Any]]:
        """The frozen set for a key (built once), and its dict form."""
        name = self.set_name(key)
        if key not in self.sets:
            members = _canonical_members(self._set_members[key])
            # AddressSet re-parses every member in __post_init__; with 20,000 workloads that
            # was half the compile time. The members are canonicalised and sorted above by
            # the model's own function and sort order (memoised), so the set is built empty
            # (which still validates its name) and then given its members.
            address_set = model.AddressSet(name=name, members=(), comment=self._set_comments[key])
            object.__setattr__(address_set, "members", members)
            self.sets[key] = address_set
            self._set_dicts[name] = {"name": name, "members": list(members), "comment": address_set.comment}
        return self.sets[key], self._set_dicts[name]

    def ruleset(self, point: _Point) -> tuple[model.Ruleset, dict[str, Any]]:
        """The ruleset of one enforcement point and its dictionary form (== Ruleset.to_dict())."""
        default = "deny" if self.policy.catch_all == "deny" else "accept"
        implicit_in, implicit_out = self.implicit_rules(point)
        used: set[SetKey] = set()
        chains = [
            self.build_chain("ingress", "input", self.ingress_specs(point, implicit_in), default, used),
            self.build_chain("egress", "output", [(spec, False) for spec in implicit_out] + self.entry_specs(point.egress), default, used),
        ]
        if point.workload.kind == "node":
            chains.append(
                self.build_chain(
                    "nodeport_guard", "prerouting", self.entry_specs([*point.guard, *self.guard_catch_all(point.workload)]), "return", used
                )
            )
        sets = sorted((self.address_set(key) for key in used), key=lambda item: item[0].name)
        ruleset = model.Ruleset(chains=tuple(chain for chain, _unused_data in chains), address_sets=tuple(item[0] for item in sets))
        data = {
            "version": model.MODEL_VERSION,
            "chains": [data for _unused_chain, data in chains],
            "address_sets": [data for _unused_set, data in sets],
        }
        return ruleset, data

    def plan(self) -> dict[str, Any]:
        """The compiled plan: ``{"hosts": {host: {"ruleset", "pods"}}, "warnings": [...]}``."""
        for rule in self.policy.ordered_rules():
            self.compile_rule(rule)
        hosts: dict[str, dict[str, Any]] = {}
        pods: list[tuple[str, dict[str, Any]]] = []
        for host in sorted(self.points):
            point = self.points[host]
            _unused_ruleset, data = self.ruleset(point)
            workload = point.workload
            if workload.kind != "pod":
                hosts.setdefault(host, {"ruleset": None, "pods": []})["ruleset"] = data
                continue
            enforce_host = workload.enforce_host
            if enforce_host is None:
                node = self.node_of(workload)
                enforce_host = None if node is None else node.host
            if enforce_host is None:
                self.warn(f"pod {workload.key} has no zt_enforce_host and its node is not in the inventory; its rules cannot be applied")
                continue
            pods.append(
                (
                    enforce_host,
                    {
                        "host": host,
                        "namespace": workload.namespace,
                        "name": workload.name,
                        "uid": workload.uid,
                        "ips": list(workload.addresses),
                        "container_ids": list(workload.container_ids),
                        "netns": workload.hostvars.get("zt_netns"),
                        "ruleset": data,
                    },
                )
            )
        for enforce_host, entry in pods:
            hosts.setdefault(enforce_host, {"ruleset": None, "pods": []})["pods"].append(entry)
        return {"hosts": {host: hosts[host] for host in sorted(hosts)}, "warnings": list(self.warnings)}


_CANONICAL: dict[str, tuple[str, tuple[int, int, int]]] = {}


def _absolute_deny(entry: _Entry) -> bool:
    """Is the entry an absolute deny (its order starts with the absolute rank and the deny action)?"""
    return entry.order[0] == RANKS.index("absolute") and entry.verdict == "deny"


def _canonical_members(members: Iterable[str]) -> tuple[str, ...]:
    """``model.canonical_entry`` (canonical text and the model's sort key), memoised per member text."""
    found = []
    for member in members:
        entry = _CANONICAL.get(member)
        if entry is None:
            entry = model.canonical_entry(member)
            if len(_CANONICAL) < 2_000_000:
                _CANONICAL[member] = entry
        found.append(entry)
    return tuple(canonical for canonical, _unused_key in sorted(set(found), key=lambda item: item[1]))


def _is_address(text: Any) -> bool:
    try:
        model.canonical_network(str(text))
    except model.ModelError:
        return False
    return True


def compile_policy(
    policy: Union[Policy, Mapping[str, Any]],
    hostvars: Mapping[str, Mapping[str, Any]],
    options: Union[Options, Mapping[str, Any], None] = None,
) -> dict[str, Any]:
    """Compile a policy over an inventory's hostvars into the plan of contracts.md section 3.

    Returns ``{"hosts": {inventory_hostname: {"ruleset": dict|None, "pods": [...]}}, "warnings": [...], "findings": [...]}``;
    ``findings`` holds the coded warnings with their data (``{"code": "partial_service", "text", ...}``).
    Raises PolicyError (every problem at once) for an invalid policy or options.
    """
    parsed = policy if isinstance(policy, Policy) else parse_policy(policy)
    # The policy's own options: apply, the given ones winning (policy.merge_options); an Options object is taken as is.
    parsed_options = options if isinstance(options, Options) else parse_options(merge_options(parsed.options, options))
    # partial imports this module (the oracle is built on the compiler's lookups): imported here, not at the top.
    from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.partial import findings_of  # noqa: PLC0415

    with collector_paused():
        workloads, warnings = workloads_from_hostvars(hostvars)
        compiler = Compiler(parsed, workloads, parsed_options, warnings)
        plan = compiler.plan()
        # Coded findings (partial services) with their data; their texts join the warnings.
        plan["findings"] = findings_of(compiler)
        plan["warnings"] = list(compiler.warnings)
        return plan


__all__ = ["Compiler", "compile_policy"]
