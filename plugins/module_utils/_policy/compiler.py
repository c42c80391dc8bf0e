# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The compiler: policy + workloads -> one ruleset per enforcement point.

Enforcement points are VMs, nodes (their own rules plus the NodePort guard) and pods
(their network namespace, applied from their node). Semantics follow design.md:
both ends (consumer egress, provider ingress), stateful, services resolved for
in-cluster and out-of-cluster consumers, absolute before default before catch-all,
deny before allow at the same rank, implicit allowances first (except in a pod's
ingress, where the absolute denies precede ``node_to_pods``: see
:meth:`Compiler.ingress_rules`).

Peers are address sets named after their logical key (``model.stable_name``), never
after their members, so a pod IP change rewrites a set and never a chain. Every rule is
a :class:`rules.CompiledRule` from where it is decided to :class:`rules.Serializer`,
which turns a point's chains into a validated ``model.Ruleset``; the plan carries its
``to_dict()``, each host's sets once in its ``sets`` (docs/contracts.md section 3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Union

from ansible_collections.zerotrust.workloads.plugins.module_utils._memory import collector_paused
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import model
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.cluster import ClusterFlow
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.index import WorkloadIndex, peer_addresses
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import Options, parse_options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import (
    RANKS,
    Policy,
    PolicyRule,
    PortSpec,
    merge_options,
    parse_policy,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.rules import (
    ChainSpec,
    CompiledRule,
    Serializer,
    SetKey,
    chain_rules,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.services import (
    ServicePort,
    container_port,
    match_service_ports,
    resolve_target_port,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import Workload, workloads_from_hostvars

ND_TYPES = (133, 134, 135, 136)
ESTABLISHED = CompiledRule("accept", "implicit:established", conntrack=("established", "related"))
LOOPBACK = CompiledRule("accept", "implicit:loopback", interface="lo")
NEIGHBOUR_DISCOVERY = CompiledRule("accept", "implicit:icmpv6_neighbour_discovery", "icmpv6", icmp_types=ND_TYPES)
SSH = (model.PortRange(22, 22),)


def _protocol_and_ports(protocol: Optional[str], first: Optional[int], last: Optional[int]) -> tuple[str, tuple[model.PortRange, ...]]:
    ports = (model.PortRange(first, last),) if first is not None and last is not None else ()
    return (protocol or "", ports)


@dataclasses.dataclass
class _Point:
    """Rules gathered for one enforcement point."""

    workload: Workload
    ingress: set[CompiledRule] = dataclasses.field(default_factory=set)
    egress: set[CompiledRule] = dataclasses.field(default_factory=set)
    guard: set[CompiledRule] = dataclasses.field(default_factory=set)


class Compiler:
    """One compile run: build with workloads, call :meth:`plan`."""

    def __init__(
        self,
        policy: Policy,
        workloads: Sequence[Workload],
        options: Options,
        warnings: Optional[list[str]] = None,
        index: Optional[WorkloadIndex] = None,
    ) -> None:
        self.policy = policy
        self.options = options
        self.warnings: list[str] = list(warnings or ())
        # Every warning also as a coded finding (codes.py); the inventory's come first, all about hosts left out.
        self.findings: list[dict[str, Any]] = [{"code": "host_left_out", "text": text} for text in self.warnings]
        self._warned = set(self.warnings)
        # The lookups (who is who) live in the index the oracle shares; one built elsewhere
        # (``index``) brought its indexing warnings to whoever built it.
        self.index = index if index is not None else WorkloadIndex(policy, workloads, options, warn=self.warn)
        self.workloads = self.index.workloads
        self.selector = self.index.selector
        self.by_host = self.index.by_host
        self.matched = self.index.matched
        self.cluster_flows = self.index.cluster_flows
        self.cluster_egress = self.index.cluster_egress
        self.cluster_ingress = self.index.cluster_ingress
        self._services_by_cluster = self.index.services_by_cluster
        self.points: dict[str, _Point] = {host: _Point(workload) for host, workload in self.index.enforced.items()}
        self.serializer = Serializer()
        self._set_members = self.serializer.members
        self._guard_drops: dict[Optional[str], list[CompiledRule]] = {}
        self._implicit: dict[tuple[Any, ...], CompiledRule] = {}
        self._dns_egress: dict[Optional[str], list[CompiledRule]] = {}

    # -- helpers ---------------------------------------------------------------------

    def warn(self, text: str, code: str = "compiler", **data: Any) -> None:
        """Record a warning once: its text in ``warnings``, ``{"code", "text", **data}`` in ``findings``.

        ``code`` (codes.py) is what callers decide on; the text is for people and may change.
        """
        if text not in self._warned:
            self._warned.add(text)
            self.warnings.append(text)
            self.findings.append({"code": code, "text": text, **data})

    def add_members(self, key: SetKey, comment: str, members: Iterable[str]) -> SetKey:
        """Add addresses to the logical set ``key`` (created on first use)."""
        return self.serializer.add_members(key, comment, members)

    # The lookups, asked of the index (index.py) so that the rule side reads as before.

    def cluster_nodes(self, cluster: Optional[str]) -> list[Workload]:
        """Nodes of one cluster, sorted by name."""
        return self.index.cluster_nodes(cluster)

    def node_of(self, pod: Workload) -> Optional[Workload]:
        """The node workload a pod runs on, if the inventory has it."""
        return self.index.node_of(pod)

    def endpoint_pod(self, service: Workload, pod_ref: Optional[str], addresses: Sequence[str]) -> Optional[Workload]:
        """The pod behind an endpoint: by its targetRef, else by address."""
        return self.index.endpoint_pod(service, pod_ref, addresses)

    def endpoint_node(self, service: Workload, pod: Optional[Workload], addresses: Sequence[str]) -> Optional[Workload]:
        """The node whose own rules enforce an endpoint when no pod namespace does (see :meth:`WorkloadIndex.endpoint_node`)."""
        return self.index.endpoint_node(service, pod, addresses)

    @staticmethod
    def peer_addresses(workload: Workload) -> tuple[str, ...]:
        """The addresses a workload shows as a peer (nodes: also pod-CIDR gateways and tunnels)."""
        return peer_addresses(workload)

    def local_endpoint_nodes(self, service: Workload) -> list[Workload]:
        """The nodes of a service's cluster that hold a ready endpoint of it (``externalTrafficPolicy: Local``)."""
        return self.index.local_endpoint_nodes(service)

    def dns_service(self, cluster: Optional[str]) -> Optional[Workload]:
        """The cluster DNS service named by the ``dns_service`` option, if in the inventory."""
        return self.index.dns_service(cluster)

    def masquerade_set(self, node: Workload) -> SetKey:
        """Sources a pod on ``node`` sees for masqueraded NodePort traffic."""
        key = ("masquerade", str(node.cluster), node.name)
        if key not in self._set_members:
            self.add_members(key, f"nodeport masquerade sources on {node.name}", self.index.masquerade_sources(node))
        return key

    # -- policy rules ----------------------------------------------------------------

    def compile_rule(self, rule: PolicyRule) -> None:
        """Place one policy's rules at every consumer and provider it concerns."""
        consumers = self.matched[rule.consumer]
        providers = self.matched[rule.provider]
        consumer_networks = self.policy.filters[rule.consumer].networks or ()
        provider_networks = self.policy.filters[rule.provider].networks or ()
        ends = (("consumer", rule.consumer, consumers or consumer_networks), ("provider", rule.provider, providers or provider_networks))
        for side, name, found in ends:
            if not found:
                text = f"policy {rule.label}: {side} filter {name!r} matches no workload; the policy has no effect"
                self.warn(text, "unmatched_filter", policy=rule.label, side=side, filter=name)
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
                        point.ingress.add(CompiledRule(verdict, rule.origin(spec), protocol or None, ports, from_all, order=rule.order))
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
        self.warn(
            f"policy {rule.label}: {provider.kind} {provider.key} has no {spec.protocol} port named {spec.name!r}; no rule for it",
            "unknown_port_name",
            policy=rule.label,
        )
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
            text = f"policy {rule.label}: service {service.key} does not carry ICMP; address its pods instead"
            self.warn(text, "service_icmp", policy=rule.label)
            return
        ports = match_service_ports(service, spec)
        if not ports:
            self.warn(f"policy {rule.label}: service {service.key} has no port {spec}; no rule for it", "service_port_missing",
                      policy=rule.label)
            return
        local = service.local_traffic
        service_type = service.service_type
        outside_ips = [*service.load_balancer_ingress, *service.external_ips]  # IP literals only (workloads.py)
        reachable_outside = False
        for port in ports:
            one = (model.PortRange(port.port, port.port),)
            destination("in", port.protocol, one, service.addresses)
            for endpoint in service.endpoints:
                pod = self.endpoint_pod(service, endpoint.pod, endpoint.addresses)
                target = resolve_target_port(port, endpoint, pod)
                if target is None:
                    self.warn(
                        f"policy {rule.label}: service {service.key} target port {port.target_port!r} "
                        f"does not resolve for endpoint {endpoint.pod or endpoint.addresses}",
                        "target_port_unresolved",
                        policy=rule.label,
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
                        node_point.ingress.add(
                            CompiledRule(verdict, rule.origin(spec), port.protocol, target_ports, from_in, order=rule.order)
                        )
                    continue
                origin = rule.origin(spec)
                point.ingress.add(CompiledRule(verdict, origin, port.protocol, target_ports, from_in, order=rule.order))
                if has_outside:
                    if local:
                        point.ingress.add(CompiledRule(verdict, origin, port.protocol, target_ports, from_out, order=rule.order))
                    elif verdict == "accept":
                        # Masqueraded: the pod sees node addresses; the nodes' guard holds the line.
                        node = self.node_of(pod)
                        if node is not None:
                            point.ingress.add(
                                CompiledRule(
                                    verdict,
                                    origin + " via nodeport",
                                    port.protocol,
                                    target_ports,
                                    self.masquerade_set(node),
                                    order=rule.order,
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
        health_check = service.health_check_node_port
        if has_outside and local and service_type == "LoadBalancer" and isinstance(health_check, int) and verdict == "accept":
            self._health_check(rule, service, health_check, from_out, destination)
        if has_outside and not reachable_outside:
            self.warn(
                f"policy {rule.label}: service {service.key} (type {service_type}) has no NodePort, LoadBalancer ingress or external IP; "
                "its out-of-cluster consumers cannot reach it",
                "service_not_outside",
                policy=rule.label,
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
        local = service.local_traffic
        nodes = self.local_endpoint_nodes(service) if local else self.cluster_nodes(service.cluster)
        if local and has_outside and not nodes:
            self.warn(
                f"policy {rule.label}: service {service.key} has externalTrafficPolicy Local and no ready endpoint on a node "
                "of the inventory; its out-of-cluster consumers reach no node",
                "local_without_endpoint",
                policy=rule.label,
            )
        destination("out", port.protocol, node_ports, (address for node in nodes for address in node.addresses))
        for node in nodes:
            point = self.points.get(node.host)
            if point is not None and has_outside:
                guard_verdict = "return" if verdict == "accept" else "drop"
                point.guard.add(
                    CompiledRule(
                        guard_verdict,
                        rule.origin(spec),
                        port.protocol,
                        node_ports,
                        from_out,
                        conntrack=("new",),
                        local_destination=True,
                        order=rule.order,
                    )
                )

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
                origin = f"{rule.origin()} health check {service.key}"
                point.ingress.add(CompiledRule("accept", origin, "tcp", ports, from_out, order=rule.order))

    def _consumer_egress(
        self,
        rule: PolicyRule,
        consumers: Sequence[Workload],
        destinations: Mapping[tuple[str, str], Mapping[tuple[model.PortRange, ...], set[str]]],
        verdict: str,
    ) -> None:
        entries: dict[str, list[CompiledRule]] = {"in": [], "out": []}
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
                entry = CompiledRule(verdict, f"{rule.origin()} {spec_text}", protocol or None, port_tuple, key, order=rule.order)
                for target in ("in", "out") if side == "all" else (side,):
                    entries[target].append(entry)
        for consumer in consumers:
            targets = self.index.endpoint_pods(consumer) if consumer.kind == "service" else [consumer]
            for enforced in targets:
                point = self.points.get(enforced.host)
                if point is not None:
                    point.egress.update(entries["out" if enforced.kind == "vm" else "in"])

    # -- implicit allowances and the guard -----------------------------------------

    def implicit_rules(self, point: _Point) -> tuple[list[CompiledRule], list[CompiledRule]]:
        """The implicit allowances opening a point's ingress and egress, in chain order."""
        workload = point.workload
        ingress: list[CompiledRule] = []
        egress: list[CompiledRule] = []
        both: list[CompiledRule] = []
        if self.options.enabled("established"):
            both.append(ESTABLISHED)
        if self.options.enabled("loopback"):
            both.append(LOOPBACK)
        if self.options.enabled("icmpv6_neighbour_discovery"):
            both.append(NEIGHBOUR_DISCOVERY)
        ingress.extend(both)
        egress.extend(both)
        if self.options.enabled("management_ssh") and workload.kind in ("vm", "node"):
            key = None
            if self.options.management_addresses:
                key = self.add_members(("management",), "management (Ansible controller) addresses", self.options.management_addresses)
            ingress.append(self.implicit_rule("implicit:management_ssh", "tcp", SSH, key))
        if self.options.enabled("node_to_pods"):
            if workload.kind == "pod":
                node = self.node_of(workload)
                if node is None:
                    self.warn(
                        f"pod {workload.key}: its node {workload.node!r} is not in the inventory; no node-to-pod allowance", "node_missing"
                    )
                else:
                    key = self.add_members(
                        ("node", str(node.cluster), node.name),
                        f"node {node.name} as its pods see it",
                        node.gateways() + node.tunnel_addresses,
                    )
                    ingress.append(self.implicit_rule("implicit:node_to_pods", peer=key))
            elif workload.kind == "node" and workload.pod_cidrs:
                key = self.add_members(
                    ("pod_cidrs", str(workload.cluster), workload.name), f"pod CIDRs of {workload.name}", workload.pod_cidrs
                )
                egress.append(self.implicit_rule("implicit:node_to_pods", peer=key))
        if self.options.enabled("dns") and workload.kind == "pod":
            egress.extend(self._dns_rules(workload))
            ingress.extend(self._dns_server_rules(workload))
        if self.cluster_flows:
            self._cluster_rules(workload, ingress, egress)
        return ingress, egress

    def implicit_rule(
        self, origin: str, protocol: Optional[str] = None, ports: tuple[model.PortRange, ...] = (), peer: Optional[SetKey] = None
    ) -> CompiledRule:
        """An accepting implicit rule, one object for every point that holds it (the serializer then meets it once)."""
        key = (origin, protocol, ports, peer)
        found = self._implicit.get(key)
        if found is None:
            found = self._implicit[key] = CompiledRule("accept", origin, protocol, ports, peer)
        return found

    def _cluster_rules(self, workload: Workload, ingress: list[CompiledRule], egress: list[CompiledRule]) -> None:
        """The ``cluster`` allowance at one enforcement point: its end of every control-plane flow."""
        for flow in self.cluster_egress.get(workload.host, ()):
            to_key = self._cluster_set(flow, "to", flow.destination_addresses)
            egress.append(self.implicit_rule(flow.origin, flow.protocol or None, flow.egress_ports, to_key))
        for flow in self.cluster_ingress.get(workload.host, ()):
            from_key = None if flow.source_addresses is None else self._cluster_set(flow, "from", flow.source_addresses)
            ingress.append(self.implicit_rule(flow.origin, flow.protocol or None, flow.ingress_ports, from_key))

    def _cluster_set(self, flow: ClusterFlow, side: str, addresses: Sequence[str]) -> SetKey:
        # Peer-to-peer flows (overlay, etcd) have the same addresses at both ends: one set.
        if flow.source_addresses == flow.destination_addresses:
            side = "peers"
        return self.add_members(("cluster", str(flow.cluster), flow.what, side), f"{flow.what} ({side}, cluster {flow.cluster})", addresses)

    def _dns_server_rules(self, pod: Workload) -> list[CompiledRule]:
        # A DNS pod under a deny catch-all must still answer every pod of its cluster.
        service = self.dns_service(pod.cluster)
        if service is None:
            return []
        rules = []
        for endpoint in service.endpoints:
            if self.endpoint_pod(service, endpoint.pod, endpoint.addresses) is not pod:
                continue
            nodes = self.cluster_nodes(pod.cluster)
            key = self.add_members(
                ("pod_cidrs", str(pod.cluster)), "pod CIDRs of the cluster", (cidr for node in nodes for cidr in node.pod_cidrs)
            )
            for port in service.service_ports:
                target = resolve_target_port(port, endpoint, pod)
                if target is not None and port.protocol in ("udp", "tcp"):
                    rules.append(self.implicit_rule("implicit:dns", port.protocol, (model.PortRange(target, target),), key))
        return sorted(set(rules), key=lambda rule: (rule.protocol or "", rule.ports))

    def _dns_rules(self, pod: Workload) -> list[CompiledRule]:
        """A pod's egress to the cluster DNS: the same rules for every pod of its cluster."""
        found = self._dns_egress.get(pod.cluster)
        if found is None:
            found = self._dns_egress[pod.cluster] = self._cluster_dns_rules(pod.cluster)
        return found

    def _cluster_dns_rules(self, cluster: Optional[str]) -> list[CompiledRule]:
        service = self.dns_service(cluster)
        if service is None:
            return []
        rules = []
        key = self.add_members(
            ("dns", str(service.cluster)), f"cluster DNS {service.key}", [*service.addresses, *self.peer_addresses(service)]
        )
        for protocol in ("udp", "tcp"):
            numbers: set[int] = set()
            for port in service.service_ports:
                if port.protocol != protocol:
                    continue
                numbers.add(port.port)
                for endpoint in service.endpoints:
                    target = resolve_target_port(port, endpoint, self.endpoint_pod(service, endpoint.pod, endpoint.addresses))
                    if target is not None:
                        numbers.add(target)
            if numbers:
                ports = tuple(model.PortRange(number, number) for number in sorted(numbers))
                rules.append(self.implicit_rule("implicit:dns", protocol, ports, key))
        return rules

    def guard_catch_all(self, node: Workload) -> list[CompiledRule]:
        """With catch_all deny: drop NEW connections to every NodePort not admitted above."""
        if self.policy.catch_all != "deny":
            return []
        if node.cluster in self._guard_drops:
            return self._guard_drops[node.cluster]
        entries: list[CompiledRule] = []
        self._guard_drops[node.cluster] = entries
        for service in self._services_by_cluster.get(node.cluster, []):
            if not service.has_node_ports:
                continue
            for port in service.service_ports:
                if port.node_port is not None:
                    ports = (model.PortRange(port.node_port, port.node_port),)
                    entries.append(
                        CompiledRule(
                            "drop",
                            f"catch_all nodeport {service.key} {port.protocol}/{port.port}",
                            port.protocol,
                            ports,
                            conntrack=("new",),
                            local_destination=True,
                            order=(9, 9, 9),
                        )
                    )
        return entries

    # -- the point's ruleset -----------------------------------------------------------

    def ingress_rules(self, point: _Point, implicit_in: Sequence[CompiledRule]) -> list[CompiledRule]:
        """The ingress chain: implicit allowances, then the policy rules in chain order.

        In a pod's ingress the absolute denies come before ``implicit:node_to_pods``, which is
        last of the pod's implicit allowances: the node reaches its pods from the pod-CIDR
        gateway, and that is also where kube-proxy masquerades a NodePort connection entering on
        the pod's own node, so the allowance first would let that connection past a quarantine
        (``everyone -> quarantined``). A quarantine thus also stops the kubelet's probes. The
        stateful, loopback, neighbour-discovery and DNS-server rules stay ahead; nodes and VMs
        (management SSH, the controller's API flow) keep every implicit allowance first.
        """
        entries = chain_rules(point.ingress)
        implicit = list(implicit_in)
        if point.workload.kind != "pod":
            return implicit + entries
        # Rules in chain order start with the absolute denies (order (0, 0, index)), so they are a prefix.
        denies = len(chain_rules(rule for rule in point.ingress if _absolute_deny(rule)))
        if not denies:
            return implicit + entries  # accepts commute: without a deny to place, the usual order
        node = [rule for rule in implicit if rule.origin == "implicit:node_to_pods"]
        others = [rule for rule in implicit if rule.origin != "implicit:node_to_pods"]
        return others + entries[:denies] + node + entries[denies:]

    def ruleset(self, point: _Point) -> model.Ruleset:
        """The ruleset of one enforcement point (the model's, validated)."""
        default = "deny" if self.policy.catch_all == "deny" else "accept"
        implicit_in, implicit_out = self.implicit_rules(point)
        chains = [
            ChainSpec("ingress", "input", self.ingress_rules(point, implicit_in), default),
            ChainSpec("egress", "output", implicit_out + chain_rules(point.egress), default),
        ]
        if point.workload.kind == "node":
            guard = chain_rules([*point.guard, *self.guard_catch_all(point.workload)])
            chains.append(ChainSpec("nodeport_guard", "prerouting", guard, "return"))
        return self.serializer.ruleset(chains)

    def plan(self) -> dict[str, Any]:
        """The compiled plan: ``{"hosts": {host: {"ruleset", "pods", "sets"}}, "warnings": [...]}`` (contracts.md section 3)."""
        for rule in self.policy.ordered_rules():
            self.compile_rule(rule)
        own: dict[str, model.Ruleset] = {}
        pods: dict[str, list[tuple[dict[str, Any], model.Ruleset]]] = {}
        for host in sorted(self.points):
            point = self.points[host]
            ruleset = self.ruleset(point)
            workload = point.workload
            if workload.kind != "pod":
                own[host] = ruleset
                continue
            enforce_host = workload.enforce_host
            if enforce_host is None:
                node = self.node_of(workload)
                enforce_host = None if node is None else node.host
            if enforce_host is None:
                self.warn(
                    f"pod {workload.key} has no zt_enforce_host and its node is not in the inventory; its rules cannot be applied",
                    "pod_not_placed",
                )
                continue
            entry = {
                "host": host,
                "namespace": workload.namespace,
                "name": workload.name,
                "uid": workload.uid,
                "ips": list(workload.addresses),
                "container_ids": list(workload.container_ids),
                "netns": workload.hostvars.get("zt_netns"),
            }
            pods.setdefault(enforce_host, []).append((entry, ruleset))
        hosts = {host: self.host_entry(own.get(host), pods.get(host, [])) for host in sorted({*own, *pods})}
        return {"hosts": hosts, "warnings": list(self.warnings)}

    def host_entry(self, ruleset: Optional[model.Ruleset], pods: Sequence[tuple[dict[str, Any], model.Ruleset]]) -> dict[str, Any]:
        """One host's part of the plan: its rulesets name their sets, whose members travel once in ``sets``."""
        shared = model.shared_sets([*([] if ruleset is None else [ruleset]), *(pod_ruleset for _unused_entry, pod_ruleset in pods)])
        memo = self.serializer.memo
        return {
            "ruleset": None if ruleset is None else ruleset.to_dict(shared, memo),
            "pods": [{**entry, "ruleset": pod_ruleset.to_dict(shared, memo)} for entry, pod_ruleset in pods],
            "sets": model.sets_to_dict(shared.values(), memo),
        }


def _absolute_deny(rule: CompiledRule) -> bool:
    """Is the rule an absolute deny (its order starts with the absolute rank and the deny action)?"""
    return rule.order is not None and rule.order[0] == RANKS.index("absolute") and rule.verdict == "deny"


def compile_policy(
    policy: Union[Policy, Mapping[str, Any]],
    hostvars: Mapping[str, Mapping[str, Any]],
    options: Union[Options, Mapping[str, Any], None] = None,
) -> dict[str, Any]:
    """Compile a policy over an inventory's hostvars into the plan of contracts.md section 3.

    Returns ``{"hosts": {inventory_hostname: {"ruleset": dict|None, "pods": [...]}}, "warnings": [...], "findings": [...]}``;
    ``findings`` holds every warning with its code and data (``{"code": "partial_service", "text", ...}``; codes.py).
    Raises PolicyError (every problem at once) for an invalid policy or options.
    """
    parsed = policy if isinstance(policy, Policy) else parse_policy(policy)
    # The policy's own options: apply, the given ones winning (policy.merge_options); an Options object is taken as is.
    parsed_options = options if isinstance(options, Options) else parse_options(merge_options(parsed.options, options))
    # partial imports this module (findings_of takes a Compiler): imported here, not at the top.
    from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.partial import findings_of  # noqa: PLC0415

    with collector_paused():
        workloads, warnings = workloads_from_hostvars(hostvars)
        compiler = Compiler(parsed, workloads, parsed_options, warnings)
        plan = compiler.plan()
        # Partial services join the compiler's warnings; every warning is also a coded finding (codes.py).
        findings_of(compiler)
        plan["findings"] = list(compiler.findings)
        plan["warnings"] = list(compiler.warnings)
        return plan


__all__ = ["Compiler", "compile_policy"]
