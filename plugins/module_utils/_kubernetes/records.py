# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Kubernetes objects (plain JSON dicts) -> ``workload`` records (docs/contracts.md section 1).

Everything read from the cluster is untrusted: values are copied as data (strings, ints,
lists, dicts of strings), never interpreted. Missing or mistyped fields degrade to empty
values instead of failing, as a real cluster has many optional fields.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Optional

# Annotations where CNIs publish a node's tunnel address (traffic from it reaches pods).
TUNNEL_ANNOTATIONS = (
    "projectcalico.org/IPv4IPIPTunnelAddr",
    "projectcalico.org/IPv4VXLANTunnelAddr",
    "projectcalico.org/IPv6VXLANTunnelAddr",
    "projectcalico.org/IPv4WireguardInterfaceAddr",
)
FLANNEL_BACKEND = "flannel.alpha.coreos.com/backend-type"
FLANNEL_BACKEND_V6_DATA = "flannel.alpha.coreos.com/backend-v6-data"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> dict[str, str]:
    """A labels/annotations map with string keys and values only."""
    return {str(key): str(item) for key, item in _dict(value).items()}


def _protocol(value: Any) -> str:
    return str(value or "TCP").upper()


def base_record(kind: str, obj: Mapping[str, Any], cluster: str) -> dict[str, Any]:
    """The fields every Kubernetes workload carries."""
    metadata = _dict(obj.get("metadata"))
    return {
        "kind": kind,
        "name": str(metadata.get("name") or ""),
        "namespace": str(metadata["namespace"]) if metadata.get("namespace") else None,
        "cluster": cluster,
        "addresses": [],
        "labels": _strings(metadata.get("labels")),
        "annotations": _strings(metadata.get("annotations")),
    }


def pod_ips(pod: Mapping[str, Any]) -> list[str]:
    """A pod's IPs (``status.podIPs``, else ``status.podIP``); empty when it has none yet."""
    status = _dict(pod.get("status"))
    ips = [str(entry["ip"]) for entry in _list(status.get("podIPs")) if isinstance(entry, dict) and entry.get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    return ips


def pod_record(pod: Mapping[str, Any], cluster: str, ips: list[str]) -> dict[str, Any]:
    """A pod's workload record; ``ips`` from ``pod_ips`` (the caller skips pods without one)."""
    record = base_record("pod", pod, cluster)
    spec = _dict(pod.get("spec"))
    status = _dict(pod.get("status"))
    ports = []
    for container in _list(spec.get("containers")):
        for raw_port in _list(_dict(container).get("ports")):
            port = _dict(raw_port)
            if port.get("containerPort") is not None:
                ports.append({"name": port.get("name"), "port": port["containerPort"], "protocol": _protocol(port.get("protocol"))})
    container_ids = [
        str(entry["containerID"])
        for entry in _list(status.get("containerStatuses"))
        if isinstance(entry, dict) and entry.get("containerID")
    ]
    record.update(
        addresses=ips,
        node=str(spec["nodeName"]) if spec.get("nodeName") else None,
        uid=str(_dict(pod.get("metadata")).get("uid") or "") or None,
        phase=status.get("phase"),
        host_network=bool(spec.get("hostNetwork", False)),
        container_ids=container_ids,
        ports=ports,
    )
    return record


def node_internal_ips(node: Mapping[str, Any]) -> list[str]:
    """A node's InternalIP addresses (v4 and v6), in the order the node reports them."""
    return [
        str(entry["address"])
        for entry in _list(_dict(node.get("status")).get("addresses"))
        if isinstance(entry, dict) and entry.get("type") == "InternalIP" and entry.get("address")
    ]


def node_record(node: Mapping[str, Any], cluster: str) -> dict[str, Any]:
    """A node's workload record."""
    record = base_record("node", node, cluster)
    spec = _dict(node.get("spec"))
    cidrs = [str(cidr) for cidr in _list(spec.get("podCIDRs")) if cidr] or ([str(spec["podCIDR"])] if spec.get("podCIDR") else [])
    annotations = record["annotations"]
    record.update(
        addresses=node_internal_ips(node),
        pod_cidrs=cidrs,
        tunnel_addresses=[annotations[key].split("/")[0] for key in TUNNEL_ANNOTATIONS if annotations.get(key)]
        + flannel_tunnel_addresses(annotations, cidrs),
    )
    return record


def flannel_tunnel_addresses(annotations: Mapping[str, Any], pod_cidrs: Sequence[str]) -> list[str]:
    """flannel's VXLAN device addresses on a node: its pod CIDRs' network addresses.

    flannel gives ``flannel.1`` the IPv4 pod CIDR's network address (/32) and, on a dual-stack
    node (``backend-v6-data`` present), ``flannel-v6.1`` the IPv6 pod CIDR's (/128). Traffic the
    node sends into the overlay (to a pod on another node, or a NodePort it masquerades there)
    leaves with these addresses, so pods see them as node addresses. flannel publishes no
    annotation holding them.
    """
    if annotations.get(FLANNEL_BACKEND) != "vxlan":
        return []
    dual_stack = bool(annotations.get(FLANNEL_BACKEND_V6_DATA))
    addresses = []
    for cidr in pod_cidrs:
        try:
            network = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            continue  # the node record's own validation reports a bad pod CIDR
        if network.version == 4 or dual_stack:
            addresses.append(str(network.network_address))
    return addresses


def service_ports(service: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Service ports: ``target_port`` defaults to ``port`` as Kubernetes does; ``node_port`` may be null."""
    ports = []
    for raw_port in _list(_dict(service.get("spec")).get("ports")):
        port = _dict(raw_port)
        if port.get("port") is None:
            continue
        target = port.get("targetPort")
        ports.append(
            {
                "name": port.get("name"),
                "port": port["port"],
                "target_port": port["port"] if target in (None, "", 0) else target,
                "node_port": port.get("nodePort"),
                "protocol": _protocol(port.get("protocol")),
            }
        )
    return ports


def endpoints_from_slices(slices: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per endpoint address group of the service's EndpointSlices."""
    endpoints = []
    for endpoint_slice in slices:
        slice_ports = [
            {"name": port.get("name"), "port": port.get("port"), "protocol": _protocol(port.get("protocol"))}
            for port in (_dict(item) for item in _list(endpoint_slice.get("ports")))
        ]
        for endpoint in (_dict(item) for item in _list(endpoint_slice.get("endpoints"))):
            target = _dict(endpoint.get("targetRef"))
            pod = None
            if target.get("kind", "Pod") == "Pod" and target.get("name"):
                pod = f"{target.get('namespace') or _dict(endpoint_slice.get('metadata')).get('namespace')}/{target['name']}"
            ready = _dict(endpoint.get("conditions")).get("ready")
            endpoints.append(
                {
                    "addresses": [str(address) for address in _list(endpoint.get("addresses"))],
                    "node": endpoint.get("nodeName"),
                    "pod": pod,
                    # Kubernetes: a nil ready condition is to be read as ready.
                    "ready": True if ready is None else bool(ready),
                    "ports": slice_ports,
                }
            )
    return endpoints


def _health_check_port(value: Any) -> Optional[int]:
    """``spec.healthCheckNodePort`` as a port number, or None when absent or not a port."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 65536 else None


def service_record(service: Mapping[str, Any], cluster: str, slices: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A service's workload record, its endpoints from its EndpointSlices."""
    record = base_record("service", service, cluster)
    spec = _dict(service.get("spec"))
    service_type = str(spec.get("type") or "ClusterIP")
    cluster_ips = [str(ip) for ip in _list(spec.get("clusterIPs")) if ip and ip != "None"]
    if not cluster_ips and spec.get("clusterIP") and spec.get("clusterIP") != "None":
        cluster_ips = [str(spec["clusterIP"])]
    ingress = _list(_dict(_dict(service.get("status")).get("loadBalancer")).get("ingress"))
    policy: Optional[str] = spec.get("externalTrafficPolicy")
    if policy is None and service_type in ("NodePort", "LoadBalancer"):
        policy = "Cluster"
    record.update(
        addresses=cluster_ips,
        type=service_type,
        cluster_ips=cluster_ips,
        external_ips=[str(ip) for ip in _list(spec.get("externalIPs"))],
        load_balancer_ingress=[str(entry["ip"]) for entry in ingress if isinstance(entry, dict) and entry.get("ip")],
        external_traffic_policy=policy,
        selector=_strings(spec.get("selector")),
        ports=service_ports(service),
        endpoints=endpoints_from_slices(slices),
    )
    health_check = _health_check_port(spec.get("healthCheckNodePort"))
    if health_check is not None:
        # kube-proxy answers the load balancer's health checks there (LoadBalancer with Local only).
        record["health_check_node_port"] = health_check
    if service_type == "ExternalName":
        record["external_name"] = spec.get("externalName")
    return record
