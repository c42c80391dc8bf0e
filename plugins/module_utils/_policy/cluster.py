# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The ``cluster`` implicit allowance: the flows that keep a Kubernetes cluster alive.

Every flow is derived from the inventory (nodes, their labels and annotations, the
``default/kubernetes`` service and its endpoints, the DNS service's pods, the CNI's agent
pods) and the compiler options, never from a hand-kept list of ports opened to everyone:

- nodes -> the API server endpoints, and the API server's node(s) -> every kubelet (tcp/10250);
- etcd (tcp/2379-2380) between control-plane nodes only;
- node <-> node on the overlay's protocol, detected from what flannel, Calico and Cilium
  publish (or stated with ``options.overlay``);
- the DNS service's pods -> the API server and -> ``options.upstream_dns``;
- the pods ``options.api_access`` selects -> ``default/kubernetes`` (ClusterIP and endpoints);
- the Ansible controller (``options.management_addresses``) -> the API server's node(s); this one
  belongs to the never-lock-out allowance ``management_ssh`` (origin ``implicit:management_ssh ...``),
  so switching ``cluster`` off never cuts the controller from the API its inventory reads.

Each :class:`ClusterFlow` names both ends, so the compiler opens the sources' egress and the
destinations' ingress from the same record the reachability oracle answers from.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import PortRange
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import OVERLAYS, Options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import Node
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.services import resolve_target_port
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import Workload, is_ip_literal

API_SERVICE = ("default", "kubernetes")
KUBELET_PORT = 10250
ETCD_PORTS = PortRange(2379, 2380)
DNS_PORT = 53
TYPHA_PORT = 5473
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
"""The kubeadm label (and its name before Kubernetes 1.24) that marks a control-plane node."""

FLANNEL_BACKEND = "flannel.alpha.coreos.com/backend-type"
FLANNEL_ADDRESSES = ("flannel.alpha.coreos.com/public-ip", "flannel.alpha.coreos.com/public-ipv6")
FLANNEL_BACKENDS = {"vxlan": "flannel-vxlan", "udp": "flannel-udp", "wireguard": "flannel-wireguard", "host-gw": "flannel-host-gw"}
CALICO_ADDRESSES = ("projectcalico.org/IPv4Address", "projectcalico.org/IPv6Address")
CALICO_EVIDENCE = (
    ("projectcalico.org/IPv4Address", "calico-bgp"),
    ("projectcalico.org/IPv6Address", "calico-bgp"),
    ("projectcalico.org/IPv4IPIPTunnelAddr", "calico-ipip"),
    ("projectcalico.org/IPv4VXLANTunnelAddr", "calico-vxlan"),
    ("projectcalico.org/IPv6VXLANTunnelAddr", "calico-vxlan"),
    ("projectcalico.org/WireguardPublicKey", "calico-wireguard"),
    ("projectcalico.org/WireguardPublicKeyV6", "calico-wireguard"),
)
"""Node annotation -> the overlay it shows (Calico's node agent writes them)."""
CALICO_TYPHA = ("k8s-app", "calico-typha")
CILIUM_AGENT = ("kube-system", "k8s-app", "cilium")
"""Cilium's agent DaemonSet pods: namespace, label key, label value."""


@dataclasses.dataclass(frozen=True)
class ClusterFlow:
    """One control-plane flow, both ends.

    ``sources`` open their egress to ``destination_addresses`` on ``egress_ports``;
    ``destinations`` open their ingress from ``source_addresses`` (``None``: from any
    address) on ``ingress_ports``. The two port lists differ only where a Service
    rewrites the port (a pod dials ClusterIP:443, the API server node receives 6443).
    """

    cluster: Optional[str]
    what: str
    protocol: str
    egress_ports: tuple[PortRange, ...]
    ingress_ports: tuple[PortRange, ...]
    sources: tuple[Workload, ...]
    source_addresses: Optional[tuple[str, ...]]
    destinations: tuple[Workload, ...]
    destination_addresses: tuple[str, ...]
    allowance: str = "cluster"
    """The implicit allowance the flow belongs to (its switch): ``cluster``, or ``management_ssh`` for the controller's."""

    @property
    def origin(self) -> str:
        """The rule origin: ``implicit:<allowance> <what>``."""
        return f"implicit:{self.allowance} {self.what}"


def _ports(numbers: Iterable[Optional[int]]) -> tuple[PortRange, ...]:
    return tuple(PortRange(number, number) for number in sorted({number for number in numbers if number is not None}))


def _unique(workloads: Iterable[Workload]) -> tuple[Workload, ...]:
    seen: dict[str, Workload] = {}
    for workload in workloads:
        seen.setdefault(workload.host, workload)
    return tuple(seen[host] for host in sorted(seen))


def _addresses(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


def _annotation_address(value: str) -> Optional[str]:
    """``172.18.221.11/24`` or ``172.18.221.11`` -> the address; anything else -> None (untrusted text)."""
    text = value.split("/", 1)[0].strip()
    return str(ipaddress.ip_address(text)) if is_ip_literal(text) else None


@dataclasses.dataclass(frozen=True)
class ApiServer:
    """The ``default/kubernetes`` service of one cluster, resolved."""

    service: Workload
    endpoint_addresses: tuple[str, ...]
    target_ports: tuple[PortRange, ...]
    service_ports: tuple[PortRange, ...]
    nodes: tuple[Workload, ...]
    external: tuple[str, ...]


class ClusterFlows:
    """Derives the ``cluster`` allowance's flows for every cluster of an inventory.

    ``select`` evaluates a parsed query (the compiler's selector), so ``options.api_access``
    picks exactly the pods a policy filter with the same text would.
    """

    def __init__(
        self,
        nodes_by_cluster: Mapping[Optional[str], Sequence[Workload]],
        workloads: Sequence[Workload],
        options: Options,
        *,
        select: Callable[[Node], list[Workload]],
        dns_service: Callable[[Optional[str]], Optional[Workload]],
        endpoint_pod: Callable[[Workload, Optional[str], Sequence[str]], Optional[Workload]],
        warn: Callable[..., None],
    ) -> None:
        self.options = options
        cluster_on = options.enabled("cluster")
        self._warn = warn
        self._endpoint_pod = endpoint_pod
        self.flows: list[ClusterFlow] = []
        pods: dict[Optional[str], list[Workload]] = {}
        services: dict[Optional[str], Workload] = {}
        for workload in workloads:
            if workload.kind == "pod":
                pods.setdefault(workload.cluster, []).append(workload)
            elif workload.kind == "service" and (workload.namespace, workload.name) == API_SERVICE:
                services.setdefault(workload.cluster, workload)
        api_pods = [workload for workload in select(options.api_access) if workload.kind == "pod"] if options.api_access else []
        for cluster in sorted(set(nodes_by_cluster) | set(services), key=str):
            nodes = tuple(nodes_by_cluster.get(cluster, ()))
            cluster_pods = pods.get(cluster, [])
            api = self._api_server(services.get(cluster), nodes)
            dns = dns_service(cluster)
            dns_pods = () if dns is None else self._endpoint_pods(dns)
            if api is not None and cluster_on:
                self._api_flows(cluster, api, nodes, dns_pods, [pod for pod in api_pods if pod.cluster == cluster])
            if api is not None and options.enabled("management_ssh"):
                self._controller_flow(cluster, api)
            if not cluster_on:
                continue
            self._etcd(cluster, nodes)
            self._overlay(cluster, nodes, cluster_pods)
            if self.options.upstream_dns and dns_pods:
                self._upstream_dns(cluster, dns_pods, nodes, workloads)

    # -- lookups ---------------------------------------------------------------------

    def _endpoint_pods(self, service: Workload) -> tuple[Workload, ...]:
        found = (self._endpoint_pod(service, endpoint.pod, endpoint.addresses) for endpoint in service.endpoints)
        return _unique(pod for pod in found if pod is not None)

    def _api_server(self, service: Optional[Workload], nodes: Sequence[Workload]) -> Optional[ApiServer]:
        if service is None:
            return None
        addresses: set[str] = set()
        targets: set[Optional[int]] = set()
        ports = [port for port in service.service_ports if port.protocol == "tcp"]
        for endpoint in service.endpoints:
            addresses.update(endpoint.addresses)
            targets.update(resolve_target_port(port, endpoint, None) for port in ports)
        if not addresses or not _ports(targets):
            self._warn(
                f"service {service.key} of cluster {service.cluster} has no endpoints; no cluster allowance toward the API server",
                "api_server_without_endpoints",
            )
            return None
        by_address = {address: node for node in nodes for address in node.addresses}
        api_nodes = _unique(by_address[address] for address in addresses if address in by_address)
        return ApiServer(
            service=service,
            endpoint_addresses=_addresses(addresses),
            target_ports=_ports(targets),
            service_ports=_ports(port.port for port in ports),
            nodes=api_nodes,
            external=_addresses(address for address in addresses if address not in by_address),
        )

    def _add(  # noqa: PLR0917 - a flow is these nine facts, named at every call in the same order
        self,
        cluster: Optional[str],
        what: str,
        protocol: str,
        ports: tuple[PortRange, ...],
        sources: Iterable[Workload],
        source_addresses: Optional[Iterable[str]],
        destinations: Iterable[Workload],
        destination_addresses: Iterable[str],
        ingress_ports: Optional[tuple[PortRange, ...]] = None,
        allowance: str = "cluster",
    ) -> None:
        self.flows.append(
            ClusterFlow(
                cluster=cluster,
                what=what,
                protocol=protocol,
                egress_ports=ports,
                ingress_ports=ports if ingress_ports is None else ingress_ports,
                sources=_unique(sources),
                source_addresses=None if source_addresses is None else _addresses(source_addresses),
                destinations=_unique(destinations),
                destination_addresses=_addresses(destination_addresses),
                allowance=allowance,
            )
        )

    # -- the flows -------------------------------------------------------------------

    def _api_flows(
        self, cluster: Optional[str], api: ApiServer, nodes: Sequence[Workload], dns_pods: Sequence[Workload], api_pods: Sequence[Workload]
    ) -> None:
        node_addresses = [address for node in nodes for address in node.addresses]
        self._add(cluster, "nodes to API server", "tcp", api.target_ports, nodes, node_addresses, api.nodes, api.endpoint_addresses)
        # The API server dials kubelets from its node's address (or from wherever an external
        # API server's endpoint lives).
        api_addresses = [*(address for node in api.nodes for address in node.addresses), *api.external]
        self._add(cluster, "API server to kubelets", "tcp", _ports([KUBELET_PORT]), api.nodes, api_addresses, nodes, node_addresses)
        # A pod dials the ClusterIP on the service port; kube-proxy rewrites it on the node, so the
        # pod's egress needs both forms while the API server node receives the target port from
        # the pod's own address (no SNAT toward a node-address endpoint).
        service_side = (*api.service_ports, *api.target_ports)
        to_api = [*api.service.addresses, *api.endpoint_addresses]
        # A DNS pod that api_access also selects gets its access once, under the DNS origin.
        api_only = [pod for pod in api_pods if pod not in dns_pods]
        for what, pods in (("DNS pods to API server", dns_pods), ("pods to API server", api_only)):
            if pods:
                pod_addresses = [address for pod in pods for address in pod.addresses]
                ports = _ports(port.first for port in service_side)
                self._add(cluster, what, "tcp", ports, pods, pod_addresses, api.nodes, to_api, api.target_ports)

    def _controller_flow(self, cluster: Optional[str], api: ApiServer) -> None:
        # Never lock out: the controller's inventory reads this API. Without management addresses
        # it is open to every address, as the SSH allowance is.
        management = self.options.management_addresses or None
        self._add(
            cluster, "controller to API server", "tcp", api.target_ports, (), management, api.nodes, api.endpoint_addresses,
            allowance="management_ssh",
        )

    def _etcd(self, cluster: Optional[str], nodes: Sequence[Workload]) -> None:
        control_plane = [node for node in nodes if any(label in node.labels for label in CONTROL_PLANE_LABELS)]
        if len(control_plane) < 2:
            return  # one etcd member talks to itself over loopback; nothing crosses a node boundary
        addresses = [address for node in control_plane for address in node.addresses]
        self._add(cluster, "etcd between control-plane nodes", "tcp", (ETCD_PORTS,), control_plane, addresses, control_plane, addresses)

    def detect_overlays(self, nodes: Sequence[Workload], pods: Sequence[Workload]) -> dict[str, list[Workload]]:
        """Overlay name -> the nodes showing it (``options.overlay`` replaces detection)."""
        stated = self.options.overlay
        if stated != ("auto",):
            return {} if stated == ("none",) else {name: list(nodes) for name in stated}
        found: dict[str, list[Workload]] = {}
        for node in nodes:
            backend = node.annotations.get(FLANNEL_BACKEND)
            if backend is not None:
                name = FLANNEL_BACKENDS.get(backend.strip().lower())
                if name is None:
                    self._warn(f"node {node.name}: flannel backend {backend[:40]!r} is not known; state options.overlay", "overlay_unknown")
                else:
                    found.setdefault(name, []).append(node)
            for annotation, name in CALICO_EVIDENCE:
                if node.annotations.get(annotation) and node not in found.get(name, ()):
                    found.setdefault(name, []).append(node)
        namespace, key, value = CILIUM_AGENT
        by_name = {node.name: node for node in nodes}
        for pod in pods:
            if pod.namespace == namespace and pod.labels.get(key) == value and pod.node in by_name:
                node = by_name[pod.node]
                if node not in found.get("cilium-vxlan", ()):
                    found.setdefault("cilium-vxlan", []).append(node)
        return found

    @staticmethod
    def _overlay_addresses(node: Workload) -> list[str]:
        """The addresses a node encapsulates from: its InternalIPs and what its CNI publishes."""
        extra = (node.annotations.get(key) for key in (*FLANNEL_ADDRESSES, *CALICO_ADDRESSES))
        return [*node.addresses, *(address for address in (_annotation_address(text) for text in extra if text) if address)]

    def _overlay(self, cluster: Optional[str], nodes: Sequence[Workload], pods: Sequence[Workload]) -> None:
        overlays = self.detect_overlays(nodes, pods)
        if not overlays and self.options.overlay == ("auto",) and len(nodes) > 1:
            self._warn(
                f"cluster {cluster}: no overlay shows (no flannel or Calico node annotation, no Cilium agent pod); "
                "no node-to-node overlay traffic is allowed; state options.overlay (none for routed pod networks)",
                "overlay_not_found",
            )
        for name, members in sorted(overlays.items()):
            addresses = [address for node in members for address in self._overlay_addresses(node)]
            has_v6 = any(":" in address for address in addresses)
            for protocol, port, family in OVERLAYS[name]:
                if family == 6 and not has_v6:
                    continue
                self._add(cluster, f"overlay {name}", protocol, _ports([port]), members, addresses, members, addresses)
            if name.startswith("calico"):
                self._typha(cluster, members, pods)

    def _typha(self, cluster: Optional[str], calico_nodes: Sequence[Workload], pods: Sequence[Workload]) -> None:
        key, value = CALICO_TYPHA
        typha = [pod for pod in pods if pod.labels.get(key) == value]
        if not typha or any(flow.what == "calico nodes to typha" and flow.cluster == cluster for flow in self.flows):
            return
        # Typha runs in the host network: its address is its node's, and that node enforces for it.
        typha_nodes = [node for node in calico_nodes for pod in typha if pod.node == node.name]
        addresses = [address for node in calico_nodes for address in node.addresses]
        typha_addresses = [address for pod in typha for address in pod.addresses]
        self._add(cluster, "calico nodes to typha", "tcp", _ports([TYPHA_PORT]), calico_nodes, addresses, typha_nodes, typha_addresses)

    def _upstream_dns(
        self, cluster: Optional[str], dns_pods: Sequence[Workload], nodes: Sequence[Workload], workloads: Sequence[Workload]
    ) -> None:
        upstream = self.options.upstream_dns
        networks = [ipaddress.ip_network(item, strict=False) for item in upstream]
        resolvers = [
            workload
            for workload in workloads
            if workload.kind in ("vm", "node", "pod")
            and any(ipaddress.ip_address(address) in network for address in workload.addresses for network in networks)
        ]
        # Leaving the cluster, pod traffic is usually masqueraded to its node's address (flannel's
        # ip-masq, Calico's natOutgoing): a resolver sees the DNS pod or the node it runs on.
        on_nodes = {pod.node for pod in dns_pods}
        seen = [
            *(address for pod in dns_pods for address in pod.addresses),
            *(address for node in nodes if node.name in on_nodes for address in node.addresses),
        ]
        for protocol in ("udp", "tcp"):
            self._add(cluster, "DNS pods to upstream DNS", protocol, _ports([DNS_PORT]), dns_pods, seen, resolvers, upstream)


__all__ = ["ClusterFlow", "ClusterFlows"]
