# SPDX-License-Identifier: GPL-3.0-or-later
"""The compiler on the seed lab: golden files plus the rules that must be there, by name."""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.model import Ruleset
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import PolicyError

from tests.unit.plugins.module_utils._policy.policy_seed import (
    MYSQL_POD,
    WORDPRESS_POD,
    WORDPRESS_SERVICE,
    add_dns,
    compile_inline,
    seed_hostvars,
    seed_policy,
)

GOLDEN = Path(__file__).parent / "golden"
OPTIONS = {"management_addresses": ["172.18.221.254"]}
NODE_ADDRESSES = ["172.18.221.10", "172.18.221.11", "172.18.221.12", "172.18.221.13"]


def check_golden(name: str, plan: dict[str, Any]) -> None:
    """Compare with golden/<name>.json; ZT_UPDATE_GOLDEN=1 rewrites it."""
    text = json.dumps(plan, indent=1, sort_keys=True) + "\n"
    path = GOLDEN / f"{name}.json"
    if os.environ.get("ZT_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file (ZT_UPDATE_GOLDEN=1 to accept)"


def ruleset_of(plan: dict[str, Any], host: str) -> dict[str, Any]:
    """The ruleset of a VM/node, or of a pod (found under its node)."""
    if host in plan["hosts"] and plan["hosts"][host]["ruleset"] is not None:
        return plan["hosts"][host]["ruleset"]  # type: ignore[no-any-return]
    for entry in plan["hosts"].values():
        for pod in entry["pods"]:
            if pod["host"] == host:
                return pod["ruleset"]  # type: ignore[no-any-return]
    raise KeyError(host)


def policy_rules(ruleset: dict[str, Any], chain: str) -> list[tuple[str, str | None, list[str], list[str], str]]:
    """(verdict, protocol, ports, peer members, origin) of the non-implicit rules of a chain."""
    sets = {item["name"]: item["members"] for item in ruleset["address_sets"]}
    found = next(item for item in ruleset["chains"] if item["name"] == chain)
    return [
        (rule["verdict"], rule["protocol"], rule["ports"], sets.get(rule["peer_set"], ["*"]), rule["origin"])
        for rule in found["rules"]
        if not rule["origin"].startswith("implicit:")
    ]


def default_verdict(ruleset: dict[str, Any], chain: str) -> str:
    return str(next(item for item in ruleset["chains"] if item["name"] == chain)["default_verdict"])


@pytest.fixture
def seed_plan() -> dict[str, Any]:
    return compile_inline(seed_policy(), seed_hostvars(), OPTIONS)


def test_seed_golden(seed_plan: dict[str, Any]) -> None:
    check_golden("seed", seed_plan)


def test_seed_local_golden() -> None:
    hostvars = seed_hostvars()
    hostvars[WORDPRESS_SERVICE]["workload"]["external_traffic_policy"] = "Local"
    check_golden("seed_local", compile_inline(seed_policy(), hostvars, OPTIONS))


def test_seed_plan_shape(seed_plan: dict[str, Any]) -> None:
    assert sorted(seed_plan["hosts"]) == ["haproxy", "k8s-master", "k8s-node1", "k8s-node2", "k8s-node3", "outsider"]
    assert seed_plan["warnings"] == []
    assert [pod["host"] for pod in seed_plan["hosts"]["k8s-node1"]["pods"]] == [WORDPRESS_POD]
    assert [pod["host"] for pod in seed_plan["hosts"]["k8s-node3"]["pods"]] == [MYSQL_POD]
    pod = seed_plan["hosts"]["k8s-node1"]["pods"][0]
    assert {key: pod[key] for key in ("namespace", "name", "uid", "ips", "netns")} == {
        "namespace": "wordpress",
        "name": "wordpress-6dfdd9f64f-d75j2",
        "uid": "5f0c1d2e-0000-4000-8000-000000000001",
        "ips": ["10.244.1.94"],
        "netns": None,
    }
    # Every ruleset round-trips through the model unchanged.
    for host in ("haproxy", "k8s-node1", WORDPRESS_POD, MYSQL_POD):
        data = ruleset_of(seed_plan, host)
        assert Ruleset.from_dict(data).to_dict() == data


def test_haproxy_egress_reaches_every_node_on_the_nodeport(seed_plan: dict[str, Any]) -> None:
    haproxy = ruleset_of(seed_plan, "haproxy")
    assert policy_rules(haproxy, "egress") == [("accept", "tcp", ["30358"], NODE_ADDRESSES, "default[0] haproxy->wordpress tcp/30358")]
    assert policy_rules(haproxy, "ingress") == []
    assert default_verdict(haproxy, "egress") == "deny"


@pytest.mark.parametrize("node", ["k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"])
def test_nodeport_guard_admits_only_haproxy(seed_plan: dict[str, Any], node: str) -> None:
    ruleset = ruleset_of(seed_plan, node)
    guard = next(chain for chain in ruleset["chains"] if chain["name"] == "nodeport_guard")
    assert guard["hook"] == "prerouting"
    assert guard["default_verdict"] == "return"
    assert [
        (rule["verdict"], rule["conntrack"], rule["local_destination"], rule["protocol"], rule["ports"]) for rule in guard["rules"]
    ] == [
        ("return", ["new"], True, "tcp", ["30358"]),
        ("drop", ["new"], True, "tcp", ["30358"]),
    ]
    assert policy_rules(ruleset, "nodeport_guard")[0][3] == ["172.18.221.1"]
    assert policy_rules(ruleset, "nodeport_guard")[1][3] == ["*"]


def test_wordpress_pod_ingress_from_masquerade_addresses(seed_plan: dict[str, Any]) -> None:
    wordpress = ruleset_of(seed_plan, WORDPRESS_POD)
    assert policy_rules(wordpress, "ingress") == [
        (
            "accept",
            "tcp",
            ["80"],
            ["10.244.1.1", "172.18.221.10", "172.18.221.12", "172.18.221.13"],
            "default[0] haproxy->wordpress tcp/80 via nodeport",
        )
    ]
    assert policy_rules(wordpress, "egress") == [("accept", "tcp", ["3306"], ["10.244.3.18"], "default[1] frontend->db tcp/3306")]


def test_wordpress_pod_ingress_from_haproxy_when_local() -> None:
    hostvars = seed_hostvars()
    hostvars[WORDPRESS_SERVICE]["workload"]["external_traffic_policy"] = "Local"
    plan = compile_inline(seed_policy(), hostvars, OPTIONS)
    assert policy_rules(ruleset_of(plan, WORDPRESS_POD), "ingress") == [
        ("accept", "tcp", ["80"], ["172.18.221.1"], "default[0] haproxy->wordpress tcp/80")
    ]


def test_mysql_ingress_from_wordpress_only(seed_plan: dict[str, Any]) -> None:
    mysql = ruleset_of(seed_plan, MYSQL_POD)
    assert policy_rules(mysql, "ingress") == [("accept", "tcp", ["3306"], ["10.244.1.94"], "default[1] frontend->db tcp/3306")]
    assert policy_rules(mysql, "egress") == []
    assert default_verdict(mysql, "ingress") == "deny"


def test_outsider_gets_only_the_catch_all(seed_plan: dict[str, Any]) -> None:
    outsider = ruleset_of(seed_plan, "outsider")
    assert policy_rules(outsider, "ingress") == []
    assert policy_rules(outsider, "egress") == []
    assert [rule["origin"] for rule in outsider["chains"][0]["rules"]] == [
        "implicit:established",
        "implicit:loopback",
        "implicit:icmpv6_neighbour_discovery",
        "implicit:management_ssh",
    ]


def test_in_cluster_consumer_of_a_service_gets_clusterip_and_endpoints() -> None:
    policy = seed_policy()
    policy["filters"]["db"] = "pod_name contains wordpress-mysql"
    policy["policies"]["default"].append({"consumer": "db", "provider": "wordpress", "ports": ["tcp/http"]})
    plan = compile_inline(policy, seed_hostvars(), OPTIONS)
    assert policy_rules(ruleset_of(plan, MYSQL_POD), "egress") == [
        ("accept", "tcp", ["80"], ["10.244.1.94", "172.18.202.253"], "default[2] db->wordpress tcp/80"),
    ]
    assert policy_rules(ruleset_of(plan, WORDPRESS_POD), "ingress")[1] == (
        "accept",
        "tcp",
        ["80"],
        ["10.244.3.18"],
        "default[2] db->wordpress tcp/http",
    )


def test_named_target_port_resolves_per_endpoint() -> None:
    hostvars = seed_hostvars()
    service = hostvars[WORDPRESS_SERVICE]["workload"]
    service["ports"][0]["target_port"] = "web"
    service["endpoints"][0]["ports"] = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    policy = seed_policy()
    policy["policies"]["default"].append({"consumer": "db", "provider": "wordpress", "ports": ["tcp/80"]})
    plan = compile_inline(policy, hostvars, OPTIONS)
    egress = policy_rules(ruleset_of(plan, MYSQL_POD), "egress")
    assert [(rule[2], rule[3]) for rule in egress] == [(["80"], ["172.18.202.253"]), (["8080"], ["10.244.1.94"])]
    assert [rule[2] for rule in policy_rules(ruleset_of(plan, WORDPRESS_POD), "ingress")] == [["8080"], ["8080"]]
    # Without the slice's port, the pod's container port of that name answers.
    service["endpoints"][0]["ports"] = []
    hostvars[WORDPRESS_POD]["workload"]["ports"] = [{"name": "web", "port": 8081, "protocol": "TCP"}]
    plan = compile_inline(policy, hostvars, OPTIONS)
    assert [rule[2] for rule in policy_rules(ruleset_of(plan, WORDPRESS_POD), "ingress")] == [["8081"], ["8081"]]


def test_action_deny_at_both_ends_and_ranks_order() -> None:
    policy = seed_policy()
    policy["filters"]["everything"] = "kind in (pod, vm, node)"
    policy["policies"]["absolute"] = [{"consumer": "frontend", "provider": "db", "ports": ["tcp/3306"], "action": "deny"}]
    policy["policies"]["default"].insert(0, {"consumer": "everything", "provider": "db", "ports": ["tcp/3306"]})
    plan = compile_inline(policy, seed_hostvars(), OPTIONS)
    assert [(rule[0], rule[4]) for rule in policy_rules(ruleset_of(plan, MYSQL_POD), "ingress")] == [
        ("deny", "absolute[0] deny frontend->db tcp/3306"),
        ("accept", "default[0] everything->db tcp/3306"),
        ("accept", "default[2] frontend->db tcp/3306"),
    ]
    assert [(rule[0], rule[4]) for rule in policy_rules(ruleset_of(plan, WORDPRESS_POD), "egress")] == [
        ("deny", "absolute[0] deny frontend->db tcp/3306"),
        ("accept", "default[0] everything->db tcp/3306"),
        ("accept", "default[2] frontend->db tcp/3306"),
    ]


def test_default_deny_before_default_allow() -> None:
    policy = seed_policy()
    policy["policies"]["default"].append({"consumer": "frontend", "provider": "db", "ports": ["tcp/3306"], "action": "deny"})
    plan = compile_inline(policy, seed_hostvars(), OPTIONS)
    assert [rule[0] for rule in policy_rules(ruleset_of(plan, MYSQL_POD), "ingress")] == ["deny", "accept"]


def test_catch_all_allow() -> None:
    policy = seed_policy()
    policy["policies"]["catch_all"] = "allow"
    plan = compile_inline(policy, seed_hostvars(), OPTIONS)
    node = ruleset_of(plan, "k8s-node2")
    assert default_verdict(node, "ingress") == "accept"
    assert [rule[0] for rule in policy_rules(node, "nodeport_guard")] == ["return"]


def implicit_origins(ruleset: dict[str, Any], chain: str) -> list[str]:
    found = next(item for item in ruleset["chains"] if item["name"] == chain)
    return [rule["origin"] for rule in found["rules"] if rule["origin"].startswith("implicit:")]


def test_implicit_allowances_are_switchable() -> None:
    off = {
        "implicit": dict.fromkeys(
            ["established", "loopback", "icmpv6_neighbour_discovery", "management_ssh", "node_to_pods", "dns", "cluster"], False
        )
    }
    plan = compile_inline(seed_policy(), seed_hostvars(), off)
    for host in ("haproxy", "k8s-node1", WORDPRESS_POD):
        for chain in ("ingress", "egress"):
            assert implicit_origins(ruleset_of(plan, host), chain) == []
    plan = compile_inline(seed_policy(), seed_hostvars(), {"implicit": {"management_ssh": False}})
    assert implicit_origins(ruleset_of(plan, "haproxy"), "ingress") == [
        "implicit:established",
        "implicit:loopback",
        "implicit:icmpv6_neighbour_discovery",
    ]


def test_management_ssh_never_on_pods_and_from_anywhere_without_addresses() -> None:
    plan = compile_inline(seed_policy(), seed_hostvars())
    assert "implicit:management_ssh" not in implicit_origins(ruleset_of(plan, WORDPRESS_POD), "ingress")
    ssh = next(rule for rule in ruleset_of(plan, "k8s-node1")["chains"][0]["rules"] if rule["origin"] == "implicit:management_ssh")
    assert (ssh["protocol"], ssh["ports"], ssh["peer_set"]) == ("tcp", ["22"], None)


def test_node_to_pods_both_directions(seed_plan: dict[str, Any]) -> None:
    node = ruleset_of(seed_plan, "k8s-node3")
    sets = {item["name"]: item["members"] for item in node["address_sets"]}
    rule = next(rule for rule in node["chains"][1]["rules"] if rule["origin"] == "implicit:node_to_pods")
    assert sets[rule["peer_set"]] == ["10.244.3.0/24"]
    pod = ruleset_of(seed_plan, MYSQL_POD)
    sets = {item["name"]: item["members"] for item in pod["address_sets"]}
    rule = next(rule for rule in pod["chains"][0]["rules"] if rule["origin"] == "implicit:node_to_pods")
    assert sets[rule["peer_set"]] == ["10.244.3.1"]


def test_dns_allowance() -> None:
    hostvars = seed_hostvars()
    add_dns(hostvars)
    plan = compile_inline(seed_policy(), hostvars, OPTIONS)
    pod = ruleset_of(plan, MYSQL_POD)
    sets = {item["name"]: item["members"] for item in pod["address_sets"]}
    dns = [
        (rule["protocol"], rule["ports"], sets[rule["peer_set"]]) for rule in pod["chains"][1]["rules"] if rule["origin"] == "implicit:dns"
    ]
    assert dns == [("udp", ["53"], ["10.96.0.10", "10.244.0.5"]), ("tcp", ["53", "1053"], ["10.96.0.10", "10.244.0.5"])]
    assert "implicit:dns" not in implicit_origins(ruleset_of(plan, "haproxy"), "egress")
    plan = compile_inline(seed_policy(), hostvars, {"implicit": {"dns": False}})
    assert "implicit:dns" not in implicit_origins(ruleset_of(plan, MYSQL_POD), "egress")


def test_ipv6_addresses_share_the_rules() -> None:
    hostvars = seed_hostvars()
    hostvars["haproxy"]["zt_addresses"] = ["172.18.221.1", "fd00:221::1"]
    hostvars["k8s-node2"]["workload"]["addresses"].append("fd00:221::12")
    policy = seed_policy()
    policy["filters"]["haproxy"] = "address in (172.18.221.1, fd00:221::1)"
    plan = compile_inline(policy, hostvars, OPTIONS)
    assert policy_rules(ruleset_of(plan, "haproxy"), "egress")[0][3] == [*NODE_ADDRESSES, "fd00:221::12"]
    assert policy_rules(ruleset_of(plan, "k8s-node1"), "nodeport_guard")[0][3] == ["172.18.221.1", "fd00:221::1"]


def test_address_only_filter_stands_for_its_network() -> None:
    policy = seed_policy()
    policy["filters"]["office"] = "address = 192.0.2.0/24"
    policy["policies"]["default"].append({"consumer": "office", "provider": "wordpress", "ports": ["tcp/80"]})
    plan = compile_inline(policy, seed_hostvars(), OPTIONS)
    assert policy_rules(ruleset_of(plan, "k8s-node1"), "nodeport_guard")[1][3] == ["192.0.2.0/24"]


def test_scope_limits_enforcement_points() -> None:
    plan = compile_inline(seed_policy(), seed_hostvars(), {"scope": "kind = vm"})
    assert sorted(plan["hosts"]) == ["haproxy", "outsider"]
    # The peers outside the scope are still in the sets.
    assert policy_rules(ruleset_of(plan, "haproxy"), "egress")[0][3] == NODE_ADDRESSES


def test_warnings() -> None:
    hostvars = seed_hostvars()
    hostvars["named"] = {"ansible_host": "db.example.org"}
    policy = seed_policy()
    policy["filters"]["nobody"] = "label.app = nothing"
    policy["filters"]["mysql_service_less"] = "service_name = wordpress"
    policy["policies"]["default"] += [
        {"consumer": "nobody", "provider": "db", "ports": ["tcp/3306"]},
        {"consumer": "frontend", "provider": "db", "ports": ["tcp/web"]},
        {"consumer": "frontend", "provider": "wordpress", "ports": ["tcp/81"]},
    ]
    hostvars[WORDPRESS_SERVICE]["workload"]["type"] = "ClusterIP"
    plan = compile_inline(policy, hostvars, OPTIONS)
    assert plan["warnings"] == [
        "host named is not a workload: ansible_host 'db.example.org' is a name, not an IP address; "
        "set zt_addresses to its addresses to bring it under policy",
        "policy default[0]: service wordpress/wordpress (type ClusterIP) has no NodePort, LoadBalancer ingress or external IP; "
        "its out-of-cluster consumers cannot reach it",
        "policy default[2]: consumer filter 'nobody' matches no workload; the policy has no effect",
        "policy default[3]: pod wordpress/wordpress-mysql-5b58bbd695-gxtc4 has no tcp port named 'web'; no rule for it",
        "policy default[4]: service wordpress/wordpress has no port tcp/81; no rule for it",
    ]


def test_compiling_is_deterministic_whatever_the_order() -> None:
    first = json.dumps(compile_inline(seed_policy(), seed_hostvars(), OPTIONS), sort_keys=True)
    items = list(seed_hostvars().items())
    for seed in range(5):
        random.Random(seed).shuffle(items)  # noqa: S311 - a reproducible shuffle, not cryptography
        policy = seed_policy()
        policy["filters"] = dict(reversed(list(policy["filters"].items())))
        assert json.dumps(compile_inline(policy, dict(items), OPTIONS), sort_keys=True) == first


def test_set_names_follow_the_logical_peer_not_its_members(seed_plan: dict[str, Any]) -> None:
    hostvars = seed_hostvars()
    hostvars[MYSQL_POD]["workload"]["addresses"] = ["10.244.3.19"]
    moved = compile_inline(seed_policy(), hostvars, OPTIONS)
    before, after = ruleset_of(seed_plan, WORDPRESS_POD), ruleset_of(moved, WORDPRESS_POD)
    assert before["chains"] == after["chains"]
    assert before["address_sets"] != after["address_sets"]


def test_invalid_policy_raises_policy_error() -> None:
    with pytest.raises(PolicyError, match=r"policies\.catch_all: must be deny or allow"):
        compile_inline({"filters": {}, "policies": {"catch_all": "perhaps"}}, seed_hostvars())


def test_host_network_and_finished_pods_are_peers_not_enforcement_points() -> None:
    hostvars = seed_hostvars()
    hostvars[MYSQL_POD]["workload"]["host_network"] = True
    hostvars[WORDPRESS_POD]["workload"]["phase"] = "Succeeded"
    plan = compile_inline(seed_policy(), hostvars, OPTIONS)
    assert plan["hosts"]["k8s-node1"]["pods"] == []
    assert plan["hosts"]["k8s-node3"]["pods"] == []
    assert plan["warnings"] == [
        "pod wordpress/wordpress-mysql-5b58bbd695-gxtc4 uses the host network; it is a peer but not an enforcement point (its node is)"
    ]


@pytest.mark.parametrize(
    ("count", "warning"),
    [
        (2, "2 pods use the host network (kube-system/agent-0, kube-system/agent-1); they are peers but not enforcement points "
            "(their nodes are)"),
        (7, "7 pods use the host network (kube-system/agent-0, kube-system/agent-1, kube-system/agent-2, kube-system/agent-3, "
            "kube-system/agent-4 and 2 more); they are peers but not enforcement points (their nodes are)"),
    ],
)
def test_host_network_pods_get_one_warning(count: int, warning: str) -> None:
    """A CNI agent or kube-proxy on every node: one line, not one per pod."""
    hostvars = seed_hostvars()
    for index in range(count):
        agent = copy.deepcopy(hostvars[MYSQL_POD])
        agent["workload"].update(name=f"agent-{index}", namespace="kube-system", host_network=True, labels={})
        hostvars[f"agent-{index}.kube-system.pod.lab"] = agent
    plan = compile_inline(seed_policy(), hostvars, OPTIONS)
    assert plan["warnings"] == [warning]


def test_icmp_any_and_vm_providers() -> None:
    policy = seed_policy()
    policy["filters"]["outsider"] = "name = outsider"
    policy["policies"]["default"] = [
        {"consumer": "haproxy", "provider": "outsider", "ports": ["icmp", "tcp/8000-8080"]},
        {"consumer": "outsider", "provider": "haproxy", "ports": ["any"]},
    ]
    plan = compile_inline(policy, seed_hostvars(), OPTIONS)
    assert policy_rules(ruleset_of(plan, "haproxy"), "egress") == [
        ("accept", "icmp", [], ["172.18.221.99"], "default[0] haproxy->outsider icmp"),
        ("accept", "icmpv6", [], ["172.18.221.99"], "default[0] haproxy->outsider icmp"),
        ("accept", "tcp", ["8000-8080"], ["172.18.221.99"], "default[0] haproxy->outsider tcp/8000-8080"),
    ]
    assert policy_rules(ruleset_of(plan, "outsider"), "ingress") == [
        ("accept", "icmp", [], ["172.18.221.1"], "default[0] haproxy->outsider icmp"),
        ("accept", "icmpv6", [], ["172.18.221.1"], "default[0] haproxy->outsider icmp"),
        ("accept", "tcp", ["8000-8080"], ["172.18.221.1"], "default[0] haproxy->outsider tcp/8000-8080"),
    ]
    assert policy_rules(ruleset_of(plan, "haproxy"), "ingress") == [
        ("accept", None, [], ["172.18.221.99"], "default[1] outsider->haproxy any")
    ]


def test_load_balancer_and_external_ips_for_outside_consumers() -> None:
    hostvars = seed_hostvars()
    service = hostvars[WORDPRESS_SERVICE]["workload"]
    service.update(type="LoadBalancer", load_balancer_ingress=["198.51.100.7", "lb.example.org"], external_ips=["198.51.100.8"])
    plan = compile_inline(seed_policy(), hostvars, OPTIONS)
    assert policy_rules(ruleset_of(plan, "haproxy"), "egress") == [
        ("accept", "tcp", ["80"], ["198.51.100.7", "198.51.100.8"], "default[0] haproxy->wordpress tcp/80"),
        ("accept", "tcp", ["30358"], NODE_ADDRESSES, "default[0] haproxy->wordpress tcp/30358"),
    ]


def test_service_consumer_means_its_endpoint_pods() -> None:
    policy = seed_policy()
    policy["policies"]["default"] = [{"consumer": "wordpress", "provider": "db", "ports": ["tcp/mysql"]}]
    plan = compile_inline(policy, seed_hostvars(), OPTIONS)
    assert policy_rules(ruleset_of(plan, WORDPRESS_POD), "egress") == [
        ("accept", "tcp", ["3306"], ["10.244.3.18"], "default[0] wordpress->db tcp/3306")
    ]
    assert policy_rules(ruleset_of(plan, MYSQL_POD), "ingress") == [
        ("accept", "tcp", ["3306"], ["10.244.1.94"], "default[0] wordpress->db tcp/mysql")
    ]
