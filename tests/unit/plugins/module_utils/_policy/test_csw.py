# SPDX-License-Identifier: GPL-3.0-or-later
"""Secure Workload workspaces to and from our policy (issue 17): tables, the three workspace documents, a round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.csw import (
    CswError,
    canonical,
    export_policy,
    import_workspace,
    render,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import PolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.policy import parse_port
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import And, Condition, Node, Not, Or, parse_query
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import Flow, check_flow
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.plugins.module_utils._policy.policy_seed import MYSQL_POD, WORDPRESS_POD, seed_hostvars, seed_policy

HERE = Path(__file__).parent / "csw"
REPO = Path(__file__).resolve().parents[5]


def workspace(name: str) -> Any:
    return json.loads((HERE / f"{name}-workspace.json").read_text())


def single(query: Any, *, kind: str = "inventory_filters") -> dict[str, Any]:
    """A workspace with one filter (or cluster) ``f`` and one policy from it to itself."""
    entry = {"id": "1", "name": "f", **({"query": query} if kind == "inventory_filters" else query)}
    return {
        kind: [entry],
        "default_policies": [{"consumer_filter_id": "1", "provider_filter_id": "1", "action": "ALLOW", "l4_params": [{"proto": None}]}],
    }


def problems(error: CswError) -> list[str]:
    return [str(problem) for problem in error.problems]


# --------------------------------------------------------------------------------------------------
# The three workspace documents (tests/unit/plugins/module_utils/_policy/csw/)


def test_the_seed_workspace_imports_as_the_seed_policy() -> None:
    imported = import_workspace(workspace("seed"))
    scenario = yaml.safe_load((REPO / "lab" / "scenarios" / "seed.yml").read_text())["policy"]
    assert imported == scenario == seed_policy()
    # ... and so compiles to the same plan, byte for byte.
    hostvars = seed_hostvars()
    assert json.dumps(compile_policy(imported, hostvars), sort_keys=True) == json.dumps(compile_policy(scenario, hostvars), sort_keys=True)


NESTED_POLICY = {
    "filters": {
        "Office_Network": "address = 192.0.2.0/24 or address = 2001:db8:10::/48",
        "db": "label.tier = mysql and (namespace = wordpress or cluster in (lab, lab-dr))",
        "dns_servers": "address = 172.18.221.53",
        "inside": "address = 172.18.0.0/16 and not (address = 172.18.221.0/24 or name = k8s-master)",
        "lab_net": "address in (172.18.221.0/24, fd00:172:18:221::/64)",
        "load_balancers": "label.role = loadbalancer or address in (172.18.221.1, 172.18.221.2)",
        "scaled": "label.replicas >= 2 and label.replicas < 10 and (label.weight >= 0.5 and label.weight <= 2)",
        "web": "label.app = wordpress and not label.tier = mysql",
    },
    "policies": {
        "absolute": [{"consumer": "Office_Network", "provider": "db", "ports": ["any"], "action": "deny"}],
        "default": [
            # in CSW's order: by priority (5, 10, 20, 30), not as listed
            {"consumer": "lab_net", "provider": "inside", "ports": ["udp/1-65535", "tcp/1-65535"], "action": "deny"},
            {"consumer": "load_balancers", "provider": "web", "ports": ["tcp/80", "tcp/8000-8080", "icmp"]},
            {"consumer": "web", "provider": "db", "ports": ["tcp/3306"]},
            {"consumer": "db", "provider": "dns_servers", "ports": ["udp/53", "tcp/53"]},
        ],
        "catch_all": "deny",
    },
}

NESTED_FLOWS = [
    (Flow("haproxy", WORDPRESS_POD, "tcp", 80), True),
    (Flow("haproxy", WORDPRESS_POD, "tcp", 8080), True),
    (Flow("haproxy", WORDPRESS_POD, "tcp", 22), False),
    (Flow("outsider", WORDPRESS_POD, "tcp", 80), False),  # 172.18.221.99: not in the range .1-.2
    (Flow(WORDPRESS_POD, MYSQL_POD, "tcp", 3306), True),
    (Flow(MYSQL_POD, WORDPRESS_POD, "tcp", 80), False),
    (Flow("192.0.2.7", MYSQL_POD, "tcp", 3306), False),  # the absolute deny from the office
]


def test_the_nested_workspace_imports_filter_by_filter() -> None:
    imported = import_workspace(workspace("nested"))
    assert imported == NESTED_POLICY
    hostvars = seed_hostvars()
    for flow, allowed in NESTED_FLOWS:
        assert check_flow(imported, hostvars, flow).allowed is allowed, flow


UNTRANSLATABLE = [
    "filter 'linux hosts': field 'os' has no equivalent (translated: ip, host_name, user_orchestrator_system/pod_name, service_name,"
    " namespace, cluster_name, and labels user_orchestrator_<key> and user_<key>)",
    "filter 'web by regex': 'regex' on 'host_name' has no equivalent in our query language (write the values out with eq, in or contains)",
    "filter 'vrf': field 'vrf_id' has no equivalent (translated: ip, host_name, user_orchestrator_system/pod_name, service_name,"
    " namespace, cluster_name, and labels user_orchestrator_<key> and user_<key>)",
    "filter 'vrf': query type 'startswith' is unknown (known: and, or, not, eq, ne, lt, lte, gt, gte, subnet, contains, in, range)",
    "filter 'severity': '>' compares numbers, and 'high' is not a number such as 3 or 9.8 (in 'label.risk > high')",
    "filter 'bad subnet': address value '10.1.2.3/8' has host bits set (the subnet is 10.0.0.0/8): write 10.0.0.0/8 for the subnet"
    " or 10.1.2.3 for the address (in 'address = 10.1.2.3/8')",
    "filter 'empty or': an 'or' query needs a non-empty 'filters' list, got []",
    "cluster 'no members': a cluster needs a query or a non-empty 'nodes' list of {ip, prefix_len}",
    "absolute_policies[0] (5f1e3a7b497d4f6c2a1b0c9d -> wordpress): consumer_filter_id '5f1e3a7b497d4f6c2a1b0c9d' is the workspace's"
    " scope (app_scope_id): our policies have no scopes; add a filter with the scope's query to inventory_filters and refer to it",
    "default_policies[0] (wordpress -> wordpress): action must be ALLOW or DENY (in 'PERMIT')",
    "default_policies[1] (wordpress -> wordpress) l4_params[0]: proto must be 6 (tcp), 17 (udp), 132 (sctp), 1 (icmp), 58 (icmpv6)"
    " or null (any) (in '47')",
    "default_policies[1] (wordpress -> wordpress) l4_params[1]: port must be [low, high] with 0 <= low <= high <= 65535"
    " (or null for every port) (in '[90, 80]')",
    "default_policies[2] (wordpress -> wordpress): allows ICMP (1) alone: our icmp is ICMP and ICMPv6 together; add the other protocol"
    " or import with widen_icmp=true",
    "default_policies[3] (wordpress -> wordpress): l4_params must be a non-empty list such as [{proto: 6, port: [80, 80]}]"
    " ([{proto: null}] for any) (in '[]')",
]


def test_the_untranslatable_workspace_lists_every_item_at_once() -> None:
    with pytest.raises(CswError) as raised:
        import_workspace(workspace("untranslatable"))
    assert problems(raised.value) == UNTRANSLATABLE
    assert str(raised.value).startswith(
        "the workspace has 14 items that cannot be translated, nothing was written:\n  - filter 'linux hosts'"
    )


# --------------------------------------------------------------------------------------------------
# Query trees, one construct at a time


def eq(field: str, value: Any) -> dict[str, Any]:
    return {"type": "eq", "field": field, "value": value}


QUERIES = [
    (eq("user_orchestrator_system/pod_name", "web-1"), "pod_name = web-1"),
    (eq("user_orchestrator_system/service_name", "wordpress"), "service_name = wordpress"),
    (eq("user_orchestrator_system/namespace", "kube-system"), "namespace = kube-system"),
    (eq("user_orchestrator_system/cluster_name", "lab"), "cluster = lab"),
    (eq("host_name", "haproxy"), "name = haproxy"),
    (eq("user_orchestrator_app.kubernetes.io/name", "web"), "label.app.kubernetes.io/name = web"),
    (eq("user_environment", "prod"), "label.environment = prod"),
    (eq("user_orchestrator_app", "red team"), "label.app = 'red team'"),
    (eq("user_orchestrator_app", "it's"), "label.app = 'it\\'s'"),
    (eq("user_orchestrator_mode", "and"), "label.mode = 'and'"),
    (eq("user_orchestrator_replicas", 3), "label.replicas = 3"),
    ({"type": "ne", "field": "user_orchestrator_tier", "value": "db"}, "label.tier != db"),
    ({"type": "contains", "field": "user_orchestrator_system/pod_name", "value": "mysql"}, "pod_name contains mysql"),
    ({"type": "lt", "field": "user_orchestrator_n", "value": 3}, "label.n < 3"),
    ({"type": "lte", "field": "user_orchestrator_n", "value": "3"}, "label.n <= 3"),
    ({"type": "gt", "field": "user_orchestrator_score", "value": 9.8}, "label.score > 9.8"),
    ({"type": "gte", "field": "user_orchestrator_n", "value": -1}, "label.n >= -1"),
    ({"type": "in", "field": "user_orchestrator_system/namespace", "values": ["a", "b"]}, "namespace in (a, b)"),
    ({"type": "range", "field": "user_orchestrator_n", "min": 1, "max": 5}, "label.n >= 1 and label.n <= 5"),
    # addresses: eq, ne, subnet, in, range; host prefixes as plain addresses
    (eq("ip", "172.18.221.1"), "address = 172.18.221.1"),
    ({"type": "ne", "field": "ip", "value": "10.0.0.0/8"}, "address != 10.0.0.0/8"),
    ({"type": "subnet", "field": "ip", "value": "10.0.0.0/8"}, "address = 10.0.0.0/8"),
    ({"type": "subnet", "field": "ip", "value": "10.0.0.7/32"}, "address = 10.0.0.7"),
    ({"type": "subnet", "field": "ip", "value": "2001:db8::/32"}, "address = 2001:db8::/32"),
    ({"type": "in", "field": "ip", "values": ["10.0.0.1", "10.1.0.0/16"]}, "address in (10.0.0.1, 10.1.0.0/16)"),
    ({"type": "range", "field": "ip", "min": "10.0.0.0", "max": "10.0.0.255"}, "address = 10.0.0.0/24"),
    ({"type": "range", "field": "ip", "min": "10.0.0.1", "max": "10.0.0.3"}, "address in (10.0.0.1, 10.0.0.2/31)"),
    # and / or / not, nested: the structure is kept
    ({"type": "and", "filters": [eq("host_name", "a"), eq("host_name", "b")]}, "name = a and name = b"),
    ({"type": "or", "filters": [eq("host_name", "a")]}, "name = a"),
    ({"type": "not", "filter": eq("host_name", "a")}, "not name = a"),
    ({"type": "not", "filter": {"type": "not", "filter": eq("host_name", "a")}}, "not not name = a"),
    (
        {"type": "or", "filters": [{"type": "and", "filters": [eq("host_name", "a"), eq("host_name", "b")]}, eq("host_name", "c")]},
        "(name = a and name = b) or name = c",
    ),
    (
        {"type": "and", "filters": [{"type": "and", "filters": [eq("host_name", "a"), eq("host_name", "b")]}, eq("host_name", "c")]},
        "(name = a and name = b) and name = c",
    ),
    ({"type": "not", "filter": {"type": "or", "filters": [eq("host_name", "a"), eq("host_name", "b")]}}, "not (name = a or name = b)"),
]


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_queries(query: Any, expected: str) -> None:
    assert import_workspace(single(query))["filters"] == {"f": expected}


QUERY_ERRORS = [
    (eq("os", "linux"), "field 'os' has no equivalent"),
    (eq("user_orchestrator_system/workload_type", "pod"), "field 'user_orchestrator_system/workload_type' has no equivalent"),
    (eq("user_orchestrator_has space", "x"), "field 'user_orchestrator_has space' has no equivalent"),
    (eq(None, "x"), "a condition needs a 'field' (text), got null None"),
    ({"type": "regex", "field": "host_name", "value": "^a"}, "'regex' on 'host_name' has no equivalent in our query language"),
    ({"type": "prefix", "field": "host_name", "value": "a"}, "query type 'prefix' is unknown"),
    ({"type": "contains", "field": "ip", "value": "10."}, "'contains' on field 'ip' has no equivalent"),
    ({"type": "gt", "field": "ip", "value": 3}, "'gt' on field 'ip' has no equivalent"),
    ({"type": "subnet", "field": "host_name", "value": "10.0.0.0/8"}, "'subnet' needs field 'ip', got 'host_name'"),
    ({"type": "subnet", "field": "ip", "value": "10.0.0.1/8"}, "address value '10.0.0.1/8' has host bits set"),
    ({"type": "subnet", "field": "ip", "value": "bogus"}, "address value 'bogus' is not an IP address or CIDR"),
    ({"type": "in", "field": "host_name", "values": []}, "an 'in' query on 'host_name' needs a non-empty 'values' list, got []"),
    (
        {"type": "range", "field": "ip", "min": "10.0.0.9", "max": "10.0.0.1"},
        "ip range '10.0.0.9' - '10.0.0.1' is not a range of addresses",
    ),
    ({"type": "lt", "field": "user_orchestrator_n", "value": "many"}, "'<' compares numbers, and 'many' is not a number"),
    (eq("host_name", ["a"]), "the value for 'host_name' must be text or a number, got a list ['a']"),
    (eq("host_name", True), "the value for 'host_name' must be text or a number, got a boolean True"),
    ({"type": "and"}, "an 'and' query needs a non-empty 'filters' list, got None"),
    ({"type": "not"}, "a query must be a mapping with type, field and value, got null None"),
    ("host_name = a", "a query must be a mapping with type, field and value, got text 'host_name = a'"),
]


@pytest.mark.parametrize(("query", "message"), QUERY_ERRORS)
def test_query_errors_name_the_filter(query: Any, message: str) -> None:
    with pytest.raises(CswError) as raised:
        import_workspace(single(query))
    assert len(raised.value.problems) == 1
    assert str(raised.value.problems[0]).startswith(f"filter 'f': {message}")


def test_every_untranslatable_item_of_one_filter_is_listed() -> None:
    query = {"type": "or", "filters": [eq("os", "x"), {"type": "and", "filters": [eq("host_name", "a"), {"type": "regex", "field": "ip"}]}]}
    with pytest.raises(CswError) as raised:
        import_workspace(single(query))
    assert [problem.message[:24] for problem in raised.value.problems] == ["field 'os' has no equiva", "'regex' on 'ip' has no e"]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    query: Any = eq("host_name", "a")
    for _unused in range(5000):
        query = {"type": "not", "filter": query}
    with pytest.raises(CswError, match=r"the query nests and/or/not more than 32 levels deep"):
        import_workspace(single(query))


CLUSTERS = [
    ({"nodes": [{"ip": "172.18.221.1", "name": "a", "prefix_len": 32}]}, "address = 172.18.221.1"),
    ({"nodes": [{"ip": "172.18.221.1"}, {"ip": "fd00::1", "prefix_len": 128}]}, "address in (172.18.221.1, fd00::1)"),
    ({"nodes": [{"ip": "172.18.221.0", "prefix_len": 24}]}, "address = 172.18.221.0/24"),
    # the query is what CSW enforces: it wins over the member list
    ({"nodes": [{"ip": "10.0.0.1"}], "query": eq("host_name", "a")}, "name = a"),
]


@pytest.mark.parametrize(("cluster", "expected"), CLUSTERS)
def test_clusters(cluster: dict[str, Any], expected: str) -> None:
    assert import_workspace(single(cluster, kind="clusters"))["filters"] == {"f": expected}


CLUSTER_ERRORS = [
    ({"nodes": []}, "a cluster needs a query or a non-empty 'nodes' list of {ip, prefix_len}"),
    ({"nodes": [{"name": "a"}]}, "a cluster node needs an 'ip' (text), got {'name': 'a'}"),
    ({"nodes": [{"ip": "10.0.0.1", "prefix_len": "32"}]}, "cluster node '10.0.0.1': prefix_len must be a number, got '32'"),
    ({"nodes": [{"ip": "10.0.0.1", "prefix_len": 24}]}, "address value '10.0.0.1/24' has host bits set"),
]


@pytest.mark.parametrize(("cluster", "message"), CLUSTER_ERRORS)
def test_cluster_errors(cluster: dict[str, Any], message: str) -> None:
    with pytest.raises(CswError) as raised:
        import_workspace(single(cluster, kind="clusters"))
    assert problems(raised.value)[0].startswith(f"cluster 'f': {message}")


# --------------------------------------------------------------------------------------------------
# Ports and actions


PORTS = [
    ([{"proto": 6, "port": [80, 80]}], ["tcp/80"]),
    ([{"proto": 17, "port": [53, 53]}, {"proto": 6, "port": [53, 53]}], ["udp/53", "tcp/53"]),
    ([{"proto": 6, "port": [8000, 8080]}], ["tcp/8000-8080"]),
    ([{"proto": 132, "port": [9, 9]}], ["sctp/9"]),
    ([{"proto": 6}], ["tcp/1-65535"]),
    ([{"proto": 6, "port": [0, 65535]}], ["tcp/1-65535"]),
    ([{"proto": 17, "port": [0, 10]}], ["udp/1-10"]),
    ([{"proto": 1}, {"proto": 58}], ["icmp"]),
    ([{"proto": 58}, {"proto": 6, "port": [22, 22]}, {"proto": 1}], ["icmp", "tcp/22"]),
    ([{"proto": None}], ["any"]),
    ([{"proto": None, "port": [0, 65535]}], ["any"]),
    ([{"proto": 6, "port": [80, 80]}, {"proto": 6, "port": [80, 80]}], ["tcp/80"]),
]


@pytest.mark.parametrize(("l4_params", "expected"), PORTS)
def test_ports(l4_params: list[Any], expected: list[str]) -> None:
    document = single(eq("host_name", "a"))
    document["default_policies"][0]["l4_params"] = l4_params
    assert import_workspace(document)["policies"]["default"] == [{"consumer": "f", "provider": "f", "ports": expected}]


PORT_ERRORS = [
    ([{"proto": 47}], " l4_params[0]: proto must be 6 (tcp), 17 (udp), 132 (sctp), 1 (icmp), 58 (icmpv6) or null (any) (in '47')"),
    ([{"proto": "6"}], " l4_params[0]: proto must be 6 (tcp)"),
    ([{"proto": True}], " l4_params[0]: proto must be 6 (tcp)"),
    ([{"proto": [6]}], " l4_params[0]: proto must be 6 (tcp)"),
    (
        [{"proto": 6, "port": [80]}],
        " l4_params[0]: port must be [low, high] with 0 <= low <= high <= 65535 (or null for every port) (in '[80]')",
    ),
    ([{"proto": 6, "port": [90, 80]}], " l4_params[0]: port must be [low, high]"),
    ([{"proto": 6, "port": [1, 70000]}], " l4_params[0]: port must be [low, high]"),
    ([{"proto": 6, "port": [0, 0]}], " l4_params[0]: port must be [low, high]"),
    ([{"proto": 6, "port": "80"}], " l4_params[0]: port must be [low, high]"),
    ([{"proto": None, "port": [80, 80]}], " l4_params[0]: proto null (every protocol) cannot have a port range; give proto 6 or 17"),
    (["tcp/80"], " l4_params[0]: must be a mapping with proto and port, got text"),
    ([{"proto": 58}], ": allows ICMPv6 (58) alone: our icmp is ICMP and ICMPv6 together"),
    ([], ": l4_params must be a non-empty list"),
    (None, ": l4_params must be a non-empty list"),
]


@pytest.mark.parametrize(("l4_params", "message"), PORT_ERRORS)
def test_port_errors(l4_params: Any, message: str) -> None:
    document = single(eq("host_name", "a"))
    document["default_policies"][0]["l4_params"] = l4_params
    with pytest.raises(CswError) as raised:
        import_workspace(document)
    assert problems(raised.value)[0].startswith(f"default_policies[0] (f -> f){message}")


def test_widen_icmp_imports_one_family_as_icmp() -> None:
    document = single(eq("host_name", "a"))
    document["default_policies"][0]["l4_params"] = [{"proto": 1}]
    assert import_workspace(document, widen_icmp=True)["policies"]["default"][0]["ports"] == ["icmp"]


def test_actions_catch_all_and_references() -> None:
    document = single(eq("host_name", "a"))
    document["default_policies"][0]["action"] = "deny"  # case does not matter
    document["absolute_policies"] = [
        {"consumer_filter_id": "1", "provider_filter_id": "9", "action": "ALLOW", "l4_params": [{"proto": None}]}
    ]
    document["catch_all_action"] = "ALLOW"
    with pytest.raises(CswError) as raised:
        import_workspace(document)
    assert problems(raised.value) == [
        "absolute_policies[0] (f -> 9): provider_filter_id '9' is not the id of a filter or cluster of this workspace"
        " (a scope id, or a filter of another workspace: copy that filter into inventory_filters)"
    ]
    del document["absolute_policies"]
    assert import_workspace(document)["policies"] == {
        "absolute": [],
        "default": [{"consumer": "f", "provider": "f", "ports": ["any"], "action": "deny"}],
        "catch_all": "allow",
    }
    document["catch_all_action"] = "REJECT"
    with pytest.raises(CswError, match=r"workspace: catch_all_action must be ALLOW or DENY \(in 'REJECT'\)"):
        import_workspace(document)
    del document["catch_all_action"]  # absent: deny, like our policies
    assert import_workspace(document)["policies"]["catch_all"] == "deny"


NAMES = [
    (["Web Servers"], ["Web_Servers"]),
    (["web", "web"], ["web", "web-2"]),
    (["_hidden", "ünïcode"], ["f_hidden", "f_n_code"]),
    ([None, ""], ["f1", "f2"]),
]


@pytest.mark.parametrize(("names", "expected"), NAMES)
def test_filter_names_are_kept_as_far_as_our_names_allow(names: list[Any], expected: list[str]) -> None:
    document = {
        "inventory_filters": [{"id": str(index + 1), "name": name, "query": eq("host_name", "a")} for index, name in enumerate(names)]
    }
    assert list(import_workspace(document)["filters"]) == sorted(expected)


DOCUMENT_ERRORS = [
    ([], "workspace: must be a mapping (a JSON object), got a list"),
    ("{not json", "workspace: is not JSON: Expecting property name enclosed in double quotes"),
    ({"inventory_filters": {}}, "inventory_filters: must be a list, got a mapping"),
    ({"inventory_filters": ["x"]}, "inventory_filters[0]: must be a mapping with id, name and query, got text"),
    (
        {"inventory_filters": [{"name": "a", "query": eq("host_name", "a")}]},
        "filter 'a': has no id (text), so no policy can refer to it; got null",
    ),
    ({"default_policies": [3]}, "default_policies[0]: must be a mapping with consumer_filter_id, provider_filter_id, action and l4_params"),
]


@pytest.mark.parametrize(("document", "message"), DOCUMENT_ERRORS)
def test_document_errors(document: Any, message: str) -> None:
    with pytest.raises(CswError) as raised:
        import_workspace(document)
    assert problems(raised.value)[0].startswith(message)


def test_duplicate_ids_are_reported() -> None:
    document = {"inventory_filters": [{"id": "1", "name": name, "query": eq("host_name", name)} for name in ("a", "b")]}
    with pytest.raises(CswError) as raised:
        import_workspace(document)
    assert problems(raised.value) == ["filter 'b': id '1' is also the id of filter 'a'"]


# --------------------------------------------------------------------------------------------------
# Export


def policy_of(query: str, ports: list[str] | None = None) -> dict[str, Any]:
    return {"filters": {"f": query}, "policies": {"default": [{"consumer": "f", "provider": "f", "ports": ports or ["any"]}]}}


EXPORTS = [
    ("pod_name = a", eq("user_orchestrator_system/pod_name", "a")),
    ("label.app = web", eq("user_orchestrator_app", "web")),
    ("name != a", {"type": "ne", "field": "host_name", "value": "a"}),
    ("label.n >= 3", {"type": "gte", "field": "user_orchestrator_n", "value": "3"}),
    ("namespace in (a, b)", {"type": "in", "field": "user_orchestrator_system/namespace", "values": ["a", "b"]}),
    ("address = 10.0.0.0/8", {"type": "subnet", "field": "ip", "value": "10.0.0.0/8"}),
    ("address = 10.0.0.1", eq("ip", "10.0.0.1")),
    ("address != 10.0.0.0/8", {"type": "not", "filter": {"type": "subnet", "field": "ip", "value": "10.0.0.0/8"}}),
    (
        "address in (10.0.0.1, 10.1.0.0/16)",
        {"type": "or", "filters": [eq("ip", "10.0.0.1"), {"type": "subnet", "field": "ip", "value": "10.1.0.0/16"}]},
    ),
    (
        "not (cluster = lab or name = a) and label.x contains y",
        {
            "type": "and",
            "filters": [
                {
                    "type": "not",
                    "filter": {"type": "or", "filters": [eq("user_orchestrator_system/cluster_name", "lab"), eq("host_name", "a")]},
                },
                {"type": "contains", "field": "user_orchestrator_x", "value": "y"},
            ],
        },
    ),
]


@pytest.mark.parametrize(("query", "expected"), EXPORTS)
def test_exports(query: str, expected: Any) -> None:
    assert export_policy(policy_of(query))["inventory_filters"] == [{"id": "f", "name": "f", "query": expected}]


EXPORT_PORTS = [
    (["tcp/80"], [{"proto": 6, "port": [80, 80]}]),
    (
        ["udp/53", "tcp/8000-8080", "sctp/9"],
        [{"proto": 17, "port": [53, 53]}, {"proto": 6, "port": [8000, 8080]}, {"proto": 132, "port": [9, 9]}],
    ),
    (["icmp"], [{"proto": 1}, {"proto": 58}]),
    (["any", "tcp/80"], [{"proto": None}, {"proto": 6, "port": [80, 80]}]),
    (["tcp/80", "tcp/80-80"], [{"proto": 6, "port": [80, 80]}]),
]


@pytest.mark.parametrize(("ports", "expected"), EXPORT_PORTS)
def test_export_ports(ports: list[str], expected: list[Any]) -> None:
    exported = export_policy(policy_of("name = a", ports))
    assert exported["default_policies"] == [
        {"consumer_filter_id": "f", "provider_filter_id": "f", "action": "ALLOW", "l4_params": expected, "priority": 1}
    ]
    assert exported["catch_all_action"] == "DENY"


def test_export_lists_every_item_without_an_equivalent() -> None:
    policy = {
        "filters": {
            "a": "kind = pod and node = k8s-node1",
            "b": "group = vms or label.x exists",
            "c": "annotation.team = red or var.x = 1 or address contains 10.",
            "d": "label.system/x = 1",
        },
        "policies": {"default": [{"consumer": "a", "provider": "b", "ports": ["tcp/http", "tcp/80"]}]},
    }
    with pytest.raises(CswError) as raised:
        export_policy(policy)
    assert problems(raised.value) == [
        "filters.a: attribute 'kind' has no Secure Workload equivalent (in 'kind = pod and node = k8s-node1' at position 0)",
        "filters.a: attribute 'node' has no Secure Workload equivalent (in 'kind = pod and node = k8s-node1' at position 15)",
        "filters.b: attribute 'group' has no Secure Workload equivalent (in 'group = vms or label.x exists' at position 0)",
        "filters.b: 'exists' on 'label.x' has no Secure Workload equivalent (in 'group = vms or label.x exists' at position 15)",
        "filters.c: attribute 'annotation.team' has no Secure Workload equivalent"
        " (in 'annotation.team = red or var.x = 1 or address contains 10.' at position 0)",
        "filters.c: attribute 'var.x' has no Secure Workload equivalent"
        " (in 'annotation.team = red or var.x = 1 or address contains 10.' at position 25)",
        "filters.c: 'contains' on 'address' has no Secure Workload equivalent"
        " (in 'annotation.team = red or var.x = 1 or address contains 10.' at position 38)",
        "filters.d: attribute 'label.system/x' has no Secure Workload equivalent (in 'label.system/x = 1' at position 0)",
        "policies.default[0]: the named port tcp/http has no Secure Workload equivalent; write its number (in 'tcp/http')",
    ]
    assert str(raised.value).startswith("the policy has 9 items that cannot be translated, nothing was written:")


def test_export_of_an_invalid_policy_is_the_policy_error() -> None:
    with pytest.raises(PolicyError, match=r"filters.f: unknown attribute 'colour'"):
        export_policy(policy_of("colour = red"))


def test_the_seed_round_trips_exactly() -> None:
    assert import_workspace(json.loads(json.dumps(export_policy(seed_policy())))) == seed_policy()
    # address in (...) comes back as an or of addresses: equal in meaning
    assert _normal(import_workspace(export_policy(NESTED_POLICY))) == _normal(NESTED_POLICY)


# --------------------------------------------------------------------------------------------------
# Rendering and the round trip, as properties

_text = st.text(alphabet="ab-_.:/ '\"\\()=<>!,é", max_size=6)
_word = st.sampled_from(["web", "and", "or", "not", "in", "exists", "10", "a b", "it's", "", "x\\y", "wp-1.2"])
_value = st.one_of(_word, _text)
_number = st.one_of(
    st.integers(-5, 5000).map(str), st.decimals(min_value=-100, max_value=100, places=2).map(str), st.sampled_from([".5", "+3"])
)
_key = st.sampled_from(["app", "tier", "app.kubernetes.io/name", "x_y", "a-b"])
_plain = st.sampled_from(["pod_name", "service_name", "namespace", "cluster", "name"])
_attribute = st.one_of(_plain, _key.map(lambda key: "label." + key))
_ipv4 = st.integers(0, 2**32 - 1).map(lambda number: ".".join(str((number >> shift) & 255) for shift in (24, 16, 8, 0)))
_cidr = st.sampled_from(["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "fd00:172:18:221::/64", "172.18.221.1/32", "fd00::1"])
_address_value = st.one_of(_ipv4, _cidr)


@st.composite
def _condition(draw: st.DrawFn) -> Condition:
    kind = draw(st.sampled_from(["text", "number", "in", "address", "address-in"]))
    if kind == "address":
        return Condition("address", draw(st.sampled_from(["=", "!="])), (draw(_address_value),), 0)
    if kind == "address-in":
        return Condition("address", "in", tuple(draw(st.lists(_address_value, min_size=1, max_size=3))), 0)
    attribute = draw(_attribute)
    if kind == "number":
        return Condition(attribute, draw(st.sampled_from(["<", "<=", ">", ">="])), (draw(_number),), 0)
    if kind == "in":
        return Condition(attribute, "in", tuple(draw(st.lists(_value, min_size=1, max_size=3))), 0)
    return Condition(attribute, draw(st.sampled_from(["=", "!=", "contains"])), (draw(_value),), 0)


_nodes = st.recursive(
    _condition(),
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: And(tuple(items))),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
    ),
    max_leaves=6,
)
_port = st.one_of(
    st.sampled_from(["icmp", "any"]),
    st.tuples(st.sampled_from(["tcp", "udp", "sctp"]), st.integers(1, 65535), st.integers(0, 100)).map(
        lambda spec: f"{spec[0]}/{spec[1]}" if spec[2] == 0 else f"{spec[0]}/{spec[1]}-{min(spec[1] + spec[2], 65535)}"
    ),
)
_names = st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,8}", fullmatch=True), min_size=1, max_size=4, unique=True)


@st.composite
def _policies(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(_names)
    filters = {name: render(draw(_nodes)) for name in names}
    rule = st.fixed_dictionaries(
        {"consumer": st.sampled_from(names), "provider": st.sampled_from(names), "ports": st.lists(_port, min_size=1, max_size=4)},
        optional={"action": st.sampled_from(["allow", "deny"])},
    )
    return {
        "filters": filters,
        "policies": {
            "absolute": draw(st.lists(rule, max_size=3)),
            "default": draw(st.lists(rule, max_size=3)),
            "catch_all": draw(st.sampled_from(["deny", "allow"])),
        },
    }


def _strip(node: Node) -> Node:
    if isinstance(node, Condition):
        return Condition(node.attribute, node.operator, node.values, 0)
    if isinstance(node, Not):
        return Not(_strip(node.item))
    return type(node)(tuple(_strip(item) for item in node.items))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_nodes)
def test_render_parses_back_to_the_same_tree(node: Node) -> None:
    assert _strip(parse_query(render(node))) == node


def _normal(policy: dict[str, Any]) -> dict[str, Any]:
    """What a round trip keeps: each filter's meaning, and each rule with its ports as parse_port reads them, once each."""
    filters = {name: canonical(parse_query(text)) for name, text in policy["filters"].items()}
    ranks = {
        rank: [
            (
                rule["consumer"],
                rule["provider"],
                rule.get("action", "allow"),
                list(dict.fromkeys(str(parse_port(port)) for port in rule["ports"])),
            )
            # in chain order: a rank's denies first, each kind in policy order (what the compiler does)
            for rule in sorted(policy["policies"].get(rank, []), key=lambda rule: rule.get("action", "allow") != "deny")
        ]
        for rank in ("absolute", "default")
    }
    return {"filters": filters, **ranks, "catch_all": policy["policies"].get("catch_all", "deny")}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_policies())
def test_ours_to_csw_and_back_is_the_same_policy(policy: dict[str, Any]) -> None:
    exported = json.loads(json.dumps(export_policy(policy)))  # through JSON, as a file would carry it
    assert _normal(import_workspace(exported)) == _normal(policy)


def test_canonical_forms() -> None:
    assert canonical(parse_query("address != 10.0.0.0/8")) == canonical(parse_query("not address = 10.0.0.0/8"))
    assert canonical(parse_query("address in (10.0.0.1/32, fd00::/8)")) == canonical(
        parse_query("address = 10.0.0.1 or address = fd00::/8")
    )
    assert canonical(parse_query("label.a = 1")) != canonical(parse_query("label.a != 1"))


def test_a_deny_after_an_allow_of_the_same_rank_is_reported() -> None:
    document = single(eq("host_name", "a"))
    allow = document["default_policies"][0]
    deny = {**allow, "action": "DENY", "l4_params": [{"proto": 6, "port": [22, 22]}]}
    document["default_policies"] = [{**allow, "priority": 1}, {**deny, "priority": 2}]
    with pytest.raises(CswError) as raised:
        import_workspace(document)
    assert problems(raised.value) == [
        "default_policies[1] (f -> f): this DENY comes after the ALLOW default_policies[0] (f -> f) in CSW's order, and we apply"
        " every DENY of a rank before its ALLOWs; give the DENY a lower priority number than the ALLOW (if they overlap, CSW allows;"
        " then drop the DENY)"
    ]
    # by priority, not by place in the list: the deny first is what we do too
    document["default_policies"] = [{**allow, "priority": 2}, {**deny, "priority": 1}]
    assert [rule.get("action", "allow") for rule in import_workspace(document)["policies"]["default"]] == ["deny", "allow"]
    # an absolute allow before a default deny is fine: absolute comes first in both
    document["absolute_policies"], document["default_policies"] = [allow], [deny]
    assert import_workspace(document)["policies"]["absolute"] == [{"consumer": "f", "provider": "f", "ports": ["any"]}]


def test_export_writes_each_rank_in_chain_order() -> None:
    policy = policy_of("name = a")
    policy["policies"]["default"] = [
        {"consumer": "f", "provider": "f", "ports": ["tcp/80"]},
        {"consumer": "f", "provider": "f", "ports": ["tcp/22"], "action": "deny"},
    ]
    exported = export_policy(policy)["default_policies"]
    assert [(rule["action"], rule["priority"], rule["l4_params"][0]["port"]) for rule in exported] == [
        ("DENY", 1, [22, 22]),
        ("ALLOW", 2, [80, 80]),
    ]


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=12,
)
_hostile_query = st.recursive(
    st.fixed_dictionaries(
        {
            "type": st.one_of(st.sampled_from(["eq", "ne", "lt", "gte", "in", "range", "subnet", "contains", "regex", "?"]), _json),
            "field": st.one_of(
                _json, st.sampled_from(["ip", "host_name", "user_orchestrator_a", "user_b", "user_orchestrator_system/namespace"])
            ),
        },
        optional={"value": _json, "values": _json, "min": _json, "max": _json},
    ),
    lambda inner: st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["and", "or"]), "filters": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"type": st.just("not")}, optional={"filter": inner}),
        _json,
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "inventory_filters": st.one_of(_json, st.lists(st.fixed_dictionaries({"id": _json, "name": _json, "query": _hostile_query}))),
            "clusters": st.one_of(_json, st.lists(st.fixed_dictionaries({"id": _json, "name": _json}, optional={"nodes": _json}))),
            "default_policies": st.one_of(
                _json,
                st.lists(
                    st.fixed_dictionaries(
                        {"consumer_filter_id": _json, "provider_filter_id": _json, "action": _json, "l4_params": _json},
                        optional={"priority": _json},
                    )
                ),
            ),
            "catch_all_action": _json,
            "app_scope_id": _json,
        },
    )
)
def test_any_document_is_imported_or_refused_with_our_error(document: dict[str, Any]) -> None:
    try:
        policy = import_workspace(document)
    except CswError as error:
        assert error.problems
        assert all(len(str(problem)) < 1000 for problem in error.problems)
    else:
        compile_policy(policy, seed_hostvars())  # what it accepts is a valid policy
