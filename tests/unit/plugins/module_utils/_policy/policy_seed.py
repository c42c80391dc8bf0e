# SPDX-License-Identifier: GPL-3.0-or-later
"""The seed lab as hostvars, in exactly the shape of docs/contracts.md section 1.

The inventory plugin produces these records; the tests build them by hand so the
compiler is tested against the contract, not against another component.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Optional

NODES = {
    "k8s-master": ("172.18.221.10", "10.244.0.0/24"),
    "k8s-node1": ("172.18.221.11", "10.244.1.0/24"),
    "k8s-node2": ("172.18.221.12", "10.244.2.0/24"),
    "k8s-node3": ("172.18.221.13", "10.244.3.0/24"),
}
WORDPRESS_POD = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"
MYSQL_POD = "wordpress-mysql-5b58bbd695-gxtc4.wordpress.pod.lab"
WORDPRESS_SERVICE = "wordpress.wordpress.service.lab"

SEED_POLICY: dict[str, Any] = {
    "filters": {
        "frontend": "pod_name = wordpress-6dfdd9f64f-d75j2",
        "db": "pod_name contains wordpress-mysql",
        "wordpress": "service_name = wordpress and namespace = wordpress",
        "haproxy": "address = 172.18.221.1",
    },
    "policies": {
        "absolute": [],
        "default": [
            {"consumer": "haproxy", "provider": "wordpress", "ports": ["tcp/80"]},
            {"consumer": "frontend", "provider": "db", "ports": ["tcp/3306"]},
        ],
        "catch_all": "deny",
    },
}


def _node(name: str) -> dict[str, Any]:
    address, pod_cidr = NODES[name]
    return {
        "ansible_host": address,
        "group_names": ["k8s_nodes"],
        "workload": {
            "kind": "node",
            "name": name,
            "namespace": None,
            "cluster": "lab",
            "addresses": [address],
            "labels": {"kubernetes.io/hostname": name},
            # flannel's VXLAN backend, as the lab's default overlay and a flannel node show it
            "annotations": {"flannel.alpha.coreos.com/backend-type": "vxlan", "flannel.alpha.coreos.com/public-ip": address},
            "pod_cidrs": [pod_cidr],
            "tunnel_addresses": [],
        },
    }


def _pod(name: str, node: str, address: str, *, labels: dict[str, str], port: tuple[str, int], uid: str) -> dict[str, Any]:
    container_id = f"containerd://{uid.replace('-', '')}"
    return {
        "ansible_host": NODES[node][0],
        "group_names": ["k8s_pods", "namespace_wordpress"],
        "zt_enforce_host": node,
        "zt_pod": {"namespace": "wordpress", "name": name, "uid": uid, "ips": [address], "container_ids": [container_id], "node": node},
        "workload": {
            "kind": "pod",
            "name": name,
            "namespace": "wordpress",
            "cluster": "lab",
            "addresses": [address],
            "labels": labels,
            "annotations": {},
            "node": node,
            "uid": uid,
            "phase": "Running",
            "host_network": False,
            "container_ids": [container_id],
            "ports": [{"name": port[0], "port": port[1], "protocol": "TCP"}],
        },
    }


def seed_hostvars() -> dict[str, dict[str, Any]]:
    """A fresh copy of the seed inventory's hostvars."""
    hostvars: dict[str, dict[str, Any]] = {name: _node(name) for name in NODES}
    hostvars[WORDPRESS_POD] = _pod(
        "wordpress-6dfdd9f64f-d75j2",
        "k8s-node1",
        "10.244.1.94",
        labels={"app": "wordpress", "tier": "frontend"},
        port=("http", 80),
        uid="5f0c1d2e-0000-4000-8000-000000000001",
    )
    hostvars[MYSQL_POD] = _pod(
        "wordpress-mysql-5b58bbd695-gxtc4",
        "k8s-node3",
        "10.244.3.18",
        labels={"app": "wordpress", "tier": "mysql"},
        port=("mysql", 3306),
        uid="5f0c1d2e-0000-4000-8000-000000000002",
    )
    hostvars[WORDPRESS_SERVICE] = {
        "ansible_host": "172.18.202.253",
        "group_names": ["k8s_services", "namespace_wordpress"],
        "workload": {
            "kind": "service",
            "name": "wordpress",
            "namespace": "wordpress",
            "cluster": "lab",
            "addresses": ["172.18.202.253"],
            "labels": {"app": "wordpress"},
            "annotations": {},
            "type": "NodePort",
            "cluster_ips": ["172.18.202.253"],
            "external_ips": [],
            "load_balancer_ingress": [],
            "external_traffic_policy": "Cluster",
            "selector": {"app": "wordpress", "tier": "frontend"},
            "ports": [{"name": "http", "port": 80, "target_port": 80, "node_port": 30358, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": ["10.244.1.94"],
                    "node": "k8s-node1",
                    "pod": "wordpress/wordpress-6dfdd9f64f-d75j2",
                    "ready": True,
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                }
            ],
        },
    }
    hostvars["haproxy"] = {"ansible_host": "172.18.221.1", "group_names": ["vms", "loadbalancers"]}
    hostvars["outsider"] = {"ansible_host": "172.18.221.99", "group_names": ["vms"]}
    hostvars["localhost"] = {"ansible_connection": "local", "group_names": []}
    return copy.deepcopy(hostvars)


def seed_policy() -> dict[str, Any]:
    """A fresh copy of the seed policy."""
    return copy.deepcopy(SEED_POLICY)


def add_dns(hostvars: dict[str, Any]) -> None:
    """Add a kube-dns service (UDP 53, TCP 53 -> named target port 1053) to the seed."""
    hostvars["kube-dns.kube-system.service.lab"] = {
        "workload": {
            "kind": "service",
            "name": "kube-dns",
            "namespace": "kube-system",
            "cluster": "lab",
            "addresses": ["10.96.0.10"],
            "type": "ClusterIP",
            "ports": [
                {"name": "dns", "port": 53, "target_port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "target_port": "dns-tcp", "protocol": "TCP"},
            ],
            "endpoints": [
                {
                    "addresses": ["10.244.0.5"],
                    "node": "k8s-master",
                    "pod": "kube-system/coredns-1",
                    "ready": True,
                    "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 1053, "protocol": "TCP"}],
                }
            ],
        }
    }


API_SERVICE = "kubernetes.default.service.lab"
DNS_POD = "coredns-7c65d6cfc9-zt5lb.kube-system.pod.lab"
DNS_SERVICE = "kube-dns.kube-system.service.lab"
UPSTREAM_DNS = "172.18.221.53"


def add_control_plane(hostvars: dict[str, Any]) -> None:
    """What the lab adds with its control plane, shaped as the inventory plugin reports it.

    k8s-master is labelled control-plane and serves the API on 172.18.221.10:6443 behind
    ``default/kubernetes`` (ClusterIP 172.18.192.1:443, an EndpointSlice endpoint without a
    pod targetRef); a CoreDNS pod on k8s-master behind ``kube-system/kube-dns``; the
    upstream resolver VM ``upstream-dns``.
    """
    hostvars["k8s-master"]["workload"]["labels"]["node-role.kubernetes.io/control-plane"] = ""
    hostvars[API_SERVICE] = {
        "ansible_host": "172.18.192.1",
        "group_names": ["k8s_services", "namespace_default"],
        "workload": {
            "kind": "service",
            "name": "kubernetes",
            "namespace": "default",
            "cluster": "lab",
            "addresses": ["172.18.192.1"],
            "labels": {"component": "apiserver", "provider": "kubernetes"},
            "annotations": {},
            "type": "ClusterIP",
            "cluster_ips": ["172.18.192.1"],
            "external_ips": [],
            "load_balancer_ingress": [],
            "external_traffic_policy": None,
            "selector": {},
            "ports": [{"name": "https", "port": 443, "target_port": 6443, "node_port": None, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": ["172.18.221.10"],
                    "node": "k8s-master",
                    "pod": None,
                    "ready": True,
                    "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
                }
            ],
        },
    }
    hostvars[DNS_POD] = {
        "ansible_host": "172.18.221.10",
        "group_names": ["k8s_pods", "namespace_kube_system"],
        "zt_enforce_host": "k8s-master",
        "workload": {
            "kind": "pod",
            "name": "coredns-7c65d6cfc9-zt5lb",
            "namespace": "kube-system",
            "cluster": "lab",
            "addresses": ["10.244.0.53"],
            "labels": {"k8s-app": "kube-dns", "pod-template-hash": "7c65d6cfc9"},
            "annotations": {},
            "node": "k8s-master",
            "uid": "5f0c1d2e-0000-4000-8000-000000000053",
            "phase": "Running",
            "host_network": False,
            "container_ids": ["containerd://5f0c1d2e000040008000000000000053"],
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
        },
    }
    hostvars[DNS_SERVICE] = {
        "ansible_host": "172.18.192.10",
        "group_names": ["k8s_services", "namespace_kube_system"],
        "workload": {
            "kind": "service",
            "name": "kube-dns",
            "namespace": "kube-system",
            "cluster": "lab",
            "addresses": ["172.18.192.10"],
            "labels": {"k8s-app": "kube-dns"},
            "annotations": {},
            "type": "ClusterIP",
            "ports": [
                {"name": "dns", "port": 53, "target_port": "dns", "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "target_port": "dns-tcp", "protocol": "TCP"},
            ],
            "endpoints": [
                {
                    "addresses": ["10.244.0.53"],
                    "node": "k8s-master",
                    "pod": "kube-system/coredns-7c65d6cfc9-zt5lb",
                    "ready": True,
                    "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
                }
            ],
        },
    }
    hostvars["upstream-dns"] = {"ansible_host": UPSTREAM_DNS, "group_names": ["vms"], "zt_labels": {"role": "upstream-dns"}}


def compile_inline(policy: Any, hostvars: Mapping[str, Any], options: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """``compile_policy``'s plan with each ruleset's set members inline (``rules.inline_sets``), as these tests read rules.

    The plan's shared form itself (one ``sets`` per host) is tested in test_policy_rules.py. Imported here, not at the
    top: the audit tests' conftest imports this module before Ansible's collection finder is installed, and an
    ``ansible_collections`` package imported without it cannot be found by it afterwards.
    """
    from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy  # noqa: PLC0415
    from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.rules import inline_sets  # noqa: PLC0415

    return inline_sets(compile_policy(policy, hostvars, options))
