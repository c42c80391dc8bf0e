# SPDX-License-Identifier: GPL-3.0-or-later
"""Generate a lab scenario of any size: N nodes, M pods in Deployments behind Services, K VMs.

The shape is a small company's cluster, repeated per namespace: a ``web`` Deployment behind a
NodePort Service (the HAProxy VM's way in), an ``api`` Deployment behind a ClusterIP Service
whose target port is named, a ``db`` and a ``cache`` behind ClusterIP Services. Pods are named
as a ReplicaSet names them (``<deployment>-<template hash>-<5 chars>``), carry ``app``, ``tier``
and ``pod-template-hash`` labels, and are spread over the worker nodes. The control plane
(API server, cluster DNS behind ``kube-system/kube-dns``, the upstream resolver) comes from the
lab itself (``control_plane: true``). The VMs are an HAProxy-like load balancer, an outsider
that may reach nothing, and ``vms - 2`` batch VMs.

The policy has a handful of rules written against labels and services, as a user would:
haproxy -> every web Service on tcp/80, web -> api on tcp/8080, api -> db and cache, batch
VMs -> one namespace's api. Everything else is denied.

``seed`` makes names and the spread of pods reproducible; the same arguments give the same file.

    python -m lab generate --nodes 20 --pods 2000 --vms 5 --seed 1 -o /tmp/scale.yml
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Any

from lab.errors import ScenarioError

NAMESPACES = ("shop", "blog", "billing", "search", "media", "auth", "reports", "mail")
MAX_NODES = 40
"""Node addresses are 172.18.221.10 upward; the underlay's .53 is the upstream resolver."""
MAX_PODS_PER_NODE = 240
"""A node's pod CIDR is a /24: .10 to .249 for pods."""
MAX_VMS = 8
"""haproxy at .1, batch VMs at .2 to .7, the outsider at .99."""
HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The characters Kubernetes uses for generated name suffixes (no vowels, no 0/1/3)."""


@dataclass(frozen=True)
class Tier:
    """One Deployment of each namespace: its port, Service type and share of the pods."""

    name: str
    port: int
    port_name: str
    service_type: str
    weight: int


TIERS = (
    Tier("web", 80, "http", "NodePort", 4),
    Tier("api", 8080, "http-api", "ClusterIP", 3),
    Tier("db", 5432, "postgres", "ClusterIP", 2),
    Tier("cache", 6379, "redis", "ClusterIP", 1),
)


def _suffix(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(HASH_ALPHABET) for _ in range(length))


def _split(total: int, weights: list[int]) -> list[int]:
    """``total`` split by ``weights``, every share at least 1 while ``total`` allows (largest remainders)."""
    whole = sum(weights)
    shares = [total * weight // whole for weight in weights]
    remainders = sorted(range(len(weights)), key=lambda index: -(total * weights[index] % whole))
    for index in remainders[: total - sum(shares)]:
        shares[index] += 1
    return shares


def _check(nodes: int, pods: int, vms: int) -> None:
    if not 2 <= nodes <= MAX_NODES:
        raise ScenarioError(f"--nodes: {nodes} is out of range; give 2 to {MAX_NODES} (one control-plane node and workers)")
    if pods < len(TIERS):
        raise ScenarioError(f"--pods: {pods} is too few; give at least {len(TIERS)} (one per Deployment of a namespace)")
    if pods > (nodes - 1) * MAX_PODS_PER_NODE:
        raise ScenarioError(
            f"--pods: {pods} pods do not fit on {nodes - 1} workers of {MAX_PODS_PER_NODE} pods each; give more --nodes"
        )
    if not 2 <= vms <= MAX_VMS:
        raise ScenarioError(f"--vms: {vms} is out of range; give 2 to {MAX_VMS} (haproxy, the outsider and batch VMs)")


def generate(nodes: int, pods: int, vms: int = 4, seed: int = 1) -> dict[str, Any]:
    """A scenario document (topology, policy) with ``nodes`` nodes (one control plane), ``pods`` pods and ``vms`` VMs."""
    _check(nodes, pods, vms)
    rng = random.Random(seed)  # noqa: S311 - reproducible names, not secrets
    control_plane = {"node-role.kubernetes.io/control-plane": ""}
    master = {"name": "k8s-master", "address": "172.18.221.10", "pod_cidr": "10.244.0.0/24", "labels": control_plane}
    node_list: list[dict[str, Any]] = [master]
    node_list += [
        {"name": f"k8s-node{index}", "address": f"172.18.221.{10 + index}", "pod_cidr": f"10.244.{index}.0/24"} for index in range(1, nodes)
    ]
    workers = node_list[1:]
    namespaces = NAMESPACES[: max(1, min(len(NAMESPACES), pods // 40))]
    deployments = [(namespace, tier) for namespace in namespaces for tier in TIERS]
    counts = _split(pods, [tier.weight for _, tier in deployments])
    # Pods go round-robin over the workers, from a seeded starting point per Deployment, so every
    # Deployment spreads over several nodes and every node holds about the same number of pods.
    next_host = [10] * len(workers)
    cursor = rng.randrange(len(workers))
    pod_list: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    service_ips = ipaddress.ip_network("172.18.200.0/22").hosts()
    node_port = 30080
    for (namespace, tier), count in zip(deployments, counts, strict=True):
        app = f"{namespace}-{tier.name}"
        template_hash = _suffix(rng, 10)
        for _ in range(count):
            worker = cursor % len(workers)
            cursor += 1
            pod_list.append(
                {
                    "name": f"{app}-{template_hash}-{_suffix(rng, 5)}",
                    "namespace": namespace,
                    "node": workers[worker]["name"],
                    "ip": f"10.244.{worker + 1}.{next_host[worker]}",
                    "labels": {"app": app, "tier": tier.name, "pod-template-hash": template_hash},
                    "ports": [{"name": tier.port_name, "port": tier.port, "protocol": "TCP"}],
                }
            )
            next_host[worker] += 1
        service: dict[str, Any] = {
            "name": app,
            "namespace": namespace,
            "type": tier.service_type,
            "cluster_ip": str(next(service_ips)),
            "selector": {"app": app},
            "ports": [{"name": tier.port_name, "port": tier.port, "protocol": "TCP"}],
        }
        if tier.service_type == "NodePort":
            service["ports"][0].update(target_port=tier.port, node_port=node_port)
            service["external_traffic_policy"] = "Cluster"
            node_port += 1
        else:
            service["ports"][0]["target_port"] = tier.port_name  # named: resolved per endpoint
        services.append(service)
    http = [{"port": 80, "protocol": "TCP"}]
    vm_list = [{"name": "haproxy", "address": "172.18.221.1", "labels": {"role": "loadbalancer"}, "ports": http}]
    vm_list += [
        {"name": f"batch{index}", "address": f"172.18.221.{1 + index}", "labels": {"role": "batch"}, "ports": [{"port": 22022}]}
        for index in range(1, vms - 1)
    ]
    vm_list.append({"name": "outsider", "address": "172.18.221.99", "labels": {"role": "outsider"}, "ports": http})
    web_services = ", ".join(f"{namespace}-web" for namespace in namespaces)
    rules: list[dict[str, Any]] = [
        {"consumer": "haproxy", "provider": "web-services", "ports": ["tcp/80"]},
        {"consumer": "web", "provider": "api", "ports": ["tcp/8080"]},
        {"consumer": "api", "provider": "db", "ports": ["tcp/5432"]},
        {"consumer": "api", "provider": "cache", "ports": ["tcp/6379"]},
    ]
    filters = {
        "haproxy": "label.role = loadbalancer",
        "web-services": f"kind = service and service_name in ({web_services})",
        "web": "kind = pod and label.tier = web",
        "api": "kind = pod and label.tier = api",
        "db": "kind = pod and label.tier = db",
        "cache": "kind = pod and label.tier = cache",
    }
    if vms > 2:
        filters["batch"] = "label.role = batch"
        filters["reports-api"] = f"service_name = {namespaces[-1]}-api and namespace = {namespaces[-1]}"
        rules.append({"consumer": "batch", "provider": "reports-api", "ports": ["tcp/8080"]})
    return {
        "topology": {
            "cluster": {
                "name": "lab",
                "service_cidr": "172.18.192.0/20",
                "cluster_cidr": "10.244.0.0/16",
                "control_plane": True,
                "overlay": "vxlan",
                "upstream_dns": {"name": "upstream-dns", "address": "172.18.221.53"},
            },
            "underlay": {"cidr": "172.18.221.0/24", "controller": "172.18.221.254"},
            "nodes": node_list,
            "pods": pod_list,
            "services": services,
            "vms": vm_list,
        },
        "policy": {"filters": filters, "policies": {"absolute": [], "default": rules, "catch_all": "deny"}},
    }


def header(nodes: int, pods: int, vms: int, seed: int) -> str:
    """The comment a generated file starts with: how to make it again."""
    return (
        "# SPDX-License-Identifier: GPL-3.0-or-later\n"
        f"# Generated by `python -m lab generate --nodes {nodes} --pods {pods} --vms {vms} --seed {seed}`;\n"
        "# regenerate rather than edit. lab/generate.py describes the shape.\n"
    )
