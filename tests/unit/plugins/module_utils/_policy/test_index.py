# SPDX-License-Identifier: GPL-3.0-or-later
"""The lookup index the compiler and the oracle share: who is who, answered once."""

from __future__ import annotations

import copy
from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy import compiler as compiler_module
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import Compiler
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.index import WorkloadIndex
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import Options, parse_options
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import parse_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import Flow, Reachability
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import workloads_from_hostvars

from tests.unit.plugins.module_utils._policy.policy_seed import MYSQL_POD, WORDPRESS_POD, WORDPRESS_SERVICE, seed_hostvars, seed_policy

WARNINGS: list[tuple[str, str, dict[str, Any]]] = []


def build(hostvars: Optional[dict[str, Any]] = None, options: Optional[dict[str, Any]] = None) -> WorkloadIndex:
    """An index over the seed (or ``hostvars``); its warnings land in WARNINGS."""
    WARNINGS.clear()
    workloads, _unused_warnings = workloads_from_hostvars(hostvars if hostvars is not None else seed_hostvars())
    return WorkloadIndex(
        parse_policy(seed_policy()),
        workloads,
        parse_options(options or {}),
        warn=lambda text, code="compiler", **data: WARNINGS.append((text, code, data)),
    )


def with_pod(name: str, **record: Any) -> dict[str, Any]:
    """The seed plus a pod ``name`` on k8s-node2 with ``record`` fields over the mysql pod's."""
    hostvars = seed_hostvars()
    extra = copy.deepcopy(hostvars[MYSQL_POD])
    extra["workload"].update(name=name, node="k8s-node2", uid=name, **record)
    extra["zt_enforce_host"] = "k8s-node2"
    hostvars[f"{name}.wordpress.pod.lab"] = extra
    return hostvars


# (case, endpoint's pod reference, its addresses, the pod host found or None)
ENDPOINT_PODS: list[tuple[str, Optional[str], tuple[str, ...], Optional[str]]] = [
    ("by reference", "wordpress/wordpress-6dfdd9f64f-d75j2", ("192.0.2.1",), WORDPRESS_POD),
    ("an unknown reference falls back to the address", "wordpress/gone", ("10.244.3.18",), MYSQL_POD),
    ("no reference, by address", None, ("10.244.1.94",), WORDPRESS_POD),
    ("neither", "wordpress/gone", ("10.9.9.9",), None),
]


@pytest.mark.parametrize(("case", "reference", "addresses", "expected"), ENDPOINT_PODS, ids=[case[0] for case in ENDPOINT_PODS])
def test_endpoint_pod(case: str, reference: Optional[str], addresses: tuple[str, ...], expected: Optional[str]) -> None:
    index = build()
    found = index.endpoint_pod(index.by_host[WORDPRESS_SERVICE], reference, addresses)
    assert (found.host if found is not None else None) == expected


def test_endpoint_node_only_where_no_pod_namespace_receives() -> None:
    hostvars = with_pod("agent", addresses=["172.18.221.12"], host_network=True)
    index = build(hostvars)
    service = index.by_host[WORDPRESS_SERVICE]
    agent = index.by_host["agent.wordpress.pod.lab"]
    pod = index.by_host[WORDPRESS_POD]
    assert index.endpoint_node(service, agent, agent.addresses) is index.by_host["k8s-node2"]  # host network: its node enforces
    assert index.endpoint_node(service, pod, ("172.18.221.12",)) is None  # a pod with its own namespace
    assert index.endpoint_node(service, None, ("172.18.221.10",)) is index.by_host["k8s-master"]  # the API server's kind
    assert index.endpoint_node(service, None, ("10.9.9.9",)) is None


def test_receivers_resolve_each_endpoint_once() -> None:
    index = build()
    service = index.by_host[WORDPRESS_SERVICE]
    receivers = index.receivers(service)
    assert [(item.endpoint.addresses, item.pod.host if item.pod else None, item.node) for item in receivers] == [
        (("10.244.1.94",), WORDPRESS_POD, None)
    ]
    assert index.receivers(service) is receivers
    assert index.endpoint_pods(service) == [index.by_host[WORDPRESS_POD]]


# (case, hostvars, options, enforcement points expected among the pods, warnings (code, data))
POINTS: list[tuple[str, dict[str, Any], dict[str, Any], list[str], list[tuple[str, dict[str, Any]]]]] = [
    ("the seed", seed_hostvars(), {}, [WORDPRESS_POD, MYSQL_POD], []),
    ("a finished pod has no namespace", with_pod("done", phase="Succeeded"), {}, [WORDPRESS_POD, MYSQL_POD], []),
    (
        "a host-network pod is enforced by its node",
        with_pod("agent", addresses=["172.18.221.12"], host_network=True),
        {},
        [WORDPRESS_POD, MYSQL_POD],
        [("host_network", {"pods": ["wordpress/agent"]})],
    ),
    ("scope", seed_hostvars(), {"scope": "label.tier = mysql"}, [MYSQL_POD], []),
]


@pytest.mark.parametrize(("case", "hostvars", "options", "pods", "warnings"), POINTS, ids=[case[0] for case in POINTS])
def test_enforcement_points(
    case: str, hostvars: dict[str, Any], options: dict[str, Any], pods: list[str], warnings: list[tuple[str, dict[str, Any]]]
) -> None:
    index = build(copy.deepcopy(hostvars), options)
    assert sorted(host for host, workload in index.enforced.items() if workload.kind == "pod") == pods
    assert WORDPRESS_SERVICE not in index.enforced
    assert [(code, data) for _unused_text, code, data in WARNINGS] == warnings


def test_local_endpoint_nodes_count_ready_endpoints_only() -> None:
    hostvars = seed_hostvars()
    endpoints = hostvars[WORDPRESS_SERVICE]["workload"]["endpoints"]
    endpoints.append({**copy.deepcopy(endpoints[0]), "addresses": ["10.244.3.18"], "node": "k8s-node3", "pod": None, "ready": False})
    index = build(hostvars)
    assert [node.name for node in index.local_endpoint_nodes(index.by_host[WORDPRESS_SERVICE])] == ["k8s-node1"]


def test_masquerade_sources_and_filters() -> None:
    index = build()
    assert index.masquerade_sources(index.by_host["k8s-node1"]) == ["10.244.1.1", "172.18.221.10", "172.18.221.12", "172.18.221.13"]
    assert {name: [workload.host for workload in found] for name, found in index.matched.items()} == {
        "db": [MYSQL_POD],
        "frontend": [WORDPRESS_POD],
        "haproxy": ["haproxy"],
        "wordpress": [WORDPRESS_SERVICE],
    }
    assert [node.name for node in index.cluster_nodes("lab")] == ["k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"]


def test_the_oracle_builds_no_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the oracle built a Compiler")

    monkeypatch.setattr(compiler_module.Compiler, "__init__", refuse)
    oracle = Reachability.from_hostvars(seed_policy(), seed_hostvars())
    assert oracle.check(Flow("haproxy", WORDPRESS_SERVICE, "tcp", 80, "node_port")).allowed


def test_compiler_and_oracle_share_one_index() -> None:
    workloads, warnings = workloads_from_hostvars(seed_hostvars())
    compiler = Compiler(parse_policy(seed_policy()), workloads, Options(), warnings)
    oracle = Reachability(compiler.policy, compiler.workloads, compiler.options, index=compiler.index)
    assert oracle.index is compiler.index
    for source, allowed in (("haproxy", True), ("outsider", False)):
        flow = Flow(source, WORDPRESS_SERVICE, "tcp", 80, "node_port")
        assert oracle.check(flow) == Reachability.from_hostvars(seed_policy(), seed_hostvars()).check(flow)
        assert oracle.check(flow).allowed is allowed


def test_a_standalone_oracle_keeps_the_indexing_warnings() -> None:
    hostvars = with_pod("agent", addresses=["172.18.221.12"], host_network=True)
    oracle = Reachability.from_hostvars(seed_policy(), hostvars)
    text = "pod wordpress/agent uses the host network; it is a peer but not an enforcement point (its node is)"
    assert oracle.warnings == [text]
    assert oracle.findings == [{"code": "host_network", "text": text, "pods": ["wordpress/agent"]}]
