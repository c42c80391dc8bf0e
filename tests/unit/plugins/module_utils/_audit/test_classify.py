# SPDX-License-Identifier: GPL-3.0-or-later
"""Classifying observed flows and measured cells against the seed policy."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.classify import Classifier, conformance, policy_matrix
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.observation import Connection, Observed
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import Reachability
from audit_seed import MYSQL_POD, WORDPRESS_POD

from tests.unit.plugins.module_utils._policy.policy_seed import add_control_plane


@pytest.fixture
def classifier(policy: dict[str, Any], hostvars: dict[str, dict[str, Any]]) -> Classifier:
    return Classifier(Reachability.from_hostvars(policy, hostvars))


def _observed(source: str, destination: str, port: int, answered: bool, protocol: str = "tcp") -> Observed:
    return Observed(Connection(protocol, source, 40000, destination, port), answered, ("k8s-node1",))


# source, destination, port, answered -> class, source label, destination label, via, decided_by, implicit
FLOWS = [
    (
        "172.18.221.1",
        "172.18.221.11",
        30358,
        True,
        "permitted",
        "vm:haproxy",
        "nodeport:wordpress/wordpress",
        "node_port",
        "default[0]",
        False,
    ),
    (
        "172.18.221.1",
        "172.18.221.13",
        30358,
        False,
        "unanswered",
        "vm:haproxy",
        "nodeport:wordpress/wordpress",
        "node_port",
        "default[0]",
        False,
    ),
    (
        "10.244.1.94",
        "10.244.3.18",
        3306,
        True,
        "permitted",
        "pod:wordpress/wordpress-6dfdd9f64f-d75j2",
        "pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4",
        "direct",
        "default[1]",
        False,
    ),
    (
        "172.18.221.99",
        "172.18.221.11",
        30358,
        True,
        "escaped",
        "vm:outsider",
        "nodeport:wordpress/wordpress",
        "node_port",
        "catch_all",
        False,
    ),
    ("172.18.221.99", "172.18.221.1", 80, False, "rejected", "vm:outsider", "vm:haproxy", "direct", "catch_all", False),
    (
        "10.244.3.18",
        "172.18.202.253",
        80,
        True,
        "escaped",
        "pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4",
        "svc:wordpress/wordpress",
        "cluster_ip",
        "catch_all",
        False,
    ),
    (
        "10.244.1.1",
        "10.244.1.94",
        80,
        True,
        "permitted",
        "node:k8s-node1",
        "pod:wordpress/wordpress-6dfdd9f64f-d75j2",
        "direct",
        "implicit:node_to_pods",
        True,
    ),
    (
        "172.18.221.254",
        "172.18.221.11",
        22,
        True,
        "permitted",
        "172.18.221.254",
        "node:k8s-node1",
        "direct",
        "implicit:management_ssh",
        True,
    ),
    ("10.244.1.94", "8.8.8.8", 443, True, "unclassified", "pod:wordpress/wordpress-6dfdd9f64f-d75j2", "8.8.8.8", "direct", None, False),
    ("127.0.0.1", "127.0.0.1", 8080, True, "permitted", "127.0.0.1", "k8s-node1 (loopback)", "direct", "implicit:loopback", True),
]


@pytest.mark.parametrize(
    ("source", "destination", "port", "answered", "klass", "source_label", "destination_label", "via", "decided", "implicit"), FLOWS
)
def test_classify_one_flow(  # noqa: PLR0917 - one parameter per column of FLOWS
    classifier: Classifier,
    source: str,
    destination: str,
    port: int,
    answered: bool,
    klass: str,
    source_label: str,
    destination_label: str,
    via: str,
    decided: str | None,
    implicit: bool,
) -> None:
    [flow] = classifier.classify([_observed(source, destination, port, answered)])
    assert (flow["class"], flow["source"], flow["destination"], flow["via"], flow["implicit"]) == (
        klass,
        source_label,
        destination_label,
        via,
        implicit,
    )
    if decided is None:
        assert flow["decided_by"] == []
    else:
        assert any(origin.startswith(decided) for origin in flow["decided_by"]), flow["decided_by"]


def test_classify_groups_connections_and_sorts_by_class(classifier: Classifier) -> None:
    observed = [
        _observed("172.18.221.99", "172.18.221.11", 30358, True),
        Observed(Connection("tcp", "172.18.221.1", 1, "172.18.221.11", 30358), True, ("haproxy",)),
        Observed(Connection("tcp", "172.18.221.1", 2, "172.18.221.11", 30358), False, ("k8s-node1",)),
    ]
    flows = classifier.classify(observed)
    assert [(f["class"], f["source"], f["connections"], f["answered"], f["seen_at"]) for f in flows] == [
        ("permitted", "vm:haproxy", 2, 1, ["haproxy", "k8s-node1"]),
        ("escaped", "vm:outsider", 1, 1, ["k8s-node1"]),
    ]



def test_control_plane_flows_carry_their_cluster_origin(policy: dict[str, Any], hostvars: dict[str, dict[str, Any]]) -> None:
    """The audit names a flow of the `cluster` allowance by its origin, as plans do; without the allowance it escaped."""
    add_control_plane(hostvars)
    for node in ("k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"):
        hostvars[node]["workload"]["annotations"] = {"flannel.alpha.coreos.com/backend-type": "vxlan"}
    observed = [_observed("172.18.221.12", "172.18.221.10", 6443, True), _observed("172.18.221.11", "172.18.221.13", 8472, True, "udp")]
    flows = Classifier(Reachability.from_hostvars(policy, hostvars)).classify(observed)
    assert [(f["class"], f["source"], f["destination"], f["decided_by"], f["implicit"]) for f in flows] == [
        ("permitted", "node:k8s-node1", "node:k8s-node3", ["implicit:cluster overlay flannel-vxlan"], True),
        ("permitted", "node:k8s-node2", "node:k8s-master", ["implicit:cluster nodes to API server"], True),
    ]
    off = Classifier(Reachability.from_hostvars(policy, hostvars, {"implicit": {"cluster": False}})).classify(observed)
    assert [(f["class"], f["decided_by"], f["implicit"]) for f in off] == [("escaped", ["catch_all"], False)] * 2


def test_conformance_explains_differences(classifier: Classifier) -> None:
    cells = [
        {"source": "vm:haproxy", "target": "nodeport:wordpress/wordpress:tcp/80", "result": "."},
        {"source": "vm:outsider", "target": "nodeport:wordpress/wordpress:tcp/80", "result": "."},
        {
            "source": "pod:wordpress/wordpress-6dfdd9f64f-d75j2",
            "target": "pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4:tcp/3306@ipv6",
            "result": ".",
        },
        {"source": "vm:outsider", "target": "vm:haproxy:tcp/80", "result": "X"},
        {"source": "vm:ghost", "target": "vm:haproxy:tcp/80", "result": "X"},
        {"source": "vm:haproxy", "target": "vm:outsider:tcp/80", "result": "?"},
    ]
    table = conformance(classifier, cells)
    assert [(c["measured"], c["expected"], c["agree"]) for c in table["cells"]] == [
        (".", ".", True),
        (".", "X", False),
        (".", ".", True),
        ("X", "X", True),
        ("X", "?", None),
        ("?", "X", None),
    ]
    assert table["differences"] == 1
    assert table["cells"][1]["decided_by"] == ["catch_all"]
    assert table["cells"][1]["reason"] == "denied at the consumer by catch_all"
    assert table["cells"][4]["reason"] == "source vm:ghost is not in the inventory"
    assert table["rows"] == ["vm:haproxy", "vm:outsider", "pod:wordpress/wordpress-6dfdd9f64f-d75j2", "vm:ghost"]


def test_policy_matrix_without_measurements(classifier: Classifier) -> None:
    table = policy_matrix(classifier, 40)
    expected = {(c["source"], c["target"]): c["expected"] for c in table["cells"]}
    assert expected[("vm:haproxy", "nodeport:wordpress/wordpress:tcp/80")] == "."
    assert expected[("vm:outsider", "nodeport:wordpress/wordpress:tcp/80")] == "X"
    assert expected[("pod:wordpress/wordpress-6dfdd9f64f-d75j2", "pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4:tcp/3306")] == "."
    assert ("vm:haproxy", "svc:wordpress/wordpress:tcp/80") not in expected  # ClusterIPs are probed from pods only
    assert table["measured"] is False and table["truncated"] is False
    assert sorted(expected.values()).count(".") == 2
    assert WORDPRESS_POD and MYSQL_POD
    assert policy_matrix(classifier, 1)["truncated"] is True
