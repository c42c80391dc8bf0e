# SPDX-License-Identifier: GPL-3.0-or-later
"""Property-based tests (hypothesis).

- Random policies either compile or fail with a PolicyError naming each problem; nothing else escapes.
- Compiling is deterministic: equal input gives byte-identical JSON, whatever the dict order.
- The compiled rulesets (run through a tiny chain evaluator) and the reachability oracle agree:
  direct flows between pods and VMs, NodePort flows from outside (Cluster and Local), ClusterIP flows.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import PolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import Flow, Reachability
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.unit.plugins.module_utils._policy.policy_seed import MYSQL_POD, WORDPRESS_POD, compile_inline, seed_hostvars

QUERIES = [
    "pod_name = wordpress-6dfdd9f64f-d75j2",
    "pod_name contains wordpress-mysql",
    "service_name = wordpress and namespace = wordpress",
    "address = 172.18.221.1",
    "address = 172.18.221.0/24",
    "address in (192.0.2.0/24, 2001:db8::/32)",
    "kind = vm",
    "kind in (pod, vm)",
    "label.tier = frontend or group = loadbalancers",
    "not label.app exists",
    "label.app = wordpress and not kind = service",
    "var.zt_pod.node = k8s-node3",
    "group = vms",
    "kind = node",
    # invalid ones
    "pod_name = (",
    "colour = red",
    "address = 10.0.0.999",
    "kind = pod and",
]
PORTS = ["tcp/80", "tcp/3306", "udp/53", "tcp/8000-8080", "tcp/http", "tcp/mysql", "icmp", "any", "tcp/0", "tcp/9-1", "xtp/1", 7]
NAMES = ["a", "b", "c", "d", "e"]


VALID_QUERIES = QUERIES[:14]
VALID_PORTS = PORTS[:8]


@st.composite
def policies(draw: Any) -> dict[str, Any]:
    """Mostly valid policies (so the compiler is exercised), sometimes broken in any field."""
    valid = draw(st.integers(0, 9)) < 8
    queries = VALID_QUERIES if valid else QUERIES
    filters = draw(st.dictionaries(st.sampled_from(NAMES), st.sampled_from(queries), min_size=1, max_size=5))
    names = sorted(filters) if valid else [*NAMES, "missing"]
    rule = st.fixed_dictionaries(
        {
            "consumer": st.sampled_from(names),
            "provider": st.sampled_from(names),
            "ports": st.lists(st.sampled_from(VALID_PORTS if valid else PORTS), min_size=1 if valid else 0, max_size=3),
        },
        optional={"action": st.sampled_from(["allow", "deny"] if valid else ["allow", "deny", "maybe"])},
    )
    return {
        "filters": filters,
        "policies": {
            "absolute": draw(st.lists(rule, max_size=2)),
            "default": draw(st.lists(rule, max_size=4)),
            "catch_all": draw(st.sampled_from(["deny", "deny", "allow"] if valid else ["deny", "allow", "sometimes"])),
        },
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), order=st.randoms(use_true_random=False))
def test_random_policies_compile_or_name_their_problems(policy: dict[str, Any], order: Any) -> None:
    try:
        plan = compile_inline(policy, seed_hostvars())
    except PolicyError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.where.split(".")[0].split("[")[0] in ("filters", "policies", "policy")
            assert problem.message
        return
    again_items = list(seed_hostvars().items())
    order.shuffle(again_items)
    shuffled_policy = dict(policy)
    shuffled_policy["filters"] = dict(reversed(list(policy["filters"].items())))
    again = compile_inline(shuffled_policy, dict(again_items))
    assert json.dumps(plan, sort_keys=True) == json.dumps(again, sort_keys=True)


# -- a tiny evaluator of compiled rulesets, for direct flows between pods and VMs -----

ENDPOINTS = ["haproxy", "outsider", WORDPRESS_POD, MYSQL_POD]
ADDRESS = {"haproxy": "172.18.221.1", "outsider": "172.18.221.99", WORDPRESS_POD: "10.244.1.94", MYSQL_POD: "10.244.3.18"}


def ruleset_of(plan: dict[str, Any], host: str) -> Optional[dict[str, Any]]:
    if host in plan["hosts"]:
        return plan["hosts"][host]["ruleset"]  # type: ignore[no-any-return]
    for entry in plan["hosts"].values():
        for pod in entry["pods"]:
            if pod["host"] == host:
                return pod["ruleset"]  # type: ignore[no-any-return]
    return None


def chain_allows(ruleset: Optional[dict[str, Any]], chain_name: str, peer: str, protocol: str, port: int) -> bool:
    if ruleset is None:
        return True
    sets = {item["name"]: item["members"] for item in ruleset["address_sets"]}
    chain = next(item for item in ruleset["chains"] if item["name"] == chain_name)
    for rule in chain["rules"]:
        if rule["interface"] or rule["icmp_types"] or "established" in rule["conntrack"]:
            continue  # loopback, neighbour discovery and replies never match a new connection between two hosts
        if rule["protocol"] not in (None, protocol):
            continue
        if rule["ports"] and not any(int(p.split("-")[0]) <= port <= int(p.split("-")[-1]) for p in rule["ports"]):
            continue
        if rule["peer_set"] is not None and not any(
            ipaddress.ip_address(peer) in ipaddress.ip_network(member) for member in sets[rule["peer_set"]]
        ):
            continue
        return bool(rule["verdict"] == "accept")
    return bool(chain["default_verdict"] == "accept")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=policies(),
    source=st.sampled_from(ENDPOINTS),
    destination=st.sampled_from(ENDPOINTS),
    protocol_port=st.sampled_from([("tcp", 80), ("tcp", 3306), ("udp", 53), ("tcp", 8080), ("tcp", 22)]),
)
def test_compiled_rules_agree_with_reachability(
    policy: dict[str, Any], source: str, destination: str, protocol_port: tuple[str, int]
) -> None:
    if source == destination:
        return
    try:
        plan = compile_inline(policy, seed_hostvars())
    except PolicyError:
        return
    protocol, port = protocol_port
    verdict = Reachability.from_hostvars(policy, seed_hostvars()).check(Flow(source, destination, protocol, port))
    simulated = chain_allows(ruleset_of(plan, source), "egress", ADDRESS[destination], protocol, port) and chain_allows(
        ruleset_of(plan, destination), "ingress", ADDRESS[source], protocol, port
    )
    event(f"valid policy, flow {'allowed' if simulated else 'denied'}")
    assert simulated == verdict.allowed, (verdict, policy)


NODE_ADDRESS = {"k8s-master": "172.18.221.10", "k8s-node1": "172.18.221.11", "k8s-node2": "172.18.221.12", "k8s-node3": "172.18.221.13"}
POD_NODE = {WORDPRESS_POD: ("k8s-node1", "10.244.1.1")}


def nodeport_allowed(plan: dict[str, Any], source: str, service_port: int, node_port: int, local: bool) -> bool:
    """A VM (or external address) reaching the seed's wordpress service through each node's NodePort.

    Allowed only if it is allowed whichever node it enters: consumer egress to that node,
    the node's guard, then the endpoint pod's ingress from the address it sees. With
    ``externalTrafficPolicy: Local`` only the nodes with a local endpoint are entry points
    (kube-proxy drops the NodePort on the others, so no policy is asked there).
    """
    source_address = ADDRESS.get(source, source)
    source_ruleset = ruleset_of(plan, source)
    pod_node, gateway = POD_NODE[WORDPRESS_POD]
    for node, node_address in NODE_ADDRESSES_ITEMS:
        if local and node != pod_node:
            continue
        if not chain_allows(source_ruleset, "egress", node_address, "tcp", node_port):
            return False
        guard = ruleset_of(plan, node)
        if guard is not None and not guard_allows(guard, source_address, node_port):
            return False
        seen = source_address if local else (gateway if node == pod_node else node_address)
        if not chain_allows(ruleset_of(plan, WORDPRESS_POD), "ingress", seen, "tcp", service_port):
            return False
    return True


NODE_ADDRESSES_ITEMS = sorted(NODE_ADDRESS.items())


def guard_allows(ruleset: dict[str, Any], peer: str, port: int) -> bool:
    sets = {item["name"]: item["members"] for item in ruleset["address_sets"]}
    chain = next(item for item in ruleset["chains"] if item["name"] == "nodeport_guard")
    for rule in chain["rules"]:
        if rule["protocol"] not in (None, "tcp") or (rule["ports"] and str(port) not in rule["ports"]):
            continue
        if rule["peer_set"] is not None and not any(
            ipaddress.ip_address(peer) in ipaddress.ip_network(member) for member in sets[rule["peer_set"]]
        ):
            continue
        return bool(rule["verdict"] == "return")
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), source=st.sampled_from(["haproxy", "outsider", "192.0.2.7"]), local=st.booleans())
def test_nodeport_flows_agree_with_reachability(policy: dict[str, Any], source: str, local: bool) -> None:
    hostvars = seed_hostvars()
    if local:
        hostvars["wordpress.wordpress.service.lab"]["workload"]["external_traffic_policy"] = "Local"
    try:
        plan = compile_inline(policy, hostvars)
    except PolicyError:
        return
    verdict = Reachability.from_hostvars(policy, hostvars).check(Flow(source, "wordpress.wordpress.service.lab", "tcp", 80, "node_port"))
    simulated = nodeport_allowed(plan, source, 80, 30358, local)
    event(f"valid policy, nodeport flow {'allowed' if simulated else 'denied'}")
    assert simulated == verdict.allowed, (verdict, policy)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), source=st.sampled_from([MYSQL_POD, WORDPRESS_POD]))
def test_cluster_ip_flows_agree_with_reachability(policy: dict[str, Any], source: str) -> None:
    try:
        plan = compile_inline(policy, seed_hostvars())
    except PolicyError:
        return
    verdict = Reachability.from_hostvars(policy, seed_hostvars()).check(
        Flow(source, "wordpress.wordpress.service.lab", "tcp", 80, "cluster_ip")
    )
    # The consumer's namespace sees the ClusterIP; the endpoint pod sees the consumer on the target port.
    simulated = chain_allows(ruleset_of(plan, source), "egress", "172.18.202.253", "tcp", 80) and chain_allows(
        ruleset_of(plan, WORDPRESS_POD), "ingress", ADDRESS[source], "tcp", 80
    )
    event(f"valid policy, cluster_ip flow {'allowed' if simulated else 'denied'}")
    assert simulated == verdict.allowed, (verdict, policy)
