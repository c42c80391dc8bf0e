# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""One lookup index over an inventory's workloads, shared by the compiler and the oracle.

Who is who, answered once per compile: workloads by host and address, the nodes of each
cluster, the pod and node behind each service endpoint, the workloads each policy filter
selects, the enforcement points in scope, the cluster DNS service and the ``cluster``
allowance's flows (cluster.py). The compiler (rules) and the reachability oracle
(semantics) ask the same index, so they cannot disagree about who a peer is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.cluster import ClusterFlow, ClusterFlows
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import Options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import Policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import Node, Selector
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import Endpoint, Workload

ENFORCED_KINDS = ("vm", "node", "pod")
"""Kinds that get rules of their own (a service is a logical provider, enforced at its endpoints)."""
FINISHED_PHASES = ("Succeeded", "Failed")
"""Pod phases with no network namespace left to apply rules in."""
HOST_NETWORK_NAMED = 5
"""How many host-network pods the one warning about them names."""


@dataclasses.dataclass(frozen=True)
class Receiver:
    """One endpoint of a service and what receives its traffic.

    ``pod``: the endpoint's pod when the inventory has it (by its targetRef, else by address);
    ``node``: the node whose own rules enforce the endpoint when no pod namespace does (an
    endpoint on a node address: the API server's, a host-network pod's), else None.
    """

    endpoint: Endpoint
    pod: Optional[Workload]
    node: Optional[Workload]


def peer_addresses(workload: Workload) -> tuple[str, ...]:
    """The addresses a workload shows as a peer (nodes: also pod-CIDR gateways and tunnels; services: their endpoints)."""
    if workload.kind == "node":
        return workload.addresses + workload.gateways() + workload.tunnel_addresses
    if workload.kind == "service":
        return workload.endpoint_addresses()
    return workload.addresses


class WorkloadIndex:
    """Lookups over one policy's inventory, built once.

    ``warn`` (``warn(text, code, **data)``, as :meth:`Compiler.warn`) receives the warnings
    found while indexing (host-network pods, control-plane flows that cannot be derived).
    """

    def __init__(self, policy: Policy, workloads: Sequence[Workload], options: Options, *, warn: Callable[..., None]) -> None:
        self.policy = policy
        self.options = options
        self.workloads = list(workloads)
        self._warn = warn
        self.selector = Selector(self.workloads)
        self._selected: dict[Node, list[Workload]] = {}
        self.by_host = {workload.host: workload for workload in self.workloads}
        self._nodes: dict[tuple[Optional[str], str], Workload] = {}
        self._pods: dict[tuple[Optional[str], str], Workload] = {}
        self._pods_by_address: dict[str, Workload] = {}
        self._nodes_by_address: dict[tuple[Optional[str], str], Workload] = {}
        self.services_by_cluster: dict[Optional[str], list[Workload]] = {}
        self._dns_services: dict[Optional[str], Workload] = {}
        dns_namespace, _unused_separator, dns_name = options.dns_service.partition("/")
        for workload in self.workloads:
            if workload.kind == "node":
                self._nodes[(workload.cluster, workload.name)] = workload
            elif workload.kind == "pod":
                self._pods[(workload.cluster, workload.key)] = workload
                for address in workload.addresses:
                    self._pods_by_address.setdefault(address, workload)
            elif workload.kind == "service":
                self.services_by_cluster.setdefault(workload.cluster, []).append(workload)
                if workload.namespace == dns_namespace and workload.name == dns_name:
                    self._dns_services.setdefault(workload.cluster, workload)
        self._cluster_nodes: dict[Optional[str], list[Workload]] = {}
        for (cluster, _unused_name), node in sorted(self._nodes.items(), key=lambda item: (str(item[0][0]), item[0][1])):
            self._cluster_nodes.setdefault(cluster, []).append(node)
            for address in node.addresses:
                self._nodes_by_address.setdefault((node.cluster, address), node)
        self._receivers: dict[str, tuple[Receiver, ...]] = {}
        self._endpoint_pods: dict[str, list[Workload]] = {}
        self._local_nodes: dict[str, list[Workload]] = {}
        self.cluster_flows: list[ClusterFlow] = []
        self.cluster_egress: dict[str, list[ClusterFlow]] = {}
        self.cluster_ingress: dict[str, list[ClusterFlow]] = {}
        self._derive_cluster_flows()
        self.enforced = self._enforcement_points()
        """Enforcement points in scope, by host: VMs, nodes, and pods with a namespace of their own."""
        self.matched = {name: self.select(flt.query) for name, flt in sorted(policy.filters.items())}
        """The workloads each policy filter selects."""

    # -- building --------------------------------------------------------------------

    def _derive_cluster_flows(self) -> None:
        """The ``cluster`` allowance's flows, indexed by the hosts whose egress or ingress they open."""
        if not (self.options.enabled("cluster") or self.options.enabled("management_ssh")):
            return  # management_ssh alone still derives the controller's flow to the API server
        self.cluster_flows = ClusterFlows(
            self._cluster_nodes,
            self.workloads,
            self.options,
            select=self.select,
            dns_service=self.dns_service,
            endpoint_pod=self.endpoint_pod,
            warn=self._warn,
        ).flows
        for flow in self.cluster_flows:
            for source in flow.sources:
                self.cluster_egress.setdefault(source.host, []).append(flow)
            for target in flow.destinations:
                self.cluster_ingress.setdefault(target.host, []).append(flow)

    def _enforcement_points(self) -> dict[str, Workload]:
        in_scope = self.workloads if self.options.scope is None else self.select(self.options.scope)
        points: dict[str, Workload] = {}
        host_network: list[str] = []
        for workload in in_scope:
            if workload.kind not in ENFORCED_KINDS:
                continue
            if workload.kind == "pod" and workload.host_network:
                # A hostNetwork pod shares its node's namespace: rules "in the pod" would be
                # the node's. It stays a peer; the node's own ruleset is where it is enforced.
                host_network.append(workload.key)
                continue
            if workload.kind == "pod" and workload.phase in FINISHED_PHASES:
                continue
            points[workload.host] = workload
        self._warn_host_network(host_network)
        return points

    def _warn_host_network(self, pods: Sequence[str]) -> None:
        # One line for all of them: a real cluster runs a CNI agent and kube-proxy with the host
        # network on every node, and a warning per pod would bury the ones that matter.
        if len(pods) == 1:
            self._warn(
                f"pod {pods[0]} uses the host network; it is a peer but not an enforcement point (its node is)",
                "host_network",
                pods=list(pods),
            )
        elif pods:
            more = len(pods) - HOST_NETWORK_NAMED
            shown = ", ".join(pods[:HOST_NETWORK_NAMED]) + (f" and {more} more" if more > 0 else "")
            self._warn(
                f"{len(pods)} pods use the host network ({shown}); they are peers but not enforcement points (their nodes are)",
                "host_network",
                pods=list(pods),
            )

    # -- lookups ---------------------------------------------------------------------

    def select(self, query: Node) -> list[Workload]:
        """The workloads a parsed query selects (memoised: the same query is asked by several filters and options)."""
        found = self._selected.get(query)
        if found is None:
            found = self._selected[query] = self.selector.select(query)
        return found

    def cluster_nodes(self, cluster: Optional[str]) -> list[Workload]:
        """Nodes of one cluster, sorted by name."""
        return self._cluster_nodes.get(cluster, [])

    def node_of(self, pod: Workload) -> Optional[Workload]:
        """The node workload a pod runs on, if the inventory has it."""
        return None if pod.node is None else self._nodes.get((pod.cluster, pod.node))

    def dns_service(self, cluster: Optional[str]) -> Optional[Workload]:
        """The cluster DNS service named by the ``dns_service`` option, if in the inventory."""
        return self._dns_services.get(cluster)

    def endpoint_pod(self, service: Workload, pod_ref: Optional[str], addresses: Sequence[str]) -> Optional[Workload]:
        """The pod behind an endpoint: by its targetRef, else by address."""
        if pod_ref:
            found = self._pods.get((service.cluster, pod_ref))
            if found is not None:
                return found
        for address in addresses:
            if address in self._pods_by_address:
                return self._pods_by_address[address]
        return None

    def endpoint_node(self, service: Workload, pod: Optional[Workload], addresses: Sequence[str]) -> Optional[Workload]:
        """The node that receives an endpoint's traffic when no pod namespace does.

        An endpoint on a node address (the API server's, a host-network pod's) is enforced
        by that node's own rules.
        """
        if pod is not None and not pod.host_network:
            return None
        for address in addresses:
            node = self._nodes_by_address.get((service.cluster, address))
            if node is not None:
                return node
        return None

    def receivers(self, service: Workload) -> tuple[Receiver, ...]:
        """Each endpoint of a service with its pod and enforcing node, in record order (memoised)."""
        found = self._receivers.get(service.host)
        if found is None:
            items = []
            for endpoint in service.endpoints:
                pod = self.endpoint_pod(service, endpoint.pod, endpoint.addresses)
                items.append(Receiver(endpoint, pod, self.endpoint_node(service, pod, endpoint.addresses)))
            found = self._receivers[service.host] = tuple(items)
        return found

    def endpoint_pods(self, service: Workload) -> list[Workload]:
        """The inventory's pods behind a service's endpoints, in endpoint order (memoised)."""
        found = self._endpoint_pods.get(service.host)
        if found is None:
            found = self._endpoint_pods[service.host] = [item.pod for item in self.receivers(service) if item.pod is not None]
        return found

    def local_endpoint_nodes(self, service: Workload) -> list[Workload]:
        """The nodes of a service's cluster that hold a ready endpoint of it (``externalTrafficPolicy: Local``)."""
        found = self._local_nodes.get(service.host)
        if found is None:
            names = set()
            for item in self.receivers(service):
                if not item.endpoint.ready:
                    continue
                name = item.endpoint.node or (item.pod.node if item.pod is not None else None)
                if name is not None:
                    names.add(name)
            found = self._local_nodes[service.host] = [node for node in self.cluster_nodes(service.cluster) if node.name in names]
        return found

    @staticmethod
    def peer_addresses(workload: Workload) -> tuple[str, ...]:
        """The addresses a workload shows as a peer (see :func:`peer_addresses`)."""
        return peer_addresses(workload)

    def masquerade_sources(self, node: Workload) -> list[str]:
        """The sources a pod on ``node`` sees for masqueraded NodePort traffic.

        Its own node's pod-CIDR gateways and tunnel addresses (the connection entered there),
        every node's tunnel addresses, and the other nodes' addresses.
        """
        members: list[str] = [*node.gateways(), *node.tunnel_addresses]
        for other in self.cluster_nodes(node.cluster):
            members.extend(other.tunnel_addresses)
            if other.name != node.name:
                members.extend(other.addresses)
        return members


__all__ = ["ENFORCED_KINDS", "Receiver", "WorkloadIndex", "peer_addresses"]
