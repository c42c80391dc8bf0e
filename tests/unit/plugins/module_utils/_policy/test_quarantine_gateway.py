# SPDX-License-Identifier: GPL-3.0-or-later
"""A quarantine holds on the pod's own node: absolute denies come before ``node_to_pods`` in a pod's ingress.

The node reaches its pods from its pod-CIDR gateway (10.244.1.1 for k8s-node1), and a NodePort
connection entering on that node is masqueraded to the same address. The oracle and the compiled
rules must agree on every row.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import Flow, check_flow

from tests.unit.plugins.module_utils._policy.policy_seed import (
    MYSQL_POD,
    WORDPRESS_POD,
    WORDPRESS_SERVICE,
    add_dns,
    compile_inline,
    seed_hostvars,
    seed_policy,
)
from tests.unit.plugins.module_utils._policy.test_properties import chain_allows, nodeport_allowed, ruleset_of

QUARANTINE = "absolute[0] deny everyone->quarantined any"
PODS_DENY = "absolute[0] deny pods->quarantined any"
GATEWAY = {WORDPRESS_POD: "10.244.1.1", MYSQL_POD: "10.244.3.1"}
NODE_OF = {WORDPRESS_POD: "k8s-node1", MYSQL_POD: "k8s-node3"}
VIA_NODEPORT = ("default[0] haproxy->wordpress tcp/80", "default[0] haproxy->wordpress tcp/80 via nodeport")


def policy_with(consumer: Optional[str]) -> dict[str, Any]:
    """The seed policy; with ``consumer``, an absolute deny from that filter to the wordpress pod."""
    policy = seed_policy()
    if consumer is not None:
        policy["filters"].update(
            everyone="address = 0.0.0.0/0", nodes="kind = node", pods="kind = pod", quarantined="pod_name = wordpress-6dfdd9f64f-d75j2"
        )
        policy["policies"]["absolute"] = [{"consumer": consumer, "provider": "quarantined", "ports": ["any"], "action": "deny"}]
    return policy


# deny's consumer (None: the seed alone) -> flow, allowed, decided_by
ROWS = [
    # the NodePort's only endpoint is quarantined: refused through every node, its own k8s-node1 included
    ("everyone", Flow("haproxy", WORDPRESS_SERVICE, "tcp", 80, "node_port"), False, (QUARANTINE,)),
    (None, Flow("haproxy", WORDPRESS_SERVICE, "tcp", 80, "node_port"), True, VIA_NODEPORT),
    # the kubelet's probe from the pod's own node (its gateway): refused by a deny that covers the node
    ("everyone", Flow("k8s-node1", WORDPRESS_POD, "tcp", 80), False, (QUARANTINE,)),
    ("nodes", Flow("k8s-node1", WORDPRESS_POD, "tcp", 80), False, ("absolute[0] deny nodes->quarantined any",)),
    (None, Flow("k8s-node1", WORDPRESS_POD, "tcp", 80), True, ("implicit:node_to_pods",)),
    # a deny from pods only does not name the node: the probe stays
    ("pods", Flow("k8s-node1", WORDPRESS_POD, "tcp", 80), True, ("implicit:node_to_pods",)),
    ("pods", Flow(MYSQL_POD, WORDPRESS_POD, "tcp", 80), False, (PODS_DENY,)),
    # pods that are not quarantined keep their node's allowance and their policies
    ("everyone", Flow("k8s-node3", MYSQL_POD, "tcp", 3306), True, ("implicit:node_to_pods",)),
    ("everyone", Flow(WORDPRESS_POD, MYSQL_POD, "tcp", 3306), True, ("default[1] frontend->db tcp/3306",)),
    # another node is not the pod's node: its own address was never admitted implicitly
    ("everyone", Flow("k8s-node2", WORDPRESS_POD, "tcp", 80), False, (QUARANTINE,)),
    (None, Flow("k8s-node2", WORDPRESS_POD, "tcp", 80), False, ("catch_all",)),
]


@pytest.mark.parametrize(("consumer", "flow", "allowed", "decided_by"), ROWS)
def test_oracle_and_rules_agree(consumer: Optional[str], flow: Flow, allowed: bool, decided_by: tuple[str, ...]) -> None:
    policy, hostvars = policy_with(consumer), seed_hostvars()
    verdict = check_flow(policy, hostvars, flow)
    assert (verdict.allowed, verdict.decided_by, verdict.partial) == (allowed, decided_by, False), verdict.reason
    plan = compile_inline(policy, hostvars)
    if flow.via == "node_port":
        simulated = nodeport_allowed(plan, flow.source, 80, 30358, local=False)
    else:
        source = hostvars[flow.source]["workload"]
        destination_address = hostvars[flow.destination]["workload"]["addresses"][0]
        own_node = source["kind"] == "node" and NODE_OF[flow.destination] == source["name"]
        seen = GATEWAY[flow.destination] if own_node else source["addresses"][0]
        simulated = chain_allows(ruleset_of(plan, flow.source), "egress", destination_address, flow.protocol, flow.port or 0) and (
            chain_allows(ruleset_of(plan, flow.destination), "ingress", seen, flow.protocol, flow.port or 0)
        )
    assert simulated == allowed


def origins(plan: dict[str, Any], host: str, chain: str = "ingress") -> list[str]:
    ruleset = ruleset_of(plan, host)
    assert ruleset is not None
    return [rule["origin"] for item in ruleset["chains"] if item["name"] == chain for rule in item["rules"]]


FIRST = ["implicit:established", "implicit:loopback", "implicit:icmpv6_neighbour_discovery"]


def test_the_quarantined_pods_ingress_puts_the_deny_before_node_to_pods() -> None:
    plan = compile_inline(policy_with("everyone"), seed_hostvars())
    assert origins(plan, WORDPRESS_POD) == [
        *FIRST,
        QUARANTINE,
        "implicit:node_to_pods",
        "default[0] haproxy->wordpress tcp/80 via nodeport",  # its in-cluster twin has no consumer: not rendered
    ]
    # every other chain is as without the deny: implicit allowances first
    seed = compile_inline(policy_with(None), seed_hostvars())
    assert origins(plan, MYSQL_POD) == origins(seed, MYSQL_POD) == [*FIRST, "implicit:node_to_pods", "default[1] frontend->db tcp/3306"]
    # egress keeps the usual order (the pod is one of "everyone": its own egress denies itself)
    assert origins(plan, WORDPRESS_POD, "egress") == [*FIRST, QUARANTINE, "default[1] frontend->db tcp/3306"]
    assert origins(plan, "k8s-node1") == origins(seed, "k8s-node1")
    assert origins(plan, "k8s-node1")[: len(FIRST) + 1] == [*FIRST, "implicit:management_ssh"]


def test_a_quarantined_dns_pod_still_answers_through_its_dns_allowance() -> None:
    hostvars = seed_hostvars()
    add_dns(hostvars)
    hostvars["coredns-1.kube-system.pod.lab"] = {
        "workload": {
            "kind": "pod",
            "name": "coredns-1",
            "namespace": "kube-system",
            "cluster": "lab",
            "node": "k8s-master",
            "addresses": ["10.244.0.5"],
            "labels": {"k8s-app": "kube-dns"},
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 1053, "protocol": "TCP"}],
        }
    }
    policy = policy_with("everyone")
    policy["filters"]["quarantined"] = "label.k8s-app = kube-dns"
    plan = compile_inline(policy, hostvars)
    assert origins(plan, "coredns-1.kube-system.pod.lab") == [*FIRST, "implicit:dns", "implicit:dns", QUARANTINE, "implicit:node_to_pods"]
    assert check_flow(policy, hostvars, Flow(MYSQL_POD, "coredns-1.kube-system.pod.lab", "udp", 53)).decided_by == ("implicit:dns",)
    assert check_flow(policy, hostvars, Flow("k8s-master", "coredns-1.kube-system.pod.lab", "tcp", 8080)).decided_by == (QUARANTINE,)
