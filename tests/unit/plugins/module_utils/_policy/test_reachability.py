# SPDX-License-Identifier: GPL-3.0-or-later
"""Reachability on the seed: the truth table the lab expects, with the deciding policies."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import Flow, Reachability, Verdict, check_flow

from tests.unit.plugins.module_utils._policy.policy_seed import (
    MYSQL_POD,
    WORDPRESS_POD,
    WORDPRESS_SERVICE,
    add_dns,
    seed_hostvars,
    seed_policy,
)

# Through a NodePort every node is tried as the entry point: entering on k8s-node1 the pod sees
# its own gateway (implicit:node_to_pods, which coincides and is not named), elsewhere the
# masquerade rule admits the node address.
HAPROXY_VIA_NODEPORT = ("default[0] haproxy->wordpress tcp/80", "default[0] haproxy->wordpress tcp/80 via nodeport")
SEED_FLOWS = [
    (
        Flow("haproxy", WORDPRESS_SERVICE, "tcp", 80, "node_port"),
        True,
        HAPROXY_VIA_NODEPORT,
    ),
    (Flow("outsider", WORDPRESS_SERVICE, "tcp", 80, "node_port"), False, ("catch_all",)),
    (Flow("haproxy", WORDPRESS_SERVICE, "tcp", 80, "cluster_ip"), False, ()),
    (Flow("haproxy", WORDPRESS_POD, "tcp", 80), False, ("catch_all",)),
    (Flow(WORDPRESS_POD, MYSQL_POD, "tcp", 3306), True, ("default[1] frontend->db tcp/3306",)),
    (Flow(WORDPRESS_POD, MYSQL_POD, "tcp", 3307), False, ("catch_all",)),
    (Flow(WORDPRESS_POD, MYSQL_POD, "udp", 3306), False, ("catch_all",)),
    (Flow(MYSQL_POD, WORDPRESS_POD, "tcp", 80), False, ("catch_all",)),
    (Flow(MYSQL_POD, WORDPRESS_SERVICE, "tcp", 80, "cluster_ip"), False, ("catch_all",)),
    (Flow("outsider", MYSQL_POD, "tcp", 3306), False, ("catch_all",)),
    (Flow("outsider", "haproxy", "tcp", 80), False, ("catch_all",)),
    (Flow("haproxy", "outsider", "tcp", 80), False, ("catch_all",)),
    (Flow("k8s-node3", MYSQL_POD, "tcp", 3306), True, ("implicit:node_to_pods",)),
    (Flow("k8s-node1", MYSQL_POD, "tcp", 3306), False, ("catch_all",)),
    (Flow("192.0.2.7", "haproxy", "tcp", 22), True, ("implicit:management_ssh",)),
    (Flow("192.0.2.7", WORDPRESS_POD, "tcp", 22), False, ("catch_all",)),
    (Flow("192.0.2.7", WORDPRESS_SERVICE, "tcp", 80, "node_port"), False, ("catch_all nodeport",)),
    (
        Flow("172.18.221.1", WORDPRESS_SERVICE, "tcp", 80, "node_port"),
        True,
        HAPROXY_VIA_NODEPORT,
    ),
    (Flow("haproxy", "haproxy", "tcp", 8080), True, ("implicit:loopback",)),
    (Flow("haproxy", WORDPRESS_SERVICE, "tcp", 81, "node_port"), False, ()),
]


@pytest.mark.parametrize(("flow", "allowed", "decided_by"), SEED_FLOWS)
def test_seed_truth_table(flow: Flow, allowed: bool, decided_by: tuple[str, ...]) -> None:
    verdict = Reachability.from_hostvars(seed_policy(), seed_hostvars()).check(flow)
    assert (verdict.allowed, verdict.decided_by) == (allowed, decided_by), verdict.reason


def check(policy: dict[str, Any], flow: Flow, hostvars: Optional[dict[str, Any]] = None, options: Any = None) -> Verdict:
    return check_flow(policy, hostvars or seed_hostvars(), flow, options)


def test_local_traffic_policy_checks_the_consumer_at_the_pod() -> None:
    hostvars = seed_hostvars()
    hostvars[WORDPRESS_SERVICE]["workload"]["external_traffic_policy"] = "Local"
    verdict = check(seed_policy(), Flow("haproxy", WORDPRESS_SERVICE, "tcp", 80, "node_port"), hostvars)
    assert verdict.decided_by == ("default[0] haproxy->wordpress tcp/80",)
    assert verdict.allowed


def test_absolute_deny_wins() -> None:
    policy = seed_policy()
    policy["policies"]["absolute"] = [{"consumer": "frontend", "provider": "db", "ports": ["any"], "action": "deny"}]
    verdict = check(policy, Flow(WORDPRESS_POD, MYSQL_POD, "tcp", 3306))
    assert (verdict.allowed, verdict.decided_by) == (False, ("absolute[0] deny frontend->db any",))


def test_catch_all_allow_and_scope() -> None:
    policy = seed_policy()
    policy["policies"]["catch_all"] = "allow"
    assert check(policy, Flow(MYSQL_POD, WORDPRESS_POD, "tcp", 80)).allowed
    # Outside the scope nothing is enforced at either end.
    verdict = check(seed_policy(), Flow(MYSQL_POD, WORDPRESS_POD, "tcp", 80), options={"scope": "kind = vm"})
    assert (verdict.allowed, verdict.reason) == (True, "no end of the flow is enforced")
    # Only the provider end enforced: it decides.
    verdict = check(seed_policy(), Flow("haproxy", MYSQL_POD, "tcp", 3306), options={"scope": "kind = pod"})
    assert (verdict.allowed, verdict.reason) == (False, "denied at the provider by catch_all")


def test_dns_is_implicit_for_pods() -> None:
    hostvars = seed_hostvars()
    add_dns(hostvars)
    flow = Flow(MYSQL_POD, "kube-dns.kube-system.service.lab", "udp", 53, "cluster_ip")
    assert check(seed_policy(), flow, hostvars).decided_by == ("implicit:dns",)
    assert not check(seed_policy(), flow, hostvars, {"implicit": {"dns": False}}).allowed


def test_unknown_hosts_are_errors() -> None:
    with pytest.raises(ZeroTrustPolicyError, match="source 'nobody' is neither an inventory workload nor an IP address"):
        check(seed_policy(), Flow("nobody", MYSQL_POD, "tcp", 1))
    with pytest.raises(ZeroTrustPolicyError, match="destination 'nowhere' is not an inventory workload"):
        check(seed_policy(), Flow("haproxy", "nowhere", "tcp", 1))
    with pytest.raises(ZeroTrustPolicyError, match="via 'tunnel' is not one of direct, cluster_ip, node_port"):
        check(seed_policy(), Flow("haproxy", MYSQL_POD, "tcp", 1, "tunnel"))


def test_dns_named_target_port_resolves_from_the_endpoint_slice() -> None:
    hostvars = seed_hostvars()
    add_dns(hostvars)
    oracle = Reachability.from_hostvars(seed_policy(), hostvars)
    # tcp 53 -> named target port "dns-tcp" = 1053 per the slice; the pod's egress allows both.
    assert oracle.egress_end(oracle.index.by_host[MYSQL_POD], "10.244.0.5", "tcp", 1053).origin == "implicit:dns"
    assert oracle.egress_end(oracle.index.by_host[MYSQL_POD], "10.244.0.5", "tcp", 1054).origin == "catch_all"
