# SPDX-License-Identifier: GPL-3.0-or-later
"""Scenario validation: the seed loads as design.md describes it; bad documents fail naming the field."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest
import yaml

from lab.errors import ScenarioError
from lab.scenario import build_scenario, load_scenario
from lab.system import REPO_ROOT

SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"


def seed_document() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SEED.read_text())
    return data


def test_seed_matches_design() -> None:
    seed = load_scenario(SEED)
    assert seed.cluster.name == "lab"
    assert seed.cluster.service_cidr == ipaddress.ip_network("172.18.192.0/20")
    assert [(n.name, str(n.address), str(n.pod_cidr)) for n in seed.nodes] == [
        ("k8s-master", "172.18.221.10", "10.244.0.0/24"),
        ("k8s-node1", "172.18.221.11", "10.244.1.0/24"),
        ("k8s-node2", "172.18.221.12", "10.244.2.0/24"),
        ("k8s-node3", "172.18.221.13", "10.244.3.0/24"),
    ]
    frontend, mysql, coredns = seed.pods
    assert (frontend.key, frontend.node, str(frontend.ip), dict(frontend.labels)) == (
        "wordpress/wordpress-6dfdd9f64f-d75j2",
        "k8s-node1",
        "10.244.1.94",
        {"app": "wordpress", "tier": "frontend"},
    )
    assert (mysql.key, mysql.node, str(mysql.ip)) == ("wordpress/wordpress-mysql-5b58bbd695-gxtc4", "k8s-node3", "10.244.3.18")
    wordpress = seed.services[0]
    assert (wordpress.type, str(wordpress.cluster_ip), wordpress.external_traffic_policy) == ("NodePort", "172.18.202.253", "Cluster")
    assert [(p.port, p.target_port, p.node_port) for p in wordpress.ports] == [(80, 80, 30358)]
    assert [(vm.name, str(vm.address), dict(vm.labels)) for vm in seed.vms] == [
        ("haproxy", "172.18.221.1", {"role": "loadbalancer"}),
        ("outsider", "172.18.221.99", {"role": "outsider"}),
    ]
    assert seed.expect_allow is not None
    assert seed.expect_allow[:2] == (
        "vm:haproxy -> nodeport:wordpress/wordpress:tcp/80",
        "pod:wordpress/wordpress-6dfdd9f64f-d75j2 -> pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4:tcp/3306",
    )
    assert seed.policy is not None and seed.policy["policies"]["catch_all"] == "deny"
    assert all(node.ipv6 is not None for node in seed.nodes)
    assert all(pod.ipv6 is not None for pod in seed.pods if pod is not coredns)
    assert all(vm.ipv6 is not None for vm in seed.vms)
    assert [p.key for p in seed.service_endpoints(wordpress)] == ["wordpress/wordpress-6dfdd9f64f-d75j2"]


def _set(path: str, value: Any) -> Any:
    """A mutation of the seed document: set the value at a dotted path (list indexes as numbers)."""

    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _append(path: str, value: Any) -> Any:
    def mutate(document: dict[str, Any]) -> None:
        node: Any = document
        for part in path.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        node.append(copy.deepcopy(value))

    return mutate


BAD = [
    (
        "bad service CIDR",
        _set("topology.cluster.service_cidr", "172.18.192.0/33"),
        'topology.cluster.service_cidr: "172.18.192.0/33" is not a valid CIDR',
    ),
    (
        "CIDR with host bits",
        _set("topology.nodes.1.pod_cidr", "10.244.1.7/24"),
        'topology.nodes[1].pod_cidr: "10.244.1.7/24" is not a valid CIDR',
    ),
    (
        "unknown node",
        _set("topology.pods.0.node", "k8s-node9"),
        "topology.pods[0].node: unknown node 'k8s-node9'; known nodes: k8s-master, k8s-node1, k8s-node2, k8s-node3",
    ),
    (
        "duplicate pod",
        _append("topology.pods", {"name": "wordpress-6dfdd9f64f-d75j2", "namespace": "wordpress", "node": "k8s-node2", "ip": "10.244.2.5"}),
        "topology.pods[2].name: duplicate pod 'wordpress/wordpress-6dfdd9f64f-d75j2' (already used by topology.pods[0].name)",
    ),
    (
        "VM named like a node",
        _append("topology.vms", {"name": "k8s-node1", "address": "172.18.221.50"}),
        "topology.vms[2].name: duplicate node/VM name 'k8s-node1' (already used by topology.nodes[1].name)",
    ),
    (
        "duplicate address",
        _append("topology.vms", {"name": "clone", "address": "172.18.221.1"}),
        "topology.vms[2].address: duplicate address '172.18.221.1' (already used by topology.vms[0].address)",
    ),
    (
        "pod IP outside its node",
        _set("topology.pods.0.ip", "10.244.2.94"),
        "topology.pods[0].ip: 10.244.2.94 is not a pod address in k8s-node1's pod CIDR 10.244.1.0/24",
    ),
    ("pod IP on the gateway", _set("topology.pods.0.ip", "10.244.1.1"), "topology.pods[0].ip: 10.244.1.1 is not a pod address"),
    (
        "cluster IP outside",
        _set("topology.services.0.cluster_ip", "10.96.0.10"),
        "topology.services[0].cluster_ip: 10.96.0.10 is outside the service CIDR 172.18.192.0/20",
    ),
    (
        "node port range",
        _set("topology.services.0.ports.0.node_port", 80),
        "topology.services[0].ports[0].node_port: 80 is outside the NodePort range 30000-32767",
    ),
    ("bad port", _set("topology.pods.1.ports.0.port", 70000), "topology.pods[1].ports[0].port: 70000 is not a port number (1-65535)"),
    ("bad protocol", _set("topology.pods.1.ports.0.protocol", "SCTP"), 'topology.pods[1].ports[0].protocol: "SCTP" is not one of TCP, UDP'),
    ("bad name", _set("topology.vms.0.name", "HAProxy_1"), "topology.vms[0].name: 'HAProxy_1' is not a valid name"),
    ("unknown field", _set("topology.nodes.0.podcidr", "10.9.0.0/24"), "topology.nodes[0].podcidr: unknown field"),
    ("missing address", _set("topology.vms.0.address", None), "topology.vms[0].address: required field is missing"),
    (
        "VM off the underlay",
        _set("topology.vms.0.address", "192.168.1.1"),
        "topology.vms[0].address: 192.168.1.1 is not a host address of the underlay 172.18.221.0/24",
    ),
    (
        "overlapping pod CIDRs",
        _set("topology.nodes.2.pod_cidr", "10.244.1.0/25"),
        "topology.nodes[2].pod_cidr: 10.244.1.0/25 overlaps 10.244.1.0/24 (topology.nodes[1].pod_cidr)",
    ),
    (
        "unknown probe",
        _set("expect.allow", ["vm:haproxy -> svc:wordpress/wordpress:tcp/80"]),
        "expect.allow[0]: 'vm:haproxy -> svc:wordpress/wordpress:tcp/80' is not a probe of this lab",
    ),
    ("policy not a mapping", _set("policy", ["allow all"]), 'policy: expected a mapping (filters, policies), got ["allow all"]'),
    (
        "control_plane not a bool",
        _set("topology.cluster.control_plane", "yes"),
        'topology.cluster.control_plane: expected true or false, got "yes"',
    ),
    ("unknown overlay", _set("topology.cluster.overlay", "geneve"), 'topology.cluster.overlay: "geneve" is not one of vxlan, routed'),
    (
        "upstream on a taken address",
        _set("topology.cluster.upstream_dns", {"name": "resolver", "address": "172.18.221.1"}),
        "topology.cluster.upstream_dns.address: duplicate address '172.18.221.1' (already used by topology.vms[0].address)",
    ),
    (
        "upstream named like a VM",
        _set("topology.cluster.upstream_dns", {"name": "haproxy", "address": "172.18.221.60"}),
        "topology.cluster.upstream_dns.name: duplicate node/VM name 'haproxy' (already used by topology.vms[0].name)",
    ),
    (
        "upstream off the underlay",
        _set("topology.cluster.upstream_dns", {"name": "resolver", "address": "10.1.1.1"}),
        "topology.cluster.upstream_dns.address: 10.1.1.1 is not a host address of the underlay 172.18.221.0/24",
    ),
    (
        "the API's ClusterIP taken",
        _set("topology.services.1.cluster_ip", "172.18.192.1"),
        "topology.services[1].cluster_ip: 172.18.192.1 is the ClusterIP of default/kubernetes (the service CIDR's first address)",
    ),
    (
        "default/kubernetes in the scenario",
        _append("topology.services", {"name": "kubernetes", "namespace": "default", "cluster_ip": "172.18.192.2", "ports": [{"port": 1}]}),
        "topology.services[2].name: default/kubernetes is the API server's Service, which the lab adds itself",
    ),
]


@pytest.mark.parametrize(("mutation", "message"), [(m, msg) for _, m, msg in BAD], ids=[case[0] for case in BAD])
def test_invalid_scenarios_name_the_field(mutation: Any, message: str) -> None:
    document = seed_document()
    mutation(document)
    with pytest.raises(ScenarioError) as error:
        build_scenario(document)
    assert message in str(error.value)


def test_load_names_the_file(tmp_path: Any) -> None:
    path = tmp_path / "broken.yml"
    path.write_text("topology: [\n")
    with pytest.raises(ScenarioError, match=r"^scenario .*broken\.yml: not valid YAML"):
        load_scenario(path)


def test_digest_follows_content() -> None:
    document = seed_document()
    first = build_scenario(copy.deepcopy(document)).digest
    assert build_scenario(copy.deepcopy(document)).digest == first
    document["topology"]["vms"][1]["labels"]["role"] = "other"
    assert build_scenario(document).digest != first


def test_seed_control_plane() -> None:
    seed = load_scenario(SEED)
    assert (seed.cluster.control_plane, seed.cluster.overlay, str(seed.cluster.api_cluster_ip)) == (True, "vxlan", "172.18.192.1")
    assert seed.control_plane_node is not None and seed.control_plane_node.name == "k8s-master"
    api = seed.api_service
    assert api is not None and not api.selector
    assert [(str(e.address), e.node) for e in api.static_endpoints] == [("172.18.221.10", "k8s-master")]
    assert [(p.port, p.target_port, p.name) for p in api.ports] == [(443, 6443, "https")]
    dns = seed.dns_service
    assert dns is not None and (str(dns.cluster_ip), dict(dns.selector)) == ("172.18.192.10", {"k8s-app": "kube-dns"})
    assert [(p.key, p.node, str(p.ip)) for p in seed.dns_pods()] == [("kube-system/coredns-7c65d6cfc9-zt5lb", "k8s-master", "10.244.0.53")]
    assert seed.upstream_dns is not None and (seed.upstream_dns.name, str(seed.upstream_dns.address)) == ("upstream-dns", "172.18.221.53")
    assert seed.upstream_dns not in seed.vms  # not a workload of the inventory


def _without_control_plane_keys(document: dict[str, Any]) -> None:
    cluster = document["topology"]["cluster"]
    for key in ("control_plane", "overlay", "upstream_dns"):
        cluster.pop(key, None)
    nodes = document["topology"]["nodes"]
    nodes[0].pop("labels", None)


def test_control_plane_defaults() -> None:
    """On by default: vxlan, the first node as control plane (labelled as kubeadm does), the upstream at the underlay's .53."""
    document = seed_document()
    _without_control_plane_keys(document)
    scenario = build_scenario(document)
    assert (scenario.cluster.control_plane, scenario.cluster.overlay) == (True, "vxlan")
    assert scenario.nodes[0].labels == {"node-role.kubernetes.io/control-plane": ""}
    assert scenario.control_plane_node == scenario.nodes[0]
    assert scenario.upstream_dns is not None and str(scenario.upstream_dns.address) == "172.18.221.53"


def test_labelled_control_plane_node_wins() -> None:
    document = seed_document()
    _without_control_plane_keys(document)
    document["topology"]["nodes"][2]["labels"] = {"node-role.kubernetes.io/control-plane": ""}
    scenario = build_scenario(document)
    assert scenario.control_plane_node is not None and scenario.control_plane_node.name == "k8s-node2"
    assert scenario.nodes[0].labels == {}
    assert [str(e.address) for e in scenario.api_service.static_endpoints] == ["172.18.221.12"]  # type: ignore[union-attr]
    assert [p.node for p in scenario.dns_pods()] == ["k8s-node2"]


def test_control_plane_off_is_the_lab_without_it() -> None:
    document = seed_document()
    _without_control_plane_keys(document)
    document["topology"]["cluster"]["control_plane"] = False
    del document["expect"]
    scenario = build_scenario(document)
    assert scenario.control_plane_node is None and scenario.upstream_dns is None
    assert [service.key for service in scenario.services] == ["wordpress/wordpress", "wordpress/wordpress-mysql"]
    assert len(scenario.pods) == 2


def test_scenario_with_its_own_kube_dns_keeps_it() -> None:
    document = seed_document()
    document["topology"]["pods"][1]["labels"] = {"k8s-app": "kube-dns"}
    document["topology"]["pods"][1]["namespace"] = "kube-system"
    document["topology"]["services"][1].update(name="kube-dns", namespace="kube-system", selector={"k8s-app": "kube-dns"})
    del document["expect"]
    scenario = build_scenario(document)
    assert [pod.key for pod in scenario.dns_pods()] == ["kube-system/wordpress-mysql-5b58bbd695-gxtc4"]
    assert len(scenario.pods) == 2  # no CoreDNS pod added


def test_free_addresses_are_picked_for_the_added_objects() -> None:
    """udp-local's own DNS Service holds .10: kube-dns gets the next free ClusterIP."""
    scenario = load_scenario(REPO_ROOT / "lab" / "scenarios" / "udp-local.yml")
    assert scenario.dns_service is not None and str(scenario.dns_service.cluster_ip) == "172.18.192.11"
    assert [(p.node, str(p.ip)) for p in scenario.dns_pods()] == [("n1", "10.244.8.53")]


def test_cluster_cidr_defaults_to_the_pod_cidrs_supernet() -> None:
    document = seed_document()
    del document["topology"]["cluster"]["cluster_cidr"]
    assert str(build_scenario(document).cluster.cluster_cidr) == "10.244.0.0/22"
