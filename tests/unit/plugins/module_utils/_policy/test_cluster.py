# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``cluster`` implicit allowance against clusters shaped like real flannel, Calico and Cilium ones.

Node annotations and agent pods are written as those projects publish them:

- flannel: ``flannel.alpha.coreos.com/backend-type`` (``vxlan``, ``host-gw``, ``wireguard``) and
  ``flannel.alpha.coreos.com/public-ip`` on every node it runs on;
- Calico (calico-node): ``projectcalico.org/IPv4Address`` (``address/prefix``), and per encapsulation
  ``projectcalico.org/IPv4IPIPTunnelAddr`` / ``projectcalico.org/IPv4VXLANTunnelAddr``; Typha pods
  labelled ``k8s-app: calico-typha`` in the host network;
- Cilium: the agent DaemonSet's pods in ``kube-system`` labelled ``k8s-app: cilium``, host network.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import iptables, model, nftables
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Options as BackendOptions
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import PolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import parse_options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import Flow, Reachability

from tests.unit.plugins.module_utils._policy.policy_seed import (
    API_SERVICE,
    DNS_POD,
    MYSQL_POD,
    UPSTREAM_DNS,
    WORDPRESS_POD,
    add_control_plane,
    compile_inline,
    seed_hostvars,
    seed_policy,
)
from tests.unit.plugins.module_utils._policy.test_compiler import check_golden, ruleset_of

MASTER, NODE1, NODE2, NODE3 = "172.18.221.10", "172.18.221.11", "172.18.221.12", "172.18.221.13"
NODES = [MASTER, NODE1, NODE2, NODE3]
CONTROLLER = "172.18.221.254"
OPTIONS: dict[str, Any] = {"management_addresses": [CONTROLLER], "upstream_dns": [UPSTREAM_DNS]}
Rule = tuple[str, str, Optional[str], list[str], list[str]]


def cluster_rules(plan: dict[str, Any], host: str) -> list[Rule]:
    """(chain, origin, protocol, ports, peer members or ["*"]) of every ``implicit:cluster`` rule of a host."""
    return origin_rules(plan, host, "implicit:cluster")


CONTROLLER_RULE = ("ingress", "implicit:management_ssh controller to API server", "tcp", ["6443"], [CONTROLLER])


def origin_rules(plan: dict[str, Any], host: str, prefix: str) -> list[Rule]:
    """(chain, origin, protocol, ports, peer members or ["*"]) of every rule of a host whose origin starts with ``prefix``."""
    ruleset = ruleset_of(plan, host)
    sets = {item["name"]: item["members"] for item in ruleset["address_sets"]}
    return [
        (chain["name"], rule["origin"], rule["protocol"], rule["ports"], sets.get(rule["peer_set"], ["*"]))
        for chain in ruleset["chains"]
        for rule in chain["rules"]
        if rule["origin"].startswith(prefix)
    ]


def control_plane_cluster() -> dict[str, Any]:
    """The seed with the lab's control plane: flannel VXLAN, API on k8s-master, CoreDNS, an upstream VM."""
    hostvars = seed_hostvars()
    add_control_plane(hostvars)
    return hostvars


def set_annotations(hostvars: dict[str, Any], annotations: dict[str, dict[str, str]]) -> None:
    """Replace every node's annotations (``{node: {key: value}}``; nodes not named get none)."""
    for name in ("k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"):
        hostvars[name]["workload"]["annotations"] = dict(annotations.get(name, {}))


def host_network_pod(name: str, namespace: str, node: str, address: str, labels: dict[str, str]) -> dict[str, Any]:
    """A DaemonSet/Deployment pod in the host network (its address is its node's)."""
    return {
        "workload": {
            "kind": "pod",
            "name": name,
            "namespace": namespace,
            "cluster": "lab",
            "addresses": [address],
            "labels": labels,
            "annotations": {},
            "node": node,
            "phase": "Running",
            "host_network": True,
            "ports": [],
        }
    }


# -- flannel (the lab's own shape) -----------------------------------------------------

WORKER = [
    ("ingress", "implicit:cluster API server to kubelets", "tcp", ["10250"], [MASTER]),
    ("ingress", "implicit:cluster overlay flannel-vxlan", "udp", ["8472"], NODES),
    ("egress", "implicit:cluster nodes to API server", "tcp", ["6443"], [MASTER]),
    ("egress", "implicit:cluster overlay flannel-vxlan", "udp", ["8472"], NODES),
]
FLANNEL_EXPECTED: dict[str, list[Rule]] = {
    "k8s-master": [
        ("ingress", "implicit:cluster nodes to API server", "tcp", ["6443"], NODES),
        ("ingress", "implicit:cluster API server to kubelets", "tcp", ["10250"], [MASTER]),
        ("ingress", "implicit:cluster DNS pods to API server", "tcp", ["6443"], ["10.244.0.53"]),
        ("ingress", "implicit:cluster overlay flannel-vxlan", "udp", ["8472"], NODES),
        ("egress", "implicit:cluster nodes to API server", "tcp", ["6443"], [MASTER]),
        ("egress", "implicit:cluster API server to kubelets", "tcp", ["10250"], NODES),
        ("egress", "implicit:cluster overlay flannel-vxlan", "udp", ["8472"], NODES),
    ],
    "k8s-node1": WORKER,
    "k8s-node2": WORKER,
    "k8s-node3": WORKER,
    DNS_POD: [
        ("egress", "implicit:cluster DNS pods to API server", "tcp", ["443", "6443"], ["172.18.192.1", MASTER]),
        ("egress", "implicit:cluster DNS pods to upstream DNS", "udp", ["53"], [UPSTREAM_DNS]),
        ("egress", "implicit:cluster DNS pods to upstream DNS", "tcp", ["53"], [UPSTREAM_DNS]),
    ],
    WORDPRESS_POD: [],
    MYSQL_POD: [],
    "haproxy": [],
    "outsider": [],
    # The resolver is itself enforced: its ingress admits the DNS pod, or its node when masqueraded.
    "upstream-dns": [
        ("ingress", "implicit:cluster DNS pods to upstream DNS", "udp", ["53"], ["10.244.0.53", MASTER]),
        ("ingress", "implicit:cluster DNS pods to upstream DNS", "tcp", ["53"], ["10.244.0.53", MASTER]),
    ],
}


@pytest.mark.parametrize(("host", "expected"), sorted(FLANNEL_EXPECTED.items()))
def test_flannel_cluster_rules_per_host(host: str, expected: list[Rule]) -> None:
    plan = compile_inline(seed_policy(), control_plane_cluster(), OPTIONS)
    assert cluster_rules(plan, host) == expected
    assert plan["warnings"] == []


def test_control_plane_golden() -> None:
    check_golden("seed_cluster", compile_inline(seed_policy(), control_plane_cluster(), OPTIONS))


def test_switched_off_removes_every_cluster_rule() -> None:
    plan = compile_inline(seed_policy(), control_plane_cluster(), {**OPTIONS, "implicit": {"cluster": False}})
    for host in FLANNEL_EXPECTED:
        assert cluster_rules(plan, host) == []
    comments = [item["comment"] for entry in plan["hosts"].values() if entry["ruleset"] for item in entry["ruleset"]["address_sets"]]
    assert comments
    assert [comment for comment in comments if comment.endswith("cluster lab)")] == ["controller to API server (from, cluster lab)"]


@pytest.mark.parametrize(
    ("implicit", "controller_rules"),
    [
        ({}, [CONTROLLER_RULE]),
        # Never lock out: the controller's API access belongs to management_ssh, not to cluster.
        ({"cluster": False}, [CONTROLLER_RULE]),
        ({"management_ssh": False}, []),
        ({"cluster": False, "management_ssh": False}, []),
    ],
)
def test_the_controller_keeps_the_api_unless_management_ssh_is_off(implicit: dict[str, bool], controller_rules: list[Rule]) -> None:
    plan = compile_inline(seed_policy(), control_plane_cluster(), {**OPTIONS, "implicit": implicit})
    assert origin_rules(plan, "k8s-master", "implicit:management_ssh controller") == controller_rules


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("vxlan", [("udp", ["8472"])]),
        ("host-gw", []),
        ("wireguard", [("udp", ["51820"])]),
        ("udp", [("udp", ["8285"])]),
    ],
)
def test_flannel_backends(backend: str, expected: list[tuple[str, list[str]]]) -> None:
    hostvars = control_plane_cluster()
    set_annotations(
        hostvars,
        {
            name: {"flannel.alpha.coreos.com/backend-type": backend, "flannel.alpha.coreos.com/public-ip": address}
            for name, address in zip(("k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"), NODES, strict=True)
        },
    )
    plan = compile_inline(seed_policy(), hostvars, OPTIONS)
    overlay = [(protocol, ports) for chain, origin, protocol, ports, _members in cluster_rules(plan, "k8s-node2") if "overlay" in origin]
    assert overlay == [*expected, *expected]  # ingress, then egress
    assert plan["warnings"] == []


def test_flannel_wireguard_opens_the_ipv6_port_only_with_ipv6_nodes() -> None:
    hostvars = control_plane_cluster()
    set_annotations(hostvars, {name: {"flannel.alpha.coreos.com/backend-type": "wireguard"} for name in ("k8s-node1", "k8s-node2")})
    hostvars["k8s-node2"]["workload"]["addresses"].append("fd00:221::12")
    plan = compile_inline(seed_policy(), hostvars, OPTIONS)
    overlay = [rule for rule in cluster_rules(plan, "k8s-node1") if "overlay" in rule[1]]
    peers = [NODE1, NODE2, "fd00:221::12"]
    assert overlay == [
        ("ingress", "implicit:cluster overlay flannel-wireguard", "udp", ["51820"], peers),
        ("ingress", "implicit:cluster overlay flannel-wireguard", "udp", ["51821"], peers),
        ("egress", "implicit:cluster overlay flannel-wireguard", "udp", ["51820"], peers),
        ("egress", "implicit:cluster overlay flannel-wireguard", "udp", ["51821"], peers),
    ]
    # Only the nodes flannel runs on take part: the master shows no backend.
    assert [rule for rule in cluster_rules(plan, "k8s-master") if "overlay" in rule[1]] == []


# -- Calico --------------------------------------------------------------------------


def calico_cluster(mode: str) -> dict[str, Any]:
    """calico-node's annotations: BGP address on a second interface (.1.x), plus the tunnel of ``mode``."""
    hostvars = control_plane_cluster()
    annotations = {}
    for index, name in enumerate(("k8s-master", "k8s-node1", "k8s-node2", "k8s-node3")):
        found = {"projectcalico.org/IPv4Address": f"172.18.1.{10 + index}/24"}
        if mode == "ipip":
            found["projectcalico.org/IPv4IPIPTunnelAddr"] = f"10.244.{index}.0"
        elif mode == "vxlan":
            found["projectcalico.org/IPv4VXLANTunnelAddr"] = f"10.244.{index}.192"
        annotations[name] = found
    set_annotations(hostvars, annotations)
    hostvars["calico-typha-5f9c8d7b6-x2x9q.calico-system.pod.lab"] = host_network_pod(
        "calico-typha-5f9c8d7b6-x2x9q", "calico-system", "k8s-node2", NODE2, {"k8s-app": "calico-typha"}
    )
    return hostvars


CALICO_PEERS = sorted([*NODES, "172.18.1.10", "172.18.1.11", "172.18.1.12", "172.18.1.13"], key=model.canonical_entry)


@pytest.mark.parametrize(
    ("mode", "overlay"),
    [
        ("bgp", [("overlay calico-bgp", "tcp", ["179"])]),
        ("ipip", [("overlay calico-bgp", "tcp", ["179"]), ("overlay calico-ipip", "ipip", [])]),
        ("vxlan", [("overlay calico-bgp", "tcp", ["179"]), ("overlay calico-vxlan", "udp", ["4789"])]),
    ],
)
def test_calico_overlays_and_typha(mode: str, overlay: list[tuple[str, str, list[str]]]) -> None:
    plan = compile_inline(seed_policy(), calico_cluster(mode), OPTIONS)
    expected_overlay = [(f"implicit:cluster {what}", protocol, ports, CALICO_PEERS) for what, protocol, ports in overlay]
    for host in ("k8s-node1", "k8s-node2"):
        rules = cluster_rules(plan, host)
        found = [(origin, protocol, ports, members) for chain, origin, protocol, ports, members in rules if "overlay" in origin]
        assert found == [*expected_overlay, *expected_overlay]
    # Typha (host network on k8s-node2): every calico node dials it; only k8s-node2 admits it.
    typha = "implicit:cluster calico nodes to typha"
    assert ("ingress", typha, "tcp", ["5473"], NODES) in cluster_rules(plan, "k8s-node2")
    assert not any(chain == "ingress" and origin == typha for chain, origin, *_rest in cluster_rules(plan, "k8s-node1"))
    assert ("egress", typha, "tcp", ["5473"], [NODE2]) in cluster_rules(plan, "k8s-node1")
    assert plan["warnings"] == [
        "pod calico-system/calico-typha-5f9c8d7b6-x2x9q uses the host network; it is a peer but not an enforcement point (its node is)"
    ]


def test_ipip_is_ipv4_protocol_4_in_both_backends() -> None:
    plan = compile_inline(seed_policy(), calico_cluster("ipip"), OPTIONS)
    ruleset = model.Ruleset.from_dict(ruleset_of(plan, "k8s-node1"))
    ipip = [rule for chain in ruleset.chains for rule in chain.rules if rule.protocol == "ipip"]
    assert [(rule.families(), rule.ports) for rule in ipip] == [((4,), ()), ((4,), ())]
    state = iptables.Renderer(BackendOptions()).state(ruleset)
    written = [spec for specs in state.chains.values() for spec in specs if "calico-ipip" in spec]
    assert [spec.split(" -m comment")[0] for spec in written] == [
        f"-p 4 -m set --match-set {iptables.ipset_name(ipip[0].peer_set or '', 4)} src",
        f"-p 4 -m set --match-set {iptables.ipset_name(ipip[1].peer_set or '', 4)} dst",
    ]
    script = nftables.full_script(nftables.render_table(ruleset, BackendOptions()))
    lines = [line.split(" accept")[0] for line in script.splitlines() if "calico-ipip" in line]
    name = nftables.set_object_name(ipip[0].peer_set or "", 4)
    assert lines == [
        f"add rule inet zerotrust ingress ip saddr @{name} meta l4proto 4",
        f"add rule inet zerotrust egress ip daddr @{name} meta l4proto 4",
    ]
    with pytest.raises(model.ModelError, match="has ports but protocol 'ipip' has none"):
        model.Rule(verdict="accept", origin="x", protocol="ipip", ports=(model.PortRange(1, 1),))
    with pytest.raises(model.ModelError, match="protocol ipip does not exist in IPv6"):
        model.Rule(verdict="accept", origin="x", protocol="ipip", family=6)


# -- Cilium --------------------------------------------------------------------------


def cilium_cluster() -> dict[str, Any]:
    hostvars = control_plane_cluster()
    set_annotations(hostvars, {})
    for index, (name, address) in enumerate(zip(("k8s-master", "k8s-node1", "k8s-node2"), (MASTER, NODE1, NODE2), strict=True)):
        host = f"cilium-{index}abcd.kube-system.pod.lab"
        hostvars[host] = host_network_pod(f"cilium-{index}abcd", "kube-system", name, address, {"k8s-app": "cilium"})
    return hostvars


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        ("auto", [("overlay cilium-vxlan", "udp", ["8472"]), ("overlay cilium-vxlan", "tcp", ["4240"])]),
        ("cilium-geneve", [("overlay cilium-geneve", "udp", ["6081"]), ("overlay cilium-geneve", "tcp", ["4240"])]),
    ],
)
def test_cilium_agents_show_the_overlay(overlay: str, expected: list[tuple[str, str, list[str]]]) -> None:
    plan = compile_inline(seed_policy(), cilium_cluster(), {**OPTIONS, "overlay": overlay})
    # Detected: only the nodes running an agent; stated: every node of the cluster.
    peers = [MASTER, NODE1, NODE2] if overlay == "auto" else NODES
    rules = cluster_rules(plan, "k8s-node1")
    found = [(origin, protocol, ports, members) for _chain, origin, protocol, ports, members in rules if "overlay" in origin]
    rows = [(f"implicit:cluster {what}", protocol, ports, peers) for what, protocol, ports in expected]
    assert found == [*rows, *rows]
    node3 = [rule for rule in cluster_rules(plan, "k8s-node3") if "overlay" in rule[1]]
    assert bool(node3) == (overlay != "auto")


# -- options.overlay, etcd, the API server's shapes ------------------------------------


def test_overlay_option_states_and_overrides() -> None:
    hostvars = control_plane_cluster()
    set_annotations(hostvars, {})
    plan = compile_inline(seed_policy(), hostvars, OPTIONS)
    assert plan["warnings"] == [
        "cluster lab: no overlay shows (no flannel or Calico node annotation, no Cilium agent pod); "
        "no node-to-node overlay traffic is allowed; state options.overlay (none for routed pod networks)"
    ]
    plan = compile_inline(seed_policy(), hostvars, {**OPTIONS, "overlay": "none"})
    assert plan["warnings"] == []
    assert not any("overlay" in rule[1] for rule in cluster_rules(plan, "k8s-node1"))
    # Stated overlays replace what the annotations show (here flannel vxlan).
    plan = compile_inline(seed_policy(), control_plane_cluster(), {**OPTIONS, "overlay": ["calico-bgp", "calico-ipip"]})
    overlay = [(rule[1], rule[2]) for rule in cluster_rules(plan, "k8s-node1") if rule[0] == "egress" and "overlay" in rule[1]]
    assert overlay == [("implicit:cluster overlay calico-bgp", "tcp"), ("implicit:cluster overlay calico-ipip", "ipip")]


@pytest.mark.parametrize(
    ("control_plane", "with_etcd"),
    [(["k8s-master"], []), (["k8s-master", "k8s-node1", "k8s-node2"], ["k8s-master", "k8s-node1", "k8s-node2"])],
)
def test_etcd_only_between_control_plane_nodes(control_plane: list[str], with_etcd: list[str]) -> None:
    hostvars = control_plane_cluster()
    for name in control_plane:
        hostvars[name]["workload"]["labels"]["node-role.kubernetes.io/control-plane"] = ""
    plan = compile_inline(seed_policy(), hostvars, OPTIONS)
    members = [hostvars[name]["workload"]["addresses"][0] for name in with_etcd]
    for name in ("k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"):
        etcd = [rule for rule in cluster_rules(plan, name) if "etcd" in rule[1]]
        expected = [
            (chain, "implicit:cluster etcd between control-plane nodes", "tcp", ["2379-2380"], members) for chain in ("ingress", "egress")
        ]
        assert etcd == (expected if name in with_etcd else [])


def test_api_server_outside_the_inventory() -> None:
    """A managed control plane: the endpoint is no node's address; nodes dial it, kubelets admit it."""
    hostvars = control_plane_cluster()
    hostvars[API_SERVICE]["workload"]["endpoints"][0].update(addresses=["192.0.2.50"], node=None)
    plan = compile_inline(seed_policy(), hostvars, OPTIONS)
    assert [rule for rule in cluster_rules(plan, "k8s-node1") if "API" in rule[1]] == [
        ("ingress", "implicit:cluster API server to kubelets", "tcp", ["10250"], ["192.0.2.50"]),
        ("egress", "implicit:cluster nodes to API server", "tcp", ["6443"], ["192.0.2.50"]),
    ]
    assert not any(rule[0] == "ingress" and "to API server" in rule[1] for rule in cluster_rules(plan, "k8s-master"))


def test_no_api_endpoints_is_a_warning_not_an_allowance() -> None:
    hostvars = control_plane_cluster()
    hostvars[API_SERVICE]["workload"]["endpoints"] = []
    plan = compile_inline(seed_policy(), hostvars, OPTIONS)
    assert plan["warnings"] == ["service default/kubernetes of cluster lab has no endpoints; no cluster allowance toward the API server"]
    assert not any("API" in rule[1] for rule in cluster_rules(plan, "k8s-master"))


def test_api_access_selects_the_pods_that_reach_the_api() -> None:
    plan = compile_inline(seed_policy(), control_plane_cluster(), {**OPTIONS, "api_access": "namespace = wordpress"})
    expected = ("egress", "implicit:cluster pods to API server", "tcp", ["443", "6443"], ["172.18.192.1", MASTER])
    assert cluster_rules(plan, WORDPRESS_POD) == [expected]
    assert cluster_rules(plan, MYSQL_POD) == [expected]
    assert ("ingress", "implicit:cluster pods to API server", "tcp", ["6443"], ["10.244.1.94", "10.244.3.18"]) in cluster_rules(
        plan, "k8s-master"
    )
    plan = compile_inline(seed_policy(), control_plane_cluster(), {**OPTIONS, "api_access": None})
    assert cluster_rules(plan, WORDPRESS_POD) == []
    assert "implicit:cluster pods to API server" not in [rule[1] for rule in cluster_rules(plan, "k8s-master")]


def test_without_management_addresses_the_api_port_stays_open_like_ssh() -> None:
    plan = compile_inline(seed_policy(), control_plane_cluster(), {"upstream_dns": [UPSTREAM_DNS]})
    assert ("ingress", "implicit:management_ssh controller to API server", "tcp", ["6443"], ["*"]) in origin_rules(
        plan, "k8s-master", "implicit:"
    )
    plan = compile_inline(seed_policy(), control_plane_cluster(), {"implicit": {"management_ssh": False}})
    assert not any("controller" in rule[1] for rule in origin_rules(plan, "k8s-master", "implicit:"))


def test_a_policy_to_default_kubernetes_opens_the_api_server_node() -> None:
    """A node-address endpoint is enforced by the node: the policy opens its ingress to the consumer."""
    policy = seed_policy()
    policy["filters"]["api"] = "service_name = kubernetes and namespace = default"
    policy["policies"]["default"].append({"consumer": "frontend", "provider": "api", "ports": ["tcp/443"]})
    plan = compile_inline(policy, control_plane_cluster(), {**OPTIONS, "implicit": {"cluster": False}})
    master = ruleset_of(plan, "k8s-master")
    sets = {item["name"]: item["members"] for item in master["address_sets"]}
    rules = master["chains"][0]["rules"]
    ingress = [(rule["origin"], rule["ports"], sets[rule["peer_set"]]) for rule in rules if "frontend->api" in rule["origin"]]
    assert ingress == [("default[2] frontend->api tcp/443", ["6443"], ["10.244.1.94"])]
    oracle = Reachability.from_hostvars(policy, control_plane_cluster(), {**OPTIONS, "implicit": {"cluster": False}})
    verdict = oracle.check(Flow(WORDPRESS_POD, API_SERVICE, "tcp", 443, "cluster_ip"))
    assert (verdict.allowed, verdict.decided_by) == (True, ("default[2] frontend->api tcp/443",))
    verdict = oracle.check(Flow(MYSQL_POD, API_SERVICE, "tcp", 443, "cluster_ip"))
    assert (verdict.allowed, verdict.decided_by) == (False, ("catch_all",))


# -- the oracle answers from the same flows ---------------------------------------------

ORACLE = [
    (Flow("k8s-node2", "k8s-master", "tcp", 6443), True, "implicit:cluster nodes to API server"),
    (Flow("k8s-node2", "k8s-master", "tcp", 6444), False, "catch_all"),
    (Flow("k8s-master", "k8s-node3", "tcp", 10250), True, "implicit:cluster API server to kubelets"),
    (Flow("k8s-node1", "k8s-node3", "tcp", 10250), False, "catch_all"),
    (Flow("k8s-node1", "k8s-node3", "udp", 8472), True, "implicit:cluster overlay flannel-vxlan"),
    (Flow("k8s-node1", "k8s-node3", "udp", 4789), False, "catch_all"),
    (Flow("k8s-node1", "k8s-node3", "tcp", 2379), False, "catch_all"),
    (Flow(DNS_POD, API_SERVICE, "tcp", 443, "cluster_ip"), True, "implicit:cluster DNS pods to API server"),
    (Flow(WORDPRESS_POD, API_SERVICE, "tcp", 443, "cluster_ip"), False, "catch_all"),
    (Flow(DNS_POD, "upstream-dns", "udp", 53), True, "implicit:cluster DNS pods to upstream DNS"),
    (Flow(DNS_POD, "upstream-dns", "tcp", 53), True, "implicit:cluster DNS pods to upstream DNS"),
    (Flow(WORDPRESS_POD, "upstream-dns", "udp", 53), False, "catch_all"),
    (Flow(CONTROLLER, "k8s-master", "tcp", 6443), True, "implicit:management_ssh controller to API server"),
    (Flow("outsider", "k8s-master", "tcp", 6443), False, "catch_all"),
    (Flow(CONTROLLER, "k8s-node1", "tcp", 6443), False, "catch_all"),
]


@pytest.mark.parametrize(("flow", "allowed", "origin"), ORACLE)
def test_oracle_knows_the_cluster_allowance(flow: Flow, allowed: bool, origin: str) -> None:
    verdict = Reachability.from_hostvars(seed_policy(), control_plane_cluster(), OPTIONS).check(flow)
    assert (verdict.allowed, verdict.decided_by) == (allowed, (origin,)), verdict.reason


@pytest.mark.parametrize("flow", [flow for flow, allowed, origin in ORACLE if allowed and origin.startswith("implicit:cluster")])
def test_oracle_without_the_allowance_denies(flow: Flow) -> None:
    options = {**OPTIONS, "implicit": {"cluster": False}}
    verdict = Reachability.from_hostvars(seed_policy(), control_plane_cluster(), options).check(flow)
    assert (verdict.allowed, verdict.decided_by) == (False, ("catch_all",)), verdict.reason


def test_oracle_ipip_between_calico_nodes() -> None:
    oracle = Reachability.from_hostvars(seed_policy(), calico_cluster("ipip"), OPTIONS)
    verdict = oracle.check(Flow("k8s-node1", "k8s-node2", "ipip"))
    assert (verdict.allowed, verdict.decided_by) == (True, ("implicit:cluster overlay calico-ipip",))
    verdict = oracle.check(Flow("k8s-node1", "k8s-node2", "tcp", 5473))
    assert (verdict.allowed, verdict.decided_by) == (True, ("implicit:cluster calico nodes to typha",))
    verdict = oracle.check(Flow("k8s-node1", "k8s-node3", "tcp", 5473))
    assert (verdict.allowed, verdict.decided_by) == (False, ("catch_all",))


# -- options ---------------------------------------------------------------------------


OVERLAY_NAMES = ", ".join(
    [
        *("flannel-vxlan", "flannel-udp", "flannel-wireguard", "flannel-host-gw"),
        *("calico-bgp", "calico-ipip", "calico-vxlan", "calico-wireguard", "cilium-vxlan", "cilium-geneve"),
    ]
)
EXPECTED_OVERLAY = f"expected auto, none or a list of {OVERLAY_NAMES}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"upstream_dns": ["8.8.8.8", "resolver.example"]},
            "options.upstream_dns[1]: is not an IP address or CIDR (in 'resolver.example')",
        ),
        ({"upstream_dns": {"a": 1}}, "options.upstream_dns: must be a list of IP addresses or CIDRs (in \"{'a': 1}\")"),
        (
            {"api_access": "namespace =="},
            "options.api_access: expected a value after '=', found '=' (in 'namespace ==' at position 11)",
        ),
        ({"api_access": 5}, "options.api_access: must be a query string (empty for no pods) (in '5')"),
        ({"overlay": "weave"}, f"options.overlay: unknown overlay; {EXPECTED_OVERLAY} (in 'weave')"),
        ({"overlay": ["calico-bgp", "ipip"]}, f"options.overlay[1]: unknown overlay; {EXPECTED_OVERLAY} (in 'ipip')"),
        ({"overlay": 3}, f"options.overlay: must be auto, none or a list of {OVERLAY_NAMES} (in '3')"),
        ({"implicit": {"cluster": "yes"}}, "options.implicit.cluster: must be true or false (in 'yes')"),
    ],
)
def test_options_errors_name_the_field_and_text(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_options(raw)
    assert str(caught.value) == f"the policy has 1 problem:\n  - {message}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, (("auto",), (), "namespace = kube-system")),
        ({"overlay": "NONE", "upstream_dns": "192.0.2.53", "api_access": ""}, (("none",), ("192.0.2.53",), None)),
        (
            {"overlay": ["cilium-geneve", "calico-bgp"], "upstream_dns": ["10.0.0.0/30"]},
            (("calico-bgp", "cilium-geneve"), ("10.0.0.0/30",), "namespace = kube-system"),
        ),
        ({"overlay": []}, (("none",), (), "namespace = kube-system")),
    ],
)
def test_options_parse(raw: dict[str, Any], expected: tuple[Any, ...]) -> None:
    options = parse_options(raw)
    assert (options.overlay, options.upstream_dns, options.api_access_text) == expected
