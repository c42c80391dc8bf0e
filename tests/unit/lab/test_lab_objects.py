# SPDX-License-Identifier: GPL-3.0-or-later
"""Scenario -> Kubernetes manifests: the fields the inventory plugin reads, and parseable by the official client."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from kubernetes import client

from lab.objects import object_uid, scenario_objects
from lab.scenario import build_scenario, load_scenario
from lab.system import REPO_ROOT

SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"
MODELS: dict[str, Any] = {
    "Namespace": client.V1Namespace,
    "Node": client.V1Node,
    "Pod": client.V1Pod,
    "Service": client.V1Service,
    "EndpointSlice": client.V1EndpointSlice,
}


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    manifests = scenario_objects(load_scenario(SEED))
    return {(m["kind"], (m["metadata"].get("namespace", "") + "/" + m["metadata"]["name"]).lstrip("/")): m for m in manifests}


def dig(manifest: dict[str, Any], path: str) -> Any:
    value: Any = manifest
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def test_exactly_the_seed_objects(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert sorted(objects) == sorted(
        [
            ("Namespace", "default"),
            ("Namespace", "kube-system"),
            ("Namespace", "wordpress"),
            ("Node", "k8s-master"),
            ("Node", "k8s-node1"),
            ("Node", "k8s-node2"),
            ("Node", "k8s-node3"),
            ("Pod", "wordpress/wordpress-6dfdd9f64f-d75j2"),
            ("Pod", "wordpress/wordpress-mysql-5b58bbd695-gxtc4"),
            ("Service", "wordpress/wordpress"),
            ("Service", "wordpress/wordpress-mysql"),
            ("EndpointSlice", "wordpress/wordpress-f7292"),
            ("EndpointSlice", "wordpress/wordpress-mysql-7a294"),
            # The control plane: the API server's Service and slice, cluster DNS.
            ("Pod", "kube-system/coredns-7c65d6cfc9-zt5lb"),
            ("Service", "default/kubernetes"),
            ("EndpointSlice", "default/kubernetes"),
            ("Service", "kube-system/kube-dns"),
            ("EndpointSlice", "kube-system/kube-dns-30b8f"),
        ]
    )


FIELDS = [
    ("Node", "k8s-node1", "spec.podCIDR", "10.244.1.0/24"),
    ("Node", "k8s-node1", "spec.podCIDRs", ["10.244.1.0/24", "fd00:10:244:1::/64"]),
    (
        "Node",
        "k8s-node1",
        "status.addresses",
        [
            {"type": "InternalIP", "address": "172.18.221.11"},
            {"type": "InternalIP", "address": "fd00:172:18:221::11"},
            {"type": "Hostname", "address": "k8s-node1"},
        ],
    ),
    ("Node", "k8s-node1", "metadata.labels.kubernetes.io/hostname", "k8s-node1"),
    ("Node", "k8s-master", "metadata.labels.node-role.kubernetes.io/control-plane", ""),
    ("Pod", "wordpress/wordpress-6dfdd9f64f-d75j2", "metadata.uid", object_uid("lab", "Pod", "wordpress", "wordpress-6dfdd9f64f-d75j2")),
    ("Pod", "wordpress/wordpress-6dfdd9f64f-d75j2", "metadata.labels", {"app": "wordpress", "tier": "frontend"}),
    ("Pod", "wordpress/wordpress-6dfdd9f64f-d75j2", "spec.nodeName", "k8s-node1"),
    ("Pod", "wordpress/wordpress-6dfdd9f64f-d75j2", "spec.containers.0.ports", [{"containerPort": 80, "protocol": "TCP", "name": "http"}]),
    ("Pod", "wordpress/wordpress-6dfdd9f64f-d75j2", "status.phase", "Running"),
    ("Pod", "wordpress/wordpress-6dfdd9f64f-d75j2", "status.podIP", "10.244.1.94"),
    ("Pod", "wordpress/wordpress-6dfdd9f64f-d75j2", "status.podIPs", [{"ip": "10.244.1.94"}, {"ip": "fd00:10:244:1::94"}]),
    ("Pod", "wordpress/wordpress-6dfdd9f64f-d75j2", "status.hostIP", "172.18.221.11"),
    ("Pod", "wordpress/wordpress-mysql-5b58bbd695-gxtc4", "status.hostIP", "172.18.221.13"),
    ("Service", "wordpress/wordpress", "spec.type", "NodePort"),
    ("Service", "wordpress/wordpress", "spec.clusterIP", "172.18.202.253"),
    ("Service", "wordpress/wordpress", "spec.clusterIPs", ["172.18.202.253"]),
    ("Service", "wordpress/wordpress", "spec.externalTrafficPolicy", "Cluster"),
    ("Service", "wordpress/wordpress", "spec.selector", {"app": "wordpress", "tier": "frontend"}),
    (
        "Service",
        "wordpress/wordpress",
        "spec.ports",
        [{"port": 80, "targetPort": 80, "protocol": "TCP", "name": "http", "nodePort": 30358}],
    ),
    ("Service", "wordpress/wordpress-mysql", "spec.ports", [{"port": 3306, "targetPort": "mysql", "protocol": "TCP", "name": "mysql"}]),
    ("EndpointSlice", "wordpress/wordpress-f7292", "metadata.labels.kubernetes.io/service-name", "wordpress"),
    ("EndpointSlice", "wordpress/wordpress-f7292", "addressType", "IPv4"),
    ("EndpointSlice", "wordpress/wordpress-f7292", "endpoints.0.addresses", ["10.244.1.94"]),
    ("EndpointSlice", "wordpress/wordpress-f7292", "endpoints.0.nodeName", "k8s-node1"),
    ("EndpointSlice", "wordpress/wordpress-f7292", "endpoints.0.conditions.ready", True),
    ("EndpointSlice", "wordpress/wordpress-f7292", "endpoints.0.targetRef.name", "wordpress-6dfdd9f64f-d75j2"),
    ("EndpointSlice", "wordpress/wordpress-f7292", "ports", [{"port": 80, "protocol": "TCP", "name": "http"}]),
    # The named target port "mysql" resolves to the pod's container port.
    ("EndpointSlice", "wordpress/wordpress-mysql-7a294", "ports", [{"port": 3306, "protocol": "TCP", "name": "mysql"}]),
    # default/kubernetes as a real API server keeps it: the service CIDR's first address, 443 -> 6443, no selector.
    ("Service", "default/kubernetes", "spec.clusterIP", "172.18.192.1"),
    ("Service", "default/kubernetes", "spec.ports", [{"port": 443, "targetPort": 6443, "protocol": "TCP", "name": "https"}]),
    ("Service", "default/kubernetes", "metadata.labels", {"component": "apiserver", "provider": "kubernetes"}),
    ("EndpointSlice", "default/kubernetes", "metadata.labels", {"kubernetes.io/service-name": "kubernetes"}),
    ("EndpointSlice", "default/kubernetes", "endpoints", [{"addresses": ["172.18.221.10"], "conditions": {"ready": True}}]),
    ("EndpointSlice", "default/kubernetes", "ports", [{"name": "https", "port": 6443, "protocol": "TCP"}]),
    # Cluster DNS: a CoreDNS-like pod on the control-plane node behind kube-system/kube-dns (.10 of the service CIDR).
    ("Service", "kube-system/kube-dns", "spec.clusterIP", "172.18.192.10"),
    ("Service", "kube-system/kube-dns", "spec.selector", {"k8s-app": "kube-dns"}),
    (
        "Service",
        "kube-system/kube-dns",
        "spec.ports",
        [
            {"port": 53, "targetPort": "dns", "protocol": "UDP", "name": "dns"},
            {"port": 53, "targetPort": "dns-tcp", "protocol": "TCP", "name": "dns-tcp"},
        ],
    ),
    ("Pod", "kube-system/coredns-7c65d6cfc9-zt5lb", "spec.nodeName", "k8s-master"),
    ("Pod", "kube-system/coredns-7c65d6cfc9-zt5lb", "status.podIP", "10.244.0.53"),
    ("EndpointSlice", "kube-system/kube-dns-30b8f", "endpoints.0.addresses", ["10.244.0.53"]),
    # flannel's annotations (vxlan): what the `cluster` allowance reads to open udp/8472 between nodes.
    ("Node", "k8s-node1", "metadata.annotations.flannel.alpha.coreos.com/backend-type", "vxlan"),
    ("Node", "k8s-node1", "metadata.annotations.flannel.alpha.coreos.com/public-ip", "172.18.221.11"),
    ("Node", "k8s-node1", "metadata.annotations.flannel.alpha.coreos.com/kube-subnet-manager", "true"),
]


@pytest.mark.parametrize(("kind", "name", "path", "expected"), FIELDS, ids=[f"{k}:{n}:{p}" for k, n, p, _ in FIELDS])
def test_manifest_fields(objects: dict[tuple[str, str], dict[str, Any]], kind: str, name: str, path: str, expected: Any) -> None:
    manifest = objects[kind, name]
    if path.startswith(("metadata.labels.", "metadata.annotations.")):
        section, _, key = path.removeprefix("metadata.").partition(".")
        assert manifest["metadata"][section][key] == expected
    else:
        assert dig(manifest, path) == expected


def test_every_manifest_parses_with_the_official_client(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    for (kind, name), manifest in objects.items():
        model = MODELS[kind].from_dict(manifest)
        assert model.metadata.name == name.rsplit("/", 1)[-1]


def test_deterministic() -> None:
    seed = load_scenario(SEED)
    assert scenario_objects(seed) == scenario_objects(load_scenario(SEED))


def test_vxlan_backend_data_names_the_vtep_mac() -> None:
    from lab.overlay import vtep_mac  # noqa: PLC0415

    node = next(m for m in scenario_objects(load_scenario(SEED)) if m["kind"] == "Node" and m["metadata"]["name"] == "k8s-node2")
    data = json.loads(node["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"])
    assert data == {"VNI": 1, "VtepMAC": vtep_mac("k8s-node2")}


@pytest.mark.parametrize(
    ("cluster", "backend_type", "control_plane_objects"),
    [
        ({"overlay": "routed"}, "host-gw", True),  # flannel's host-gw: direct routes, no encapsulation
        ({"control_plane": False}, None, False),  # the lab before the control plane: no annotations, no API objects
    ],
)
def test_overlay_and_control_plane_switches(cluster: dict[str, Any], backend_type: str | None, control_plane_objects: bool) -> None:
    document = yaml.safe_load(SEED.read_text())
    document["topology"]["cluster"].update(cluster)
    if cluster.get("control_plane") is False:
        del document["topology"]["cluster"]["upstream_dns"]
        del document["expect"]
    manifests = scenario_objects(build_scenario(document))
    node = next(m for m in manifests if m["kind"] == "Node")
    assert (node["metadata"].get("annotations") or {}).get("flannel.alpha.coreos.com/backend-type") == backend_type
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    assert (("Service", "kubernetes") in names) is control_plane_objects
    assert (("Service", "kube-dns") in names) is control_plane_objects


def test_named_port_missing_on_a_pod_leaves_it_out_of_the_slice() -> None:
    document = yaml.safe_load(SEED.read_text())
    extra = copy.deepcopy(document["topology"]["pods"][1])
    extra.update(name="wordpress-mysql-other", ip="10.244.2.7", ipv6=None, node="k8s-node2", ports=[{"name": "sql", "port": 3307}])
    document["topology"]["pods"].append(extra)
    slices = [m for m in scenario_objects(build_scenario(document)) if m["kind"] == "EndpointSlice" and "mysql" in m["metadata"]["name"]]
    assert [[e["targetRef"]["name"] for e in s["endpoints"]] for s in slices] == [["wordpress-mysql-5b58bbd695-gxtc4"]]


def test_service_without_endpoints_has_an_empty_slice() -> None:
    document = yaml.safe_load(SEED.read_text())
    document["topology"]["services"][1]["selector"] = {"app": "nothing"}
    slices = [m for m in scenario_objects(build_scenario(document)) if m["kind"] == "EndpointSlice"]
    assert [(s["metadata"]["name"].rsplit("-", 1)[0], s["endpoints"], s["ports"]) for s in slices][1] == ("wordpress-mysql", [], [])
