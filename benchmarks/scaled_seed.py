# SPDX-License-Identifier: GPL-3.0-or-later
"""The seed scenario scaled to many pods, shared by the lab benchmarks (enforce, audit).

The seed's shape: frontends behind a NodePort service, databases behind a ClusterIP service
whose target port is named, an HAProxy VM outside the cluster that may reach the frontends'
service, an outsider VM that may reach nothing, and the policy that says so. ``pods`` pods
alternate frontend (even index) and database (odd index) and are spread round-robin over
3 nodes, each node's pods numbered up from .10 of its pod CIDR.

Each benchmark keeps its own names (``Naming``) and extra VMs so that its figures stay
comparable with the ones measured before this module existed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

NODES = ("k8s-node1", "k8s-node2", "k8s-node3")
HAPROXY = ("haproxy", "172.18.221.1", "loadbalancer")
OUTSIDER = ("outsider", "172.18.221.99", "outsider")
NODE_PORT = 30358


@dataclasses.dataclass(frozen=True)
class Naming:
    """How the scaled workloads are called: the Kubernetes namespace, the ``app`` label, the pods' name
    prefixes and the two services' names."""

    namespace: str = "wordpress"
    app: str = "wordpress"
    frontend_pod: str = "wordpress"
    database_pod: str = "wordpress-mysql"
    frontend_service: str = "wordpress"
    database_service: str = "wordpress-mysql"


def scaled_seed(pods: int, naming: Naming = Naming(), extra_vms: tuple[tuple[str, str, str], ...] = ()) -> dict[str, Any]:
    """A lab scenario (topology and policy) with ``pods`` pods on 3 nodes, the HAProxy and outsider VMs and
    ``extra_vms`` (name, address, role label)."""
    nodes = [
        {"name": name, "address": f"172.18.221.{11 + index}", "pod_cidr": f"10.244.{index + 1}.0/24"} for index, name in enumerate(NODES)
    ]
    pod_list = []
    for index in range(pods):
        frontend = index % 2 == 0
        node = index % len(NODES)
        pod_list.append(
            {
                "name": f"{naming.frontend_pod if frontend else naming.database_pod}-{index:03d}",
                "namespace": naming.namespace,
                "node": NODES[node],
                "ip": f"10.244.{node + 1}.{10 + index // len(NODES)}",
                "labels": {"app": naming.app, "tier": "frontend" if frontend else "mysql"},
                "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP"} if frontend else {"name": "mysql", "port": 3306, "protocol": "TCP"}
                ],
            }
        )
    vms = [
        {"name": name, "address": address, "labels": {"role": role}, "ports": [{"port": 80}]}
        for name, address, role in (HAPROXY, OUTSIDER, *extra_vms)
    ]
    return {
        "topology": {
            "cluster": {"name": "lab", "service_cidr": "172.18.192.0/20", "cluster_cidr": "10.244.0.0/16"},
            "underlay": {"cidr": "172.18.221.0/24", "controller": "172.18.221.254"},
            "nodes": nodes,
            "pods": pod_list,
            "services": [
                {
                    "name": naming.frontend_service,
                    "namespace": naming.namespace,
                    "type": "NodePort",
                    "cluster_ip": "172.18.202.253",
                    "selector": {"app": naming.app, "tier": "frontend"},
                    "external_traffic_policy": "Cluster",
                    "ports": [{"name": "http", "port": 80, "target_port": 80, "node_port": NODE_PORT, "protocol": "TCP"}],
                },
                {
                    "name": naming.database_service,
                    "namespace": naming.namespace,
                    "type": "ClusterIP",
                    "cluster_ip": "172.18.195.37",
                    "selector": {"app": naming.app, "tier": "mysql"},
                    "ports": [{"name": "mysql", "port": 3306, "target_port": "mysql", "protocol": "TCP"}],
                },
            ],
            "vms": vms,
        },
        "policy": {
            "filters": {
                "frontend": "label.tier = frontend",
                "db": "label.tier = mysql",
                naming.frontend_service: f"service_name = {naming.frontend_service} and namespace = {naming.namespace}",
                "haproxy": f"address = {HAPROXY[1]}",
            },
            "policies": {
                "absolute": [],
                "default": [
                    {"consumer": "haproxy", "provider": naming.frontend_service, "ports": ["tcp/80"]},
                    {"consumer": "frontend", "provider": "db", "ports": ["tcp/3306"]},
                ],
                "catch_all": "deny",
            },
        },
    }
