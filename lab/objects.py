# SPDX-License-Identifier: GPL-3.0-or-later
"""Scenario -> the Kubernetes objects the emulated API serves.

Namespaces, Nodes (InternalIP, podCIDR(s), kubernetes.io/hostname), Pods (deterministic uid,
nodeName, container ports, Running with podIP(s)/hostIP), Services (clusterIP(s), ports with
nodePort/targetPort, type, externalTrafficPolicy, selector) and one discovery.k8s.io/v1
EndpointSlice per service and distinct set of resolved target ports, as the endpoint slice
controller writes them. Everything is deterministic, so a second ``lab up`` serves the same objects.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from lab import vulns
from lab.scenario import Node, Pod, Scenario, Service, resolve_target_port, static_target_port

CREATED = "2026-01-01T00:00:00Z"
_UID_NAMESPACE = uuid.UUID("6f1c1a52-3d1e-4d8e-9a53-7a1b2c3d4e5f")


def object_uid(cluster: str, kind: str, namespace: str | None, name: str) -> str:
    """A stable UID for an object, derived from its identity."""
    return str(uuid.uuid5(_UID_NAMESPACE, f"{cluster}/{kind}/{namespace or ''}/{name}"))


def container_id(cluster: str, pod: Pod) -> str:
    """A stable containerd-style container ID for the pod's one container."""
    return "containerd://" + hashlib.sha256(f"{cluster}/{pod.key}".encode()).hexdigest()


def _meta(scenario: Scenario, kind: str, name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": object_uid(scenario.cluster.name, kind, namespace, name),
        "resourceVersion": "1",
        "creationTimestamp": CREATED,
        "labels": dict(labels or {}),
    }
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def namespace_manifest(scenario: Scenario, name: str) -> dict[str, Any]:
    """A v1 Namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(scenario, "Namespace", name, labels={"kubernetes.io/metadata.name": name}),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def node_manifest(scenario: Scenario, node: Node) -> dict[str, Any]:
    """A v1 Node with its InternalIP(s) and pod CIDR(s)."""
    labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", **node.labels}
    addresses = [{"type": "InternalIP", "address": str(node.address)}]
    if node.ipv6 is not None:
        addresses.append({"type": "InternalIP", "address": str(node.ipv6)})
    addresses.append({"type": "Hostname", "address": node.name})
    pod_cidrs = [str(node.pod_cidr)] + ([str(node.pod_cidr_v6)] if node.pod_cidr_v6 is not None else [])
    metadata = _meta(scenario, "Node", node.name, labels=labels)
    annotations = overlay_annotations(scenario, node)
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": metadata,
        "spec": {"podCIDR": pod_cidrs[0], "podCIDRs": pod_cidrs},
        "status": {
            "addresses": addresses,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": CREATED}],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": object_uid(scenario.cluster.name, "Boot", None, node.name),
                "containerRuntimeVersion": "containerd://1.7.24",
                "kernelVersion": "6.1.0-lab",
                "kubeProxyVersion": "v1.32.4",
                "kubeletVersion": "v1.32.4",
                "machineID": hashlib.md5(node.name.encode(), usedforsecurity=False).hexdigest(),
                "operatingSystem": "linux",
                "osImage": "zerotrust lab (network namespace)",
                "systemUUID": object_uid(scenario.cluster.name, "System", None, node.name),
            },
        },
    }


def overlay_annotations(scenario: Scenario, node: Node) -> dict[str, str]:
    """The annotations flannel's agent writes on a node: vxlan, or host-gw for the routed overlay (none without a control plane)."""
    if not scenario.cluster.control_plane:
        return {}
    from lab import overlay  # noqa: PLC0415 - keeps `ip`-driving code out of the objects' import path

    mode: overlay.Mode = "vxlan" if scenario.cluster.overlay == "vxlan" else "routed"
    return overlay.flannel_annotations(overlay.nodes_from_scenario([node], lambda _node: "")[0], mode)


def pod_manifest(scenario: Scenario, pod: Pod) -> dict[str, Any]:
    """A v1 Pod, Running on its node with its IP(s)."""
    node = scenario.node(pod.node)
    pod_ips = [str(pod.ip)] + ([str(pod.ipv6)] if pod.ipv6 is not None else [])
    host_ips = [str(node.address)] + ([str(node.ipv6)] if node.ipv6 is not None else [])
    ports = [{"containerPort": port.port, "protocol": port.protocol, **({"name": port.name} if port.name else {})} for port in pod.ports]
    container = pod.name.rsplit("-", 2)[0] if pod.name.count("-") >= 2 else pod.name
    metadata = _meta(scenario, "Pod", pod.name, pod.namespace, dict(pod.labels))
    owner_kind, owner_name = vulns.pod_owner(pod)
    if owner_kind != "Pod":
        # A Deployment-style name: owned by its ReplicaSet, as the report join (docs/vulnerabilities.md) expects.
        metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner_name, "controller": True,
                                        "blockOwnerDeletion": True,
                                        "uid": object_uid(scenario.cluster.name, owner_kind, pod.namespace, owner_name)}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "nodeName": pod.node,
            "containers": [{"name": container, "image": "zerotrust.lab/listener:1", "ports": ports}],
            "restartPolicy": "Always",
        },
        "status": {
            "phase": "Running",
            "hostIP": host_ips[0],
            "hostIPs": [{"ip": address} for address in host_ips],
            "podIP": pod_ips[0],
            "podIPs": [{"ip": address} for address in pod_ips],
            "startTime": CREATED,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": CREATED}],
            "containerStatuses": [
                {
                    "name": container,
                    "image": "zerotrust.lab/listener:1",
                    "imageID": "",
                    "containerID": container_id(scenario.cluster.name, pod),
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": CREATED}},
                }
            ],
        },
    }


def service_manifest(scenario: Scenario, service: Service) -> dict[str, Any]:
    """A v1 Service."""
    ports = []
    for port in service.ports:
        entry: dict[str, Any] = {"port": port.port, "targetPort": port.target_port, "protocol": port.protocol}
        if port.name:
            entry["name"] = port.name
        if port.node_port is not None:
            entry["nodePort"] = port.node_port
        ports.append(entry)
    spec: dict[str, Any] = {
        "type": service.type,
        "clusterIP": str(service.cluster_ip),
        "clusterIPs": [str(service.cluster_ip)],
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "ports": ports,
        "selector": dict(service.selector),
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
    }
    if service.static_endpoints:
        del spec["selector"]  # a selector-less Service, as default/kubernetes is
    if service.type != "ClusterIP":
        spec["externalTrafficPolicy"] = service.external_traffic_policy
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(scenario, "Service", service.name, service.namespace, dict(service.labels)),
        "spec": spec,
        "status": {"loadBalancer": {}},
    }


def static_endpoint_slice(scenario: Scenario, service: Service) -> dict[str, Any]:
    """The EndpointSlice of a selector-less Service, as the API server keeps ``default/kubernetes``'s.

    Named like the Service, labelled ``kubernetes.io/service-name`` and managed by the API
    server's endpoint reconciler (no nodeName, no targetRef: the endpoint is the API server itself).
    """
    labels = {"kubernetes.io/service-name": service.name}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(scenario, "EndpointSlice", service.name, service.namespace, labels),
        "addressType": "IPv4",
        "endpoints": [{"addresses": [str(endpoint.address)], "conditions": {"ready": True}} for endpoint in service.static_endpoints],
        "ports": [
            {"name": port.name or "", "port": static_target_port(port), "protocol": port.protocol}
            for port in service.ports
        ],
    }


def endpoint_slice_manifests(scenario: Scenario, service: Service) -> list[dict[str, Any]]:
    """The service's EndpointSlices: one per distinct set of resolved ports (as the controller splits them)."""
    if service.static_endpoints:
        return [static_endpoint_slice(scenario, service)]
    groups: dict[tuple[tuple[str, int, str], ...], list[Pod]] = {}
    for pod in scenario.service_endpoints(service):
        resolved: list[tuple[str, int, str]] = []
        for port in service.ports:
            number = resolve_target_port(port, pod)
            if number is not None:
                resolved.append((port.name or "", number, port.protocol))
        if resolved:
            groups.setdefault(tuple(resolved), []).append(pod)
    if not groups:
        groups[()] = []  # the controller keeps an empty slice for a service without endpoints
    slices = []
    for port_set, pods in groups.items():
        suffix = hashlib.sha256(repr((service.key, port_set)).encode()).hexdigest()[:5]
        name = f"{service.name}-{suffix}"
        labels = {
            "kubernetes.io/service-name": service.name,
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        }
        meta = _meta(scenario, "EndpointSlice", name, service.namespace, labels)
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "name": service.name,
                "uid": object_uid(scenario.cluster.name, "Service", service.namespace, service.name),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        meta["generateName"] = f"{service.name}-"
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": meta,
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": [str(pod.ip)],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "nodeName": pod.node,
                        "targetRef": {
                            "kind": "Pod",
                            "namespace": pod.namespace,
                            "name": pod.name,
                            "uid": object_uid(scenario.cluster.name, "Pod", pod.namespace, pod.name),
                        },
                    }
                    for pod in pods
                ],
                "ports": [
                    {"port": number, "protocol": protocol, **({"name": name_} if name_ else {"name": ""})}
                    for name_, number, protocol in port_set
                ],
            }
        )
    return slices


def scenario_objects(scenario: Scenario) -> list[dict[str, Any]]:
    """Every object of the scenario, namespaces and nodes first."""
    namespaces = sorted(
        {pod.namespace for pod in scenario.pods} | {service.namespace for service in scenario.services} | {"default", "kube-system"}
    )
    objects = [namespace_manifest(scenario, name) for name in namespaces]
    objects += [node_manifest(scenario, node) for node in scenario.nodes]
    objects += [pod_manifest(scenario, pod) for pod in scenario.pods]
    objects += [service_manifest(scenario, service) for service in scenario.services]
    for service in scenario.services:
        objects += endpoint_slice_manifests(scenario, service)
    objects += vulns.report_manifests(scenario)
    return objects
