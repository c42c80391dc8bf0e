# SPDX-License-Identifier: GPL-3.0-or-later
"""Partly reachable services (issue 13): the oracle's ``~``, the ``partial_service`` warning,
Local NodePorts allowed to the nodes that serve them, and the health-check NodePort."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy import partial
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import (
    KUBE_PROXY_LOCAL,
    Flow,
    Reachability,
    ServicePath,
)

from tests.unit.plugins.module_utils._policy.policy_seed import (
    MYSQL_POD,
    NODES,
    WORDPRESS_POD,
    WORDPRESS_SERVICE,
    compile_inline,
    seed_hostvars,
    seed_policy,
)

QUARANTINED_POD = "wordpress-6dfdd9f64f-q7x2k.wordpress.pod.lab"
QUARANTINE = "absolute[0] deny everyone->quarantined any"
OPEN: dict[str, Any] = {"filters": {}, "policies": {"absolute": [], "default": [], "catch_all": "allow"}}
HEALTH_CHECK = 32001


def with_second_endpoint(hostvars: dict[str, Any], *, node: str = "k8s-node2", quarantined: bool = True) -> dict[str, Any]:
    """A second wordpress pod behind the Service (on ``node``), labelled quarantined unless told otherwise."""
    pod = {**hostvars[WORDPRESS_POD], "zt_enforce_host": node, "ansible_host": NODES[node][0]}
    labels = {"app": "wordpress", "tier": "frontend", **({"quarantine": "true"} if quarantined else {})}
    address = NODES[node][1].replace(".0/24", ".77")
    pod["workload"] = {
        **hostvars[WORDPRESS_POD]["workload"],
        "name": "wordpress-6dfdd9f64f-q7x2k",
        "node": node,
        "addresses": [address],
        "labels": labels,
        "uid": "5f0c1d2e-0000-4000-8000-000000000077",
    }
    hostvars[QUARANTINED_POD] = pod
    service = hostvars[WORDPRESS_SERVICE]["workload"]
    service["endpoints"] = [
        *service["endpoints"],
        {
            "addresses": [address],
            "node": node,
            "pod": "wordpress/wordpress-6dfdd9f64f-q7x2k",
            "ready": True,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    ]
    return hostvars


def quarantine_policy(*extra: dict[str, Any]) -> dict[str, Any]:
    """The seed policy plus an absolute deny everyone -> quarantined (and extra default policies)."""
    policy = seed_policy()
    policy["filters"].update({"everyone": "address = 0.0.0.0/0", "quarantined": "label.quarantine = true"})
    policy["policies"]["absolute"] = [{"consumer": "everyone", "provider": "quarantined", "ports": ["any"], "action": "deny"}]
    policy["policies"]["default"].extend(extra)
    return policy


def refused(paths: tuple[ServicePath, ...]) -> list[tuple[Optional[str], str, str]]:
    return sorted((path.node, path.endpoint, path.decided_by) for path in paths if not path.allowed)


# -- the oracle's `~` ---------------------------------------------------------------------------

PARTIAL_FLOWS = [
    # haproxy through the NodePort: refused at the quarantined pod through every entry node, its own k8s-node2
    # included (masqueraded to node2's gateway, the absolute deny comes before implicit:node_to_pods).
    (
        "quarantined endpoint behind a NodePort",
        quarantine_policy(),
        Flow("haproxy", WORDPRESS_SERVICE, "tcp", 80, "node_port"),
        (False, True, (QUARANTINE,)),
        [(node, "wordpress/wordpress-6dfdd9f64f-q7x2k", QUARANTINE) for node in ("k8s-master", "k8s-node1", "k8s-node2", "k8s-node3")],
    ),
    (
        "quarantined endpoint behind a ClusterIP",
        quarantine_policy({"consumer": "db", "provider": "wordpress", "ports": ["tcp/80"]}),
        Flow(MYSQL_POD, WORDPRESS_SERVICE, "tcp", 80, "cluster_ip"),
        (False, True, (QUARANTINE,)),
        [(None, "wordpress/wordpress-6dfdd9f64f-q7x2k", QUARANTINE)],
    ),
    (
        "every endpoint refuses: blocked, not partial",
        quarantine_policy(),
        Flow("outsider", WORDPRESS_SERVICE, "tcp", 80, "node_port"),
        (False, False, ("catch_all",)),
        None,
    ),
    (
        "every endpoint admits: connected",
        seed_policy(),
        Flow("haproxy", WORDPRESS_SERVICE, "tcp", 80, "node_port"),
        (True, False, ("default[0] haproxy->wordpress tcp/80", "default[0] haproxy->wordpress tcp/80 via nodeport")),
        [],
    ),
]


@pytest.mark.parametrize(("name", "policy", "flow", "verdict", "failing"), PARTIAL_FLOWS, ids=[row[0] for row in PARTIAL_FLOWS])
def test_oracle_predicts_partial(
    name: str, policy: dict[str, Any], flow: Flow, verdict: tuple[bool, bool, tuple[str, ...]], failing: Optional[list[Any]]
) -> None:
    answer = Reachability.from_hostvars(policy, with_second_endpoint(seed_hostvars())).check(flow)
    assert (answer.allowed, answer.partial, answer.decided_by) == verdict, answer.reason
    if failing is not None:
        assert refused(answer.paths) == sorted(failing)


def test_partial_reason_names_the_share_and_the_endpoint() -> None:
    answer = Reachability.from_hostvars(quarantine_policy(), with_second_endpoint(seed_hostvars())).check(
        Flow("haproxy", WORDPRESS_SERVICE, "tcp", 80, "node_port")
    )
    assert answer.reason == (
        "partly connected: 4 of 8 paths to service wordpress/wordpress fail "
        f"(refused at wordpress/wordpress-6dfdd9f64f-q7x2k by {QUARANTINE})"
    )


def local(hostvars: dict[str, Any], **extra: Any) -> dict[str, Any]:
    hostvars[WORDPRESS_SERVICE]["workload"].update(external_traffic_policy="Local", **extra)
    return hostvars


LOCAL_FROM_PODS = [
    # No policy: kube-proxy alone. Endpoints on node1 and node2; the mysql pod lives on node3.
    # Through node1 or node2 (an endpoint's node) the reply passes the node that translated it only
    # when that node holds the chosen endpoint; through node3 (the pod's own node) always; through the master never.
    (
        MYSQL_POD,
        [
            ("k8s-master", "wordpress/wordpress-6dfdd9f64f-d75j2"),
            ("k8s-master", "wordpress/wordpress-6dfdd9f64f-q7x2k"),
            ("k8s-node1", "wordpress/wordpress-6dfdd9f64f-q7x2k"),
            ("k8s-node2", "wordpress/wordpress-6dfdd9f64f-d75j2"),
        ],
    ),
    # The endpoint itself as the source: sent back to itself it is masqueraded (hairpin), so that path works anywhere.
    (
        WORDPRESS_POD,
        [("k8s-master", "wordpress/wordpress-6dfdd9f64f-q7x2k"), ("k8s-node3", "wordpress/wordpress-6dfdd9f64f-q7x2k")],
    ),
]


@pytest.mark.parametrize(("source", "failing"), LOCAL_FROM_PODS)
def test_pod_to_a_local_nodeport_is_partial_by_kube_proxy(source: str, failing: list[tuple[str, str]]) -> None:
    hostvars = local(with_second_endpoint(seed_hostvars(), quarantined=False))
    answer = Reachability.from_hostvars(OPEN, hostvars).check(Flow(source, WORDPRESS_SERVICE, "tcp", 80, "node_port"))
    assert (answer.allowed, answer.partial, answer.decided_by) == (False, True, (KUBE_PROXY_LOCAL,))
    assert refused(answer.paths) == [(node, endpoint, KUBE_PROXY_LOCAL) for node, endpoint in failing]


def test_outside_consumer_of_a_local_nodeport_counts_only_the_serving_nodes() -> None:
    hostvars = local(seed_hostvars())
    answer = Reachability.from_hostvars(OPEN, hostvars).check(Flow("outsider", WORDPRESS_SERVICE, "tcp", 80, "node_port"))
    assert answer.allowed
    assert [(path.node, path.endpoint) for path in answer.paths] == [("k8s-node1", "wordpress/wordpress-6dfdd9f64f-d75j2")]


# -- the compiler's warning -----------------------------------------------------------------------


def test_partial_service_warning_once_per_consumer_and_service() -> None:
    # Two policies allow haproxy to the service: still one finding, naming both.
    policy = quarantine_policy({"consumer": "haproxy", "provider": "wordpress", "ports": ["tcp/http"]})
    plan = compile_inline(policy, with_second_endpoint(seed_hostvars()))
    assert plan["findings"] == [
        {
            "code": "partial_service",
            "text": plan["findings"][0]["text"],
            "service": "wordpress/wordpress",
            "service_host": WORDPRESS_SERVICE,
            "consumer": "vm haproxy",
            "ways": ["tcp/80 via NodePort"],
            "allowed_by": ["default[0] haproxy->wordpress tcp/80", "default[2] haproxy->wordpress tcp/http"],
            "refusing": [
                {
                    "endpoint": "wordpress/wordpress-6dfdd9f64f-q7x2k",
                    "address": "10.244.2.77",
                    "decided_by": [QUARANTINE],
                    "entry_nodes": ["k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"],
                }
            ],
            "decided_by": [QUARANTINE],
            "failing_share": 0.5,
            "failing_paths": 4,
            "paths": 8,
            "fix": (
                "take wordpress/wordpress-6dfdd9f64f-q7x2k out of service wordpress/wordpress's selector (change its labels) so it "
                "stops receiving traffic, or narrow the policy so that vm haproxy is no longer allowed to service wordpress/wordpress"
            ),
        }
    ]
    text = plan["findings"][0]["text"]
    assert text.startswith(
        "partial_service: service wordpress/wordpress is only partly reachable for vm haproxy (tcp/80 via NodePort; allowed by "
        "default[0] haproxy->wordpress tcp/80, default[2] haproxy->wordpress tcp/http): endpoint wordpress/wordpress-6dfdd9f64f-q7x2k "
        f"refuses it ({QUARANTINE}), so about 50% of its connections fail (4 of 8 paths). Fix: take "
    )
    assert plan["warnings"].count(text) == 1


@pytest.mark.parametrize(
    ("policy", "quarantined", "findings"),
    [
        (quarantine_policy(), True, 1),
        (quarantine_policy(), False, 0),  # nobody refuses
        (seed_policy(), True, 0),  # the label alone decides nothing
        # A deny policy never "allows" anyone to a service: no finding for it.
        (
            {**quarantine_policy(), "policies": {**quarantine_policy()["policies"], "default": [
                {"consumer": "haproxy", "provider": "wordpress", "ports": ["tcp/80"], "action": "deny"}]}},
            True,
            0,
        ),
    ],
)
def test_partial_service_findings_table(policy: dict[str, Any], quarantined: bool, findings: int) -> None:
    plan = compile_inline(policy, with_second_endpoint(seed_hostvars(), quarantined=quarantined))
    assert [finding["code"] for finding in plan["findings"] if finding["code"] == "partial_service"] == ["partial_service"] * findings
    assert sum(warning.startswith("partial_service:") for warning in plan["warnings"]) == findings


def test_partial_service_for_an_in_cluster_consumer() -> None:
    plan = compile_inline(
        quarantine_policy({"consumer": "db", "provider": "wordpress", "ports": ["tcp/80"]}), with_second_endpoint(seed_hostvars())
    )
    by_consumer = {finding["consumer"]: finding for finding in plan["findings"] if finding["code"] == "partial_service"}
    assert sorted(by_consumer) == ["pod wordpress/wordpress-mysql-5b58bbd695-gxtc4", "vm haproxy"]
    finding = by_consumer["pod wordpress/wordpress-mysql-5b58bbd695-gxtc4"]
    assert (finding["ways"], finding["failing_paths"], finding["paths"], finding["failing_share"]) == (["tcp/80 via ClusterIP"], 1, 2, 0.5)


def pod_provider_policy(case: str) -> tuple[dict[str, Any], Optional[dict[str, Any]], dict[str, Any]]:
    """A consumer allowed to one wordpress pod by name, not to the Service: policy, options, hostvars.

    The Service's other endpoint (unquarantined here) is left to the catch-all.
    """
    hostvars = with_second_endpoint(seed_hostvars(), quarantined=False)
    policy = seed_policy()
    policy["filters"]["one_frontend"] = "pod_name = wordpress-6dfdd9f64f-d75j2"
    consumer, options = "db", None
    if case == "a Local NodePort, only pods in scope":
        consumer, options = "haproxy", {"scope": "kind = pod"}
        policy["policies"]["default"][0]["provider"] = "db"  # haproxy is no longer allowed to the Service itself
        local(hostvars)
    elif case == "the service network":
        policy["filters"]["service_network"] = "address = 172.18.192.0/20"
        policy["policies"]["default"].append({"consumer": "db", "provider": "service_network", "ports": ["tcp/80"]})
    elif case in ("the consumer out of scope", "every endpoint named"):
        options = {"scope": "not pod_name contains wordpress-mysql"}
        if case == "every endpoint named":
            policy["filters"]["one_frontend"] = "label.app = wordpress and kind = pod"
    policy["policies"]["default"].append({"consumer": consumer, "provider": "one_frontend", "ports": ["tcp/80"]})
    return policy, options, hostvars


POD_PROVIDER = [
    # Nothing restricts the consumer's way to the Service (its egress, and the nodes' NodePort guards, are not
    # enforced) and the policy's provider names one endpoint: the other refuses by the catch-all.
    (
        "the consumer out of scope",
        (MYSQL_POD, "cluster_ip"),
        ("pod wordpress/wordpress-mysql-5b58bbd695-gxtc4", "tcp/80 via ClusterIP", "db", 2),
    ),
    ("a Local NodePort, only pods in scope", ("haproxy", "node_port"), ("vm haproxy", "tcp/80 via NodePort", "haproxy", 2)),
    # The consumer's own egress refuses the ClusterIP: every connection fails, nothing is partial.
    ("the egress refuses", (MYSQL_POD, "cluster_ip"), None),
    ("every endpoint named", (MYSQL_POD, "cluster_ip"), None),
    # An address filter that holds the ClusterIP selects the Service itself: its rule goes to every endpoint.
    ("the service network", (MYSQL_POD, "cluster_ip"), None),
]


@pytest.mark.parametrize(("case", "flow", "finding"), POD_PROVIDER, ids=[row[0] for row in POD_PROVIDER])
def test_partial_service_when_the_policy_names_only_some_endpoints(
    case: str, flow: tuple[str, str], finding: Optional[tuple[str, str, str, int]]
) -> None:
    policy, options, hostvars = pod_provider_policy(case)
    plan = compile_inline(policy, hostvars, options)
    found = [item for item in plan["findings"] if item["code"] == "partial_service"]
    verdict = Reachability.from_hostvars(policy, hostvars, options).check(Flow(flow[0], WORDPRESS_SERVICE, "tcp", 80, flow[1]))
    assert verdict.partial == (finding is not None), verdict.reason
    if finding is None:
        assert found == []
        return
    consumer, way, allowed, paths = finding
    assert [(item["consumer"], item["ways"], item["allowed_by"], item["decided_by"], item["failing_paths"], item["paths"])
            for item in found] == [(consumer, [way], [f"default[2] {allowed}->one_frontend tcp/80"], ["catch_all"], 1, paths)]
    assert [item["endpoint"] for item in found[0]["refusing"]] == ["wordpress/wordpress-6dfdd9f64f-q7x2k"]


# -- Local NodePorts: only the nodes that serve; the health-check NodePort ----------------------


def egress_sets(plan: dict[str, Any], host: str) -> dict[str, list[str]]:
    ruleset = plan["hosts"][host]["ruleset"]
    members = {item["name"]: item["members"] for item in ruleset["address_sets"]}
    found: dict[str, list[str]] = {}
    for chain in ruleset["chains"]:
        if chain["name"] != "egress":
            continue
        for rule in chain["rules"]:
            if rule["origin"].startswith("default[0]") and rule["peer_set"]:
                found[",".join(rule["ports"])] = members[rule["peer_set"]]
    return found


def guarded(plan: dict[str, Any]) -> list[str]:
    """The nodes whose NodePort guard admits haproxy (a policy rule, not the catch-all)."""
    nodes = []
    for node in NODES:
        chains = {chain["name"]: chain for chain in plan["hosts"][node]["ruleset"]["chains"]}
        if any(rule["origin"].startswith("default[0]") for rule in chains["nodeport_guard"]["rules"]):
            nodes.append(node)
    return nodes


@pytest.mark.parametrize(
    ("endpoint_nodes", "ready", "allowed_nodes"),
    [
        (["k8s-node1"], True, ["k8s-node1"]),
        (["k8s-node1", "k8s-node2"], True, ["k8s-node1", "k8s-node2"]),
        (["k8s-node1", "k8s-node2"], False, ["k8s-node1"]),  # the second endpoint is not ready: its node does not serve
    ],
)
def test_local_nodeport_allows_only_the_nodes_with_a_ready_endpoint(
    endpoint_nodes: list[str], ready: bool, allowed_nodes: list[str]
) -> None:
    hostvars = seed_hostvars()
    if len(endpoint_nodes) > 1:
        with_second_endpoint(hostvars, node=endpoint_nodes[1], quarantined=False)
        hostvars[WORDPRESS_SERVICE]["workload"]["endpoints"][1]["ready"] = ready
    plan = compile_inline(seed_policy(), local(hostvars))
    assert egress_sets(plan, "haproxy") == {"30358": [NODES[node][0] for node in allowed_nodes]}
    assert guarded(plan) == allowed_nodes
    oracle = Reachability.from_hostvars(seed_policy(), hostvars)
    for node in NODES:
        # The consumer's own egress toward each node's NodePort follows the same selection.
        end = oracle.egress_end(oracle.index.by_host["haproxy"], NODES[node][0], "tcp", 30358)
        assert end.allowed == (node in allowed_nodes), node


@pytest.mark.parametrize(
    ("service_type", "policy_kind", "health_check"),
    [("LoadBalancer", "Local", True), ("LoadBalancer", "Cluster", False), ("NodePort", "Local", False)],
)
def test_health_check_nodeport_allowed_for_a_local_load_balancer(service_type: str, policy_kind: str, health_check: bool) -> None:
    hostvars = seed_hostvars()
    hostvars[WORDPRESS_SERVICE]["workload"].update(
        type=service_type, external_traffic_policy=policy_kind, health_check_node_port=HEALTH_CHECK
    )
    plan = compile_inline(seed_policy(), hostvars)
    sets = egress_sets(plan, "haproxy")
    assert (sets.get(str(HEALTH_CHECK)) == [address for address, _unused_cidr in NODES.values()]) == health_check
    origin = "default[0] haproxy->wordpress health check wordpress/wordpress"
    for node in NODES:
        ingress = next(chain for chain in plan["hosts"][node]["ruleset"]["chains"] if chain["name"] == "ingress")
        rules = [(rule["protocol"], rule["ports"]) for rule in ingress["rules"] if rule["origin"] == origin]
        assert rules == ([("tcp", [str(HEALTH_CHECK)])] if health_check else [])
    oracle = Reachability.from_hostvars(seed_policy(), hostvars)
    verdict = oracle.check(Flow("haproxy", "k8s-node2", "tcp", HEALTH_CHECK))
    # The consumer's egress admits it by the policy's port, the node's ingress by the health-check allowance.
    expected = (True, ("default[0] haproxy->wordpress tcp/80", origin)) if health_check else (False, ("catch_all",))
    assert (verdict.allowed, verdict.decided_by) == expected
    assert not oracle.check(Flow("outsider", "k8s-node2", "tcp", HEALTH_CHECK)).allowed


def questions(policy: dict[str, Any]) -> list[tuple[str, str]]:
    oracle = Reachability.from_hostvars(policy, with_second_endpoint(seed_hostvars()))
    return [(label, f"{flow.via} {flow.protocol}/{flow.port}") for _origin, label, _service, flow in partial._questions(oracle)]


def test_only_flows_an_earlier_deny_can_touch_are_asked() -> None:
    assert questions(quarantine_policy()) == [("vm haproxy", "node_port tcp/80")]
    # A deny whose consumers the endpoint never sees (neither haproxy nor, masqueraded, a node): nothing to ask.
    elsewhere = quarantine_policy()
    elsewhere["filters"]["everyone"] = "address = 192.0.2.0/24"
    assert questions(elsewhere) == []
    # A deny ranked after the allow (an absolute allow, a default deny) cannot refuse what the allow admitted first.
    later = quarantine_policy()
    later["policies"]["absolute"], later["policies"]["default"] = later["policies"]["default"][:1], later["policies"]["absolute"]
    assert questions(later) == []
    assert [finding for finding in compile_inline(later, with_second_endpoint(seed_hostvars()))["findings"]
            if finding["code"] == "partial_service"] == []


def test_the_analysis_stops_at_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partial, "MAX_PATHS", 7)  # the one flow has 8 paths (4 nodes x 2 endpoints)
    plan = compile_inline(quarantine_policy(), with_second_endpoint(seed_hostvars()))
    # Every warning is a coded finding: here only the budget's.
    assert [finding["code"] for finding in plan["findings"]] == ["partial_service_analysis_limited"]
    stopped = "partial_service_analysis_limited: the partial-service analysis stopped after 0 of 1 flows (7 paths)"
    assert f"{stopped}; the others were not checked" in plan["warnings"]
