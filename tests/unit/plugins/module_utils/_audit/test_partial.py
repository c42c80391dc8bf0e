# SPDX-License-Identifier: GPL-3.0-or-later
"""Partial services and grouped flows: a quarantined pod still behind the wordpress Service (issue 13)."""

from __future__ import annotations

import html
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.classify import Classifier, conformance
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.html import render_html
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.observation import Connection, Observed
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.report import build_report, summary_lines
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import KUBE_PROXY_LOCAL, Reachability
from audit_seed import seed_hostvars, seed_policy
from partial_seed import quarantine_hostvars, quarantine_policy

HAPROXY, MYSQL, CLUSTER_IP = "172.18.221.1", "10.244.3.18", "172.18.202.253"
NODES = {"k8s-master": "172.18.221.10", "k8s-node1": "172.18.221.11", "k8s-node2": "172.18.221.12", "k8s-node3": "172.18.221.13"}
QUARANTINED = "pod:wordpress/wordpress-6dfdd9f64f-q7x9z"
DENY = "absolute[0] deny everyone->quarantined any"


def _observed(source: str, destination: str, port: int, answered: bool = True, source_port: int = 40000) -> Observed:
    return Observed(Connection("tcp", source, source_port, destination, port), answered, ("k8s-node1",))


def _classifier(policy: dict[str, Any], hostvars: dict[str, Any]) -> Classifier:
    return Classifier(Reachability.from_hostvars(policy, hostvars))


# externalTrafficPolicy, entry node -> policy, class when answered, refusing endpoints
ENTRIES = [
    ("Cluster", "k8s-node1", "partial", "partial", [QUARANTINED]),
    ("Cluster", "k8s-node3", "partial", "partial", [QUARANTINED]),
    ("Cluster", "k8s-master", "partial", "partial", [QUARANTINED]),
    # the quarantined pod's own node masquerades to its gateway: the absolute deny, ahead of
    # implicit:node_to_pods in the pod's ingress, refuses it there too (the gap this once recorded)
    ("Cluster", "k8s-node2", "partial", "partial", [QUARANTINED]),
    ("Local", "k8s-node1", "allow", "permitted", []),
    ("Local", "k8s-node2", "deny", "escaped", [QUARANTINED]),
    ("Local", "k8s-node3", "deny", "escaped", ["node:k8s-node3 (no local endpoint)"]),
]


@pytest.mark.parametrize(("traffic_policy", "entry", "policy", "klass", "refusing"), ENTRIES)
def test_nodeport_entry_points(traffic_policy: str, entry: str, policy: str, klass: str, refusing: list[str]) -> None:
    classifier = _classifier(quarantine_policy(), quarantine_hostvars(local=traffic_policy == "Local"))
    [flow] = classifier.classify([_observed(HAPROXY, NODES[entry], 30358)])
    assert (flow["policy"], flow["class"], [item["endpoint"] for item in flow["refusing"]]) == (policy, klass, refusing)
    if policy == "deny":  # other entry points connect: the line speaks of this one
        assert flow["reason"].startswith(f"every path entering at node:{entry} is refused by") or "no endpoint" in flow["reason"]
    if policy == "partial":
        assert flow["decided_by"] == [DENY]
        assert flow["reason"] == f"1 of 2 endpoints refuse: {QUARANTINED} ({DENY})"
        assert flow["endpoints"] == 2
        assert flow["refusing"][0]["via"] == [NODES[entry]]


def test_nodeport_on_every_node_is_one_partial_line() -> None:
    """The issue's case: four lines for one NodePort, called escaped; now one partial line with a count."""
    classifier = _classifier(quarantine_policy(), quarantine_hostvars())
    observed = [_observed(HAPROXY, address, 30358, answered=name != "k8s-node3") for name, address in sorted(NODES.items())]
    observed.append(_observed(HAPROXY, NODES["k8s-node1"], 30358, source_port=40001))
    [flow] = classifier.classify(observed)
    assert (flow["class"], flow["source"], flow["destination"], flow["connections"], flow["answered"]) == (
        "partial",
        "vm:haproxy",
        "nodeport:wordpress/wordpress",
        5,
        4,
    )
    assert flow["destination_addresses"] == sorted(NODES.values())
    # one item per endpoint and policy, with every entry point it refuses through
    assert flow["refusing"] == [
        {
            "endpoint": QUARANTINED,
            "decided_by": [DENY],
            "reason": f"refused by {DENY}",
            "via": sorted(NODES.values()),
        }
    ]
    # every entry point, the quarantined pod's own node included, refuses the same endpoint
    assert flow["reason"] == f"1 of 2 endpoints refuse: {QUARANTINED} ({DENY})"


def test_local_nodeport_names_the_nodes_without_endpoints() -> None:
    classifier = _classifier(quarantine_policy(), quarantine_hostvars(local=True))
    [flow] = classifier.classify([_observed(HAPROXY, address, 30358) for address in NODES.values()])
    assert flow["class"] == "partial"
    assert [(item["endpoint"], item["decided_by"], item["via"]) for item in flow["refusing"]] == [
        ("node:k8s-master (no local endpoint)", [], [NODES["k8s-master"]]),
        (QUARANTINED, [DENY], [NODES["k8s-node2"]]),
        ("node:k8s-node3 (no local endpoint)", [], [NODES["k8s-node3"]]),
    ]
    assert "kube-proxy drops the connection" in flow["refusing"][0]["reason"]
    # entry points that differ are counted and named one by one
    assert flow["reason"] == (
        "3 of 4 entry points refuse some or all connections: node:k8s-master (no local endpoint) (-) via 172.18.221.10; "
        f"{QUARANTINED} ({DENY}) via 172.18.221.12; node:k8s-node3 (no local endpoint) (-) via 172.18.221.13"
    )


def test_cluster_ip_split() -> None:
    policy = quarantine_policy()
    policy["policies"]["default"].append({"consumer": "db", "provider": "wordpress", "ports": ["tcp/80"]})
    [flow] = _classifier(policy, quarantine_hostvars()).classify([_observed(MYSQL, CLUSTER_IP, 80, answered=False)])
    assert (flow["class"], flow["via"], flow["destination"], flow["decided_by"]) == (
        "partial",
        "cluster_ip",
        "svc:wordpress/wordpress",
        [DENY],
    )
    assert flow["reason"] == f"1 of 2 endpoints refuse: {QUARANTINED} ({DENY})"


# a flow that is denied or allowed outright is not partial: source, seed or quarantine -> class, decided_by, refusing endpoints
PLAIN = [
    # the outsider: refused at its own egress, so on every path
    ("172.18.221.99", "quarantine", "escaped", ["catch_all"], ["pod:wordpress/wordpress-6dfdd9f64f-d75j2", QUARANTINED]),
    # one endpoint, which admits (masqueraded by the entry node: the policy's NodePort allowance)
    (HAPROXY, "seed", "permitted", ["default[0] haproxy->wordpress tcp/80", "default[0] haproxy->wordpress tcp/80 via nodeport"], []),
]


@pytest.mark.parametrize(("source", "scenario", "klass", "decided", "refusing"), PLAIN)
def test_not_partial(source: str, scenario: str, klass: str, decided: list[str], refusing: list[str]) -> None:
    hostvars = quarantine_hostvars() if scenario == "quarantine" else seed_hostvars()
    policy = quarantine_policy() if scenario == "quarantine" else seed_policy()
    [flow] = _classifier(policy, hostvars).classify([_observed(source, NODES["k8s-node1"], 30358)])
    assert (flow["class"], flow["decided_by"], [item["endpoint"] for item in flow["refusing"]]) == (klass, decided, refusing)
    if klass == "escaped":
        assert flow["reason"] == "denied at the consumer by catch_all"


def test_seed_nodeport_on_four_nodes_is_one_permitted_line() -> None:
    flows = _classifier(seed_policy(), seed_hostvars()).classify([_observed(HAPROXY, address, 30358) for address in NODES.values()])
    assert [(flow["class"], flow["connections"], flow["answered"], flow["refusing"]) for flow in flows] == [("permitted", 4, 4, [])]


def test_report_summary_and_page_show_partial() -> None:
    records = [
        ["tcp", HAPROXY, 40000 + number, address, 30358, None, None, None, None, True] for number, address in enumerate(NODES.values())
    ]
    flows = {"k8s-node1": {"namespaces": [{"name": "k8s-node1", "observer": True, "records": records, "legs": []}]}}
    report = build_report(quarantine_policy(), quarantine_hostvars(), flow_results=flows)
    assert report["summary"]["flows"]["partial"] == 1
    lines = summary_lines(report)
    assert "1 partial" in lines[2]
    # The compiler's coded finding (the warning enforce shows) comes first, then the observed flow.
    assert [finding["code"] for finding in report["findings"]] == ["partial_service"]
    assert report["findings"][0]["refusing"][0]["endpoint"] == "wordpress/wordpress-6dfdd9f64f-q7x9z"
    assert report["summary"]["partial_services"] == [report["findings"][0]["text"]]
    assert lines[3] == "  " + report["findings"][0]["text"]
    assert lines[3].startswith("  partial_service: service wordpress/wordpress is only partly reachable for vm haproxy")
    assert lines[4] == (
        "  partial: vm:haproxy -> nodeport:wordpress/wordpress tcp/30358 (4 connections, 4 answered; "
        f"1 of 2 endpoints refuse: {QUARANTINED} ({DENY}))"
    )
    page = render_html(report)
    assert page.count('<tr class="flow flow-partial">') == 1
    reason = f"1 of 2 endpoints refuse: {QUARANTINED} ({DENY})"
    assert f"<td>{html.escape(reason)}</td>" in page


# entry node -> class, refusing endpoints (a pod on k8s-node3 opening a Local NodePort, nothing refused by the policy)
POD_TO_LOCAL = [
    ("k8s-node1", "partial", [QUARANTINED]),  # the endpoint on k8s-node2 answers from a node the connection did not enter
    ("k8s-node2", "partial", ["pod:wordpress/wordpress-6dfdd9f64f-d75j2"]),
    ("k8s-node3", "permitted", []),  # the pod's own node: replies pass its conntrack
]


@pytest.mark.parametrize(("entry", "klass", "refusing"), POD_TO_LOCAL)
def test_pod_to_a_local_nodeport_is_partial_by_kube_proxy(entry: str, klass: str, refusing: list[str]) -> None:
    policy = seed_policy()
    policy["policies"]["catch_all"] = "allow"
    [flow] = _classifier(policy, quarantine_hostvars(local=True)).classify([_observed(MYSQL, NODES[entry], 30358)])
    assert (flow["class"], [item["endpoint"] for item in flow["refusing"]]) == (klass, refusing)
    assert all(item["decided_by"] == [KUBE_PROXY_LOCAL] for item in flow["refusing"])


def test_conformance_expects_partly_connected_cells() -> None:
    classifier = _classifier(quarantine_policy(), quarantine_hostvars())
    target = "nodeport:wordpress/wordpress:tcp/80"
    cells = [{"source": "vm:haproxy", "target": target, "result": result} for result in ("~", ".", "?")]
    table = conformance(classifier, cells)
    assert [(cell["measured"], cell["expected"], cell["agree"]) for cell in table["cells"]] == [
        ("~", "~", True),
        (".", "~", False),
        ("?", "~", None),
    ]
    assert table["cells"][0]["decided_by"] == [DENY]
    page = render_html(build_report(quarantine_policy(), quarantine_hostvars(), probe={"cells": cells[:1]}))
    assert '<td class="c-partial" title="vm:haproxy -&gt; nodeport:wordpress/wordpress:tcp/80: measured ~, policy ~; ' in page
