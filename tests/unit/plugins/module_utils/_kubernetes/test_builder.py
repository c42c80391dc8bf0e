# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Snapshots -> hosts and groups: names, records, groups, collisions, hostile metadata."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import builder, naming, records

from tests.unit.plugins.module_utils._kubernetes import k8s_factories as k8s

POD = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"
MYSQL = "wordpress-mysql-5b58bbd695-gxtc4.wordpress.pod.lab"
SERVICE = "wordpress.wordpress.service.lab"


def snapshot(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group manifests by kind as fetch_cluster does."""
    result: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        result.setdefault(obj["kind"], []).append(obj)
    return result


Snapshot = dict[str, list[dict[str, Any]]]


def build(snapshots: Snapshot | dict[str, Snapshot], **settings: Any) -> builder.InventoryModel:
    formats = naming.validate_host_format(settings.pop("host_format", {}))
    clusters = snapshots if all(isinstance(value, dict) for value in snapshots.values()) else {"lab": snapshots}
    return builder.build(clusters, builder.BuildSettings(host_format=formats, **settings))  # type: ignore[arg-type]


def test_seed_hosts_and_groups() -> None:
    model = build(snapshot(k8s.seed()))
    assert sorted(model.hosts) == sorted(["k8s-master", "k8s-node1", "k8s-node2", "k8s-node3", POD, MYSQL, SERVICE])
    assert model.groups == {
        "k8s_cluster_lab": ["k8s-master", "k8s-node1", "k8s-node2", "k8s-node3", POD, MYSQL, SERVICE],
        "k8s_nodes": ["k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"],
        "label_kubernetes_io_hostname_k8s_master": ["k8s-master"],
        "label_kubernetes_io_hostname_k8s_node1": ["k8s-node1"],
        "label_kubernetes_io_hostname_k8s_node2": ["k8s-node2"],
        "label_kubernetes_io_hostname_k8s_node3": ["k8s-node3"],
        "k8s_node_k8s_node1": [POD],
        "k8s_pods": [POD, MYSQL],
        "k8s_namespace_wordpress": [POD, MYSQL, SERVICE],
        "label_app_wordpress": [POD, MYSQL, SERVICE],
        "label_tier_frontend": [POD],
        "k8s_node_k8s_node3": [MYSQL],
        "label_tier_mysql": [MYSQL],
        "k8s_services": [SERVICE],
        "service_wordpress_wordpress": [POD],
    }
    assert model.warnings == []


def test_pod_hostvars() -> None:
    hostvars = build(snapshot(k8s.seed())).hosts[POD]
    assert hostvars == {
        "ansible_host": "172.18.221.11",
        "zt_enforce_host": "k8s-node1",
        "workload": {
            "kind": "pod", "name": "wordpress-6dfdd9f64f-d75j2", "namespace": "wordpress", "cluster": "lab", "addresses": ["10.244.1.94"],
            "labels": {"app": "wordpress", "tier": "frontend"}, "annotations": {}, "node": "k8s-node1",
            "uid": "5f0c6f3e-1111-4c5e-9a51-0d2b8d0a0001", "phase": "Running", "host_network": False,
            "container_ids": ["containerd://wordpress-6dfdd9f64f-0001"], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }


def test_service_hostvars_are_logical_with_nodeport() -> None:
    hostvars = build(snapshot(k8s.seed())).hosts[SERVICE]
    assert "ansible_host" not in hostvars
    assert hostvars["ansible_connection"] == "zerotrust.workloads.logical"
    assert hostvars["zt_logical_hint"] == "target its pods (group service_wordpress_wordpress) or its nodes"
    assert hostvars["workload"] == {
        "kind": "service", "name": "wordpress", "namespace": "wordpress", "cluster": "lab", "addresses": ["172.18.202.253"],
        "labels": {"app": "wordpress"}, "annotations": {}, "type": "NodePort", "cluster_ips": ["172.18.202.253"], "external_ips": [],
        "load_balancer_ingress": [], "external_traffic_policy": "Cluster", "selector": {"app": "wordpress", "tier": "frontend"},
        "ports": [{"name": "http", "port": 80, "target_port": 80, "node_port": 30358, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.1.94"], "node": "k8s-node1", "pod": "wordpress/wordpress-6dfdd9f64f-d75j2", "ready": True,
                       "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}],
    }


def test_node_hostvars() -> None:
    calico = {"projectcalico.org/IPv4IPIPTunnelAddr": "10.244.7.1"}
    hostvars = build(snapshot([k8s.node("n1", "192.0.2.7", "10.244.7.0/24", annotations=calico)])).hosts["n1"]
    assert hostvars == {"ansible_host": "192.0.2.7", "workload": {
        "kind": "node", "name": "n1", "namespace": None, "cluster": "lab", "addresses": ["192.0.2.7"],
        "labels": {"kubernetes.io/hostname": "n1"}, "annotations": calico, "pod_cidrs": ["10.244.7.0/24"],
        "tunnel_addresses": ["10.244.7.1"]}}


@pytest.mark.parametrize(
    ("annotations", "tunnel_addresses"),
    [
        ({"flannel.alpha.coreos.com/backend-type": "vxlan"}, ["10.244.7.0"]),  # flannel.1 holds the pod CIDR's network address
        ({"flannel.alpha.coreos.com/backend-type": "host-gw"}, []),  # no tunnel device: the node address itself
        ({}, []),
    ],
)
def test_flannel_vxlan_tunnel_address(annotations: dict[str, str], tunnel_addresses: list[str]) -> None:
    node = k8s.node("n1", "192.0.2.7", "10.244.7.0/24", annotations=annotations)
    assert build(snapshot([node])).hosts["n1"]["workload"]["tunnel_addresses"] == tunnel_addresses


DUAL_STACK_VXLAN = {
    "flannel.alpha.coreos.com/backend-type": "vxlan",
    "flannel.alpha.coreos.com/backend-v6-data": '{"VNI":1,"VtepMAC":"0a:58:0a:f4:07:00"}',
}


@pytest.mark.parametrize(
    ("annotations", "pod_cidrs", "tunnel_addresses"),
    [
        # flannel-v6.1 holds the IPv6 pod CIDR's network address; CIDRs as written by the API (not canonical) still work.
        (DUAL_STACK_VXLAN, ["10.244.7.0/24", "fd00:10:244:0007::/64"], ["10.244.7.0", "fd00:10:244:7::"]),
        # no backend-v6-data: flannel carries no IPv6 over the overlay, so there is no IPv6 tunnel address
        ({"flannel.alpha.coreos.com/backend-type": "vxlan"}, ["10.244.7.0/24", "fd00:10:244:7::/64"], ["10.244.7.0"]),
        ({"flannel.alpha.coreos.com/backend-type": "host-gw"}, ["10.244.7.0/24", "fd00:10:244:7::/64"], []),
    ],
)
def test_flannel_dual_stack_tunnel_addresses(annotations: dict[str, str], pod_cidrs: list[str], tunnel_addresses: list[str]) -> None:
    assert records.flannel_tunnel_addresses(annotations, pod_cidrs) == tunnel_addresses


@pytest.mark.parametrize(
    ("phase", "ip", "skip", "is_host"),
    [
        ("Running", "10.0.0.1", builder.DEFAULT_SKIP_PHASES, True),
        ("Pending", "10.0.0.1", builder.DEFAULT_SKIP_PHASES, False),
        ("Succeeded", "10.0.0.1", builder.DEFAULT_SKIP_PHASES, False),
        ("Failed", "10.0.0.1", builder.DEFAULT_SKIP_PHASES, False),
        ("Unknown", "10.0.0.1", builder.DEFAULT_SKIP_PHASES, True),
        ("Pending", "10.0.0.1", (), True),
        ("Running", None, (), False),  # no IP: never a host, whatever the phases
    ],
)
def test_pod_phase_and_ip_filter(phase: str, ip: str | None, skip: tuple[str, ...], is_host: bool) -> None:
    model = build(snapshot([k8s.pod("p", "ns", "n1", ip, phase=phase)]), skip_pod_phases=skip)
    assert ("p.ns.pod.lab" in model.hosts) is is_host


def test_pod_without_known_node_uses_host_ip() -> None:
    model = build(snapshot([k8s.pod("p", "ns", "gone", "10.0.0.1", host_ip="192.0.2.9")]))
    assert model.hosts["p.ns.pod.lab"]["ansible_host"] == "192.0.2.9"
    assert model.hosts["p.ns.pod.lab"]["zt_enforce_host"] == "gone"


def test_kinds_limit_the_hosts_but_nodes_still_name_enforce_hosts() -> None:
    model = build(snapshot(k8s.seed()), kinds=("pods",))
    assert sorted(model.hosts) == [POD, MYSQL]
    assert model.hosts[POD]["ansible_host"] == "172.18.221.11"
    assert "k8s_nodes" not in model.groups and "k8s_services" not in model.groups


def test_service_selects_pods_by_all_selector_labels_in_its_namespace() -> None:
    objects = [
        k8s.pod("a", "ns1", "n", "10.0.0.1", {"app": "web", "tier": "fe"}),
        k8s.pod("b", "ns1", "n", "10.0.0.2", {"app": "web"}),
        k8s.pod("c", "ns2", "n", "10.0.0.3", {"app": "web", "tier": "fe"}),
        k8s.service("web", "ns1", {"app": "web", "tier": "fe"}, [{"port": 80}]),
        k8s.service("none", "ns1", {}, [{"port": 80}]),
        k8s.service("nomatch", "ns1", {"app": "other"}, [{"port": 80}]),
    ]
    model = build(snapshot(objects))
    assert model.groups["service_ns1_web"] == ["a.ns1.pod.lab"]
    assert model.groups["service_ns1_nomatch"] == []
    assert "service_ns1_none" not in model.groups


def test_same_names_in_two_namespaces_stay_distinct() -> None:
    model = build(snapshot([k8s.pod("web", "a", "n", "10.0.0.1"), k8s.pod("web", "b", "n", "10.0.0.2")]))
    assert sorted(name for name in model.hosts) == ["web.a.pod.lab", "web.b.pod.lab"]
    assert model.warnings == []


def test_nodes_colliding_across_clusters_are_all_qualified() -> None:
    one = snapshot([k8s.node("worker", "192.0.2.1", "10.1.0.0/24"), k8s.pod("p", "ns", "worker", "10.1.0.5")])
    two = snapshot([k8s.node("worker", "192.0.2.2", "10.2.0.0/24"), k8s.node("solo", "192.0.2.3", "10.3.0.0/24")])
    model = build({"east": one, "west": two})
    assert sorted(model.hosts) == ["p.ns.pod.east", "solo", "worker.node.east", "worker.node.west"]
    assert model.hosts["worker.node.west"]["ansible_host"] == "192.0.2.2"
    assert model.hosts["p.ns.pod.east"]["zt_enforce_host"] == "worker.node.east"
    assert len(model.warnings) == 2 and "'worker' is shared by several objects" in model.warnings[0]


def test_user_format_collisions_fall_back_to_qualified_names() -> None:
    model = build(snapshot([k8s.pod("web", "a", "n", "10.0.0.1"), k8s.pod("web", "b", "n", "10.0.0.2")]), host_format={"pod": "{name}"})
    assert sorted(model.hosts) == ["web.a.pod.lab", "web.b.pod.lab"]


def test_names_equal_after_sanitising_get_hash_suffixes() -> None:
    model = build(snapshot([k8s.pod("a b", "ns", "n", "10.0.0.1"), k8s.pod("a_b", "ns", "n", "10.0.0.2")]))
    names = sorted(model.hosts)
    assert len(names) == 2 and all(name.startswith("a_b.ns.pod.lab-") for name in names) and names[0] != names[1]
    assert sorted(host["workload"]["name"] for host in model.hosts.values()) == ["a b", "a_b"]


HOSTILE = ["it's", 'say "hi"', "two words", "$(reboot)", "line\nbreak", "x" * 300, "ünï", "{{ lookup('pipe', 'id') }}"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_names_and_labels_are_made_safe(text: str) -> None:
    objects = [
        k8s.pod(text, text, text, "10.0.0.1", {text: text}),
        k8s.service(text, text, {text: text}, [{"port": 80}]),
    ]
    model = build(snapshot(objects))
    for host in model.hosts:
        assert len(host) <= naming.MAX_HOST_NAME
        assert set(host) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    for group in model.groups:
        assert len(group) <= naming.MAX_GROUP_NAME
        assert group[0].isalpha() or group[0] == "_"
        assert set(group) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
    pod_vars = next(host for host in model.hosts.values() if host["workload"]["kind"] == "pod")
    # The record keeps the original text as data: it is never a name or a command.
    assert pod_vars["workload"]["name"] == text and pod_vars["workload"]["labels"] == {text: text}
    service_group = next(group for group in model.groups if group.startswith("service_"))
    assert len(model.groups[service_group]) == 1
