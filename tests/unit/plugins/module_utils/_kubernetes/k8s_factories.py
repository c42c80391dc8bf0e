# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Kubernetes manifests for tests and benchmarks: the seed's cluster and synthetic clusters of any size."""

from __future__ import annotations

import uuid
from typing import Any

Manifest = dict[str, Any]


def namespace(name: str, labels: dict[str, str] | None = None) -> Manifest:
    """A Namespace."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def node(name: str, address: str, pod_cidr: str, labels: dict[str, str] | None = None,
         annotations: dict[str, str] | None = None) -> Manifest:
    """A Node with one InternalIP and one pod CIDR."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}, "annotations": annotations or {}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}]},
    }


def pod(name: str, ns: str, node_name: str | None, ip: str | None, labels: dict[str, str] | None = None, *, phase: str = "Running",
        ports: list[dict[str, Any]] | None = None, uid: str | None = None, host_ip: str | None = None) -> Manifest:
    """A Pod with one container; ``ip=None`` leaves it without an address."""
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status.update(podIP=ip, podIPs=[{"ip": ip}])
    if host_ip:
        status["hostIP"] = host_ip
    status["containerStatuses"] = [{"name": "main", "containerID": f"containerd://{name[:20]}-0001", "ready": True, "restartCount": 0,
                                    "image": "busybox:1.36", "imageID": "docker.io/library/busybox@sha256:00", "started": True,
                                    "state": {"running": {"startedAt": "2026-11-27T00:00:00Z"}}}]
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox", "ports": ports or []}]}
    if node_name:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {},
                     "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ns}/{name}"))},
        "spec": spec,
        "status": status,
    }


def service(name: str, ns: str, selector: dict[str, str], ports: list[dict[str, Any]], *, service_type: str = "ClusterIP",
            cluster_ip: str = "10.96.0.10", labels: dict[str, str] | None = None) -> Manifest:
    """A Service, with the empty ``status.loadBalancer`` an API server reports for every service (old clients read it)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"type": service_type, "selector": selector, "ports": ports, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip]},
        "status": {"loadBalancer": {}},
    }


def endpoint_slice(service_name: str, ns: str, endpoints: list[dict[str, Any]], ports: list[dict[str, Any]],
                   suffix: str = "abcde") -> Manifest:
    """An EndpointSlice of a service."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{service_name}-{suffix}", "namespace": ns, "labels": {"kubernetes.io/service-name": service_name}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


SEED_NODES = {"k8s-master": "172.18.221.10", "k8s-node1": "172.18.221.11", "k8s-node2": "172.18.221.12", "k8s-node3": "172.18.221.13"}


def seed() -> list[Manifest]:
    """The seed's cluster: four nodes, the wordpress pod and service, the mysql pod."""
    objects: list[Manifest] = [namespace("wordpress"), namespace("default")]
    for index, (name, address) in enumerate(SEED_NODES.items()):
        objects.append(node(name, address, f"10.244.{index}.0/24"))
    objects.append(pod("wordpress-6dfdd9f64f-d75j2", "wordpress", "k8s-node1", "10.244.1.94", {"app": "wordpress", "tier": "frontend"},
                       ports=[{"name": "http", "containerPort": 80, "protocol": "TCP"}], uid="5f0c6f3e-1111-4c5e-9a51-0d2b8d0a0001"))
    objects.append(pod("wordpress-mysql-5b58bbd695-gxtc4", "wordpress", "k8s-node3", "10.244.3.18", {"app": "wordpress", "tier": "mysql"},
                       ports=[{"name": "mysql", "containerPort": 3306, "protocol": "TCP"}], uid="5f0c6f3e-2222-4c5e-9a51-0d2b8d0a0002"))
    objects.append(service("wordpress", "wordpress", {"app": "wordpress", "tier": "frontend"},
                           [{"name": "http", "port": 80, "targetPort": 80, "nodePort": 30358, "protocol": "TCP"}],
                           service_type="NodePort", cluster_ip="172.18.202.253", labels={"app": "wordpress"}))
    objects.append(endpoint_slice("wordpress", "wordpress", [
        {"addresses": ["10.244.1.94"], "conditions": {"ready": True}, "nodeName": "k8s-node1",
         "targetRef": {"kind": "Pod", "namespace": "wordpress", "name": "wordpress-6dfdd9f64f-d75j2"}},
    ], [{"name": "http", "port": 80, "protocol": "TCP"}]))
    return objects


def synthetic(pods: int, *, nodes: int = 50, namespaces: int = 20, services_ratio: float = 0.2) -> list[Manifest]:
    """A cluster of ``pods`` running pods over ``nodes`` nodes and ``namespaces`` namespaces, services = pods x ratio."""
    objects: list[Manifest] = [namespace(f"ns-{index:02d}") for index in range(namespaces)]
    for index in range(nodes):
        objects.append(node(f"node-{index:03d}", f"10.0.{index // 250}.{index % 250 + 1}", f"10.{100 + index // 250}.{index % 250}.0/24"))
    service_count = int(pods * services_ratio)
    for index in range(pods):
        ns = f"ns-{index % namespaces:02d}"
        app = f"app-{index % max(service_count, 1):05d}"
        node_index = index % nodes
        objects.append(pod(f"pod-{index:06d}-{uuid.uuid5(uuid.NAMESPACE_DNS, str(index)).hex[:5]}", ns, f"node-{node_index:03d}",
                           f"10.{100 + node_index // 250}.{node_index % 250}.{index // nodes % 250 + 2}", {"app": app, "tier": "web"},
                           ports=[{"name": "http", "containerPort": 8080, "protocol": "TCP"}]))
    for index in range(service_count):
        ns = f"ns-{index % namespaces:02d}"
        objects.append(service(f"svc-{index:05d}", ns, {"app": f"app-{index:05d}"},
                               [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
                               cluster_ip=f"10.96.{index // 250}.{index % 250 + 1}"))
        objects.append(endpoint_slice(f"svc-{index:05d}", ns, [], [{"name": "http", "port": 8080, "protocol": "TCP"}]))
    return objects


def owned_by(manifest: Manifest, kind: str, name: str, *, uid: str | None = None, api_version: str = "apps/v1") -> Manifest:
    """The manifest with a controller owner reference (``uid`` derived from kind and name unless given)."""
    metadata = manifest["metadata"]
    metadata["ownerReferences"] = [{"apiVersion": api_version, "kind": kind, "name": name, "controller": True, "blockOwnerDeletion": True,
                                    "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{metadata.get('namespace')}/{kind}/{name}"))}]
    return manifest


def vulnerability_report(ns: str, kind: str, name: str, container: str, *, critical: int = 0, high: int = 0, medium: int = 0,
                         low: int = 0, unknown: int = 0, ids: tuple[str, ...] = (), owner_uid: str | None = None) -> Manifest:
    """A trivy-operator VulnerabilityReport for one workload's container, as the operator names, labels and owns it."""
    severities = ["CRITICAL"] * critical + ["HIGH"] * high + ["MEDIUM"] * medium + ["LOW"] * low + ["UNKNOWN"] * unknown
    report_name = f"{kind.lower()}-{name}-{container}"
    manifest: Manifest = {
        "apiVersion": "aquasecurity.github.io/v1alpha1",
        "kind": "VulnerabilityReport",
        "metadata": {"name": report_name, "namespace": ns, "labels": {
            "trivy-operator.resource.kind": kind, "trivy-operator.resource.name": name, "trivy-operator.resource.namespace": ns,
            "trivy-operator.container.name": container}},
        "report": {
            "artifact": {"repository": "library/app", "tag": "1"},
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.57.0"},
            "summary": {"criticalCount": critical, "highCount": high, "mediumCount": medium, "lowCount": low, "unknownCount": unknown},
            "vulnerabilities": [{"vulnerabilityID": vid, "severity": severity, "score": 9.8, "resource": "openssl"}
                                for vid, severity in zip(ids, severities, strict=False)],
        },
    }
    return owned_by(manifest, kind, name, uid=owner_uid, api_version="v1" if kind == "Pod" else "apps/v1")
